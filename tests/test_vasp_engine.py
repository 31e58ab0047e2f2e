"""aiida_irspec.engines.vasp: INCAR builders and electronic fixes (no AiiDA). What VASP writes is read by
aiida_irspec.io.vasp and tested in test_io_vasp.py."""

import pytest

from aiida_irspec.engines.vasp import dfpt_incar, md_incar, next_electronic_fix
from aiida_irspec.exceptions import InputError
from aiida_irspec.workflows.protocols import load_protocol


def protocol(name, level):
    return load_protocol("vasp", name, level)


@pytest.mark.parametrize(("level", "ediff"), [("fast", 1e-6), ("moderate", 1e-7), ("precise", 1e-8)])
def test_dfpt_incar_protocols(level, ediff):
    tags = dfpt_incar(protocol("born_charges", level))
    assert tags["EDIFF"] == ediff
    assert tags["LEPSILON"] is True and tags["LREAL"] is False and tags["PREC"] == "Accurate"
    assert tags["IBRION"] == -1 and tags["NSW"] == 0 and tags["ADDGRID"] is True
    assert all(key == key.upper() for key in tags)


def test_dfpt_incar_overrides():
    base = protocol("born_charges", "moderate")
    tags = dfpt_incar(base, {"encut": 700, "ADDGRID": None, "IBRION": 8})
    assert tags["ENCUT"] == 700 and "ADDGRID" not in tags and tags["IBRION"] == 8
    assert base["parameters"]["ADDGRID"] is True  # the protocol dict is not modified
    with pytest.raises(InputError, match="LEPSILON"):
        dfpt_incar(base, {"LEPSILON": False})
    with pytest.raises(InputError, match="NSW"):
        dfpt_incar(base, {"NSW": 10, "IBRION": 2})


def test_md_incar_nvt_nose_hoover_run():
    tags = md_incar(protocol("md", "moderate"), ensemble="nvt", temperature=320, steps=2000, timestep=0.5,
                    stride=4, seed=7, ml_mode="run")
    assert tags["IBRION"] == 0 and tags["NSW"] == 2000 and tags["POTIM"] == 0.5
    assert tags["TEBEG"] == tags["TEEND"] == 320.0
    assert tags["MDALGO"] == 2 and tags["SMASS"] == 0
    assert tags["ML_LMLFF"] is True and tags["ML_MODE"] == "run" and tags["ML_OUTBLOCK"] == 4
    assert tags["RANDOM_SEED"] == [7, 0, 0] and tags["ISYM"] == 0


def test_md_incar_nvt_langevin_train():
    tags = md_incar(protocol("md", "fast"), ensemble="nvt", temperature=300, steps=10, timestep=1.0,
                    ml_mode="train", thermostat="langevin", n_species=3)
    assert tags["MDALGO"] == 3 and tags["LANGEVIN_GAMMA"] == [10.0, 10.0, 10.0]
    assert tags["ML_MODE"] == "train" and "SMASS" not in tags and "RANDOM_SEED" not in tags
    assert "ML_OUTBLOCK" not in tags  # training writes every step
    with pytest.raises(InputError, match="stride"):
        md_incar(protocol("md", "fast"), ensemble="nvt", temperature=300, steps=10, timestep=1.0,
                 ml_mode="train", stride=2, thermostat="langevin", n_species=3)
    with pytest.raises(InputError, match="n_species"):
        md_incar(protocol("md", "fast"), ensemble="nvt", temperature=300, steps=10, timestep=1.0,
                 thermostat="langevin")


def test_md_incar_nve():
    tags = md_incar(protocol("md", "precise"), ensemble="NVE", temperature=300, steps=10, timestep=0.25,
                    overrides={"ML_OUTBLOCK": None, "smass": -3})
    assert tags["MDALGO"] == 1 and tags["ANDERSEN_PROB"] == 0.0 and "ML_OUTBLOCK" not in tags
    assert tags["SMASS"] == -3
    with pytest.raises(InputError, match="thermostat"):
        md_incar(protocol("md", "fast"), ensemble="nve", temperature=300, steps=10, timestep=1.0,
                 thermostat="langevin")


@pytest.mark.parametrize("bad", [{"ensemble": "npt"}, {"steps": 0}, {"timestep": -1.0}, {"stride": 0},
                                 {"temperature": float("nan")}, {"ml_mode": "refit"},
                                 {"ml_mode": "train", "stride": 3}])
def test_md_incar_rejects_bad_input(bad):
    kwargs = {"ensemble": "nvt", "temperature": 300, "steps": 10, "timestep": 1.0} | bad
    with pytest.raises(InputError):
        md_incar(protocol("md", "fast"), **kwargs)


def test_next_electronic_fix_sequence():
    tags = {"algo": "Fast", "NELM": 60}
    seen = []
    while (fix := next_electronic_fix(tags)) is not None:
        tags, description = fix
        seen.append((tags.get("ALGO"), tags.get("NELM")))
    assert seen == [("Normal", 60), ("Normal", 120), ("Normal", 240), ("Normal", 400), ("All", 400)]

"""aiida_irspec.engines.vasp: INCAR builders, electronic fixes, unwrapping, velocities, trajectory reading.

No AiiDA here. Real VASP files come from ../shared/data/aiida-vasp; synthetic trajectories are written
with ASE's XDATCAR writer (and say so): there is no real MD output in the shared data.
"""

import numpy as np
import pytest

from aiida_irspec import units
from aiida_irspec.engines.vasp import (dfpt_incar, md_incar, next_electronic_fix, read_final_velocities,
                                       read_md_trajectory, temperature_from_kinetic, unwrap_positions,
                                       velocities_from_positions)
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


def triclinic_cell():
    return np.array([[5.0, 0.0, 0.0], [1.2, 4.5, 0.0], [0.7, -0.9, 6.0]])


def oscillating_trajectory(times):
    """Positions (F, 3, 3) of three atoms drifting through the cell faces and oscillating; exact velocities."""
    rng = np.random.default_rng(3)
    start, drift = rng.uniform(0, 5, (3, 3)), rng.normal(0, 0.08, (3, 3))
    amplitude, omega = rng.uniform(0.1, 0.3, (3, 3)), 2 * np.pi / 60.0
    t = times[:, None, None]
    positions = start + drift * t + amplitude * np.sin(omega * t)
    velocities = drift + amplitude * omega * np.cos(omega * t)
    return positions, velocities


def test_unwrap_positions_undoes_folding():
    times = np.arange(200) * 1.0
    positions, _ = oscillating_trajectory(times)
    cell = triclinic_cell()
    fractional = positions @ np.linalg.inv(cell)
    assert np.ptp(np.floor(fractional)) > 0  # the atoms do cross cell faces
    cells = np.repeat(cell[None], len(times), axis=0)
    unwrapped = unwrap_positions(fractional % 1.0, cells)
    shift = positions[0] - unwrapped[0]
    np.testing.assert_allclose(unwrapped + shift, positions, atol=1e-10)
    np.testing.assert_allclose(np.round(shift @ np.linalg.inv(cell), 12) % 1.0, 0.0, atol=1e-9)


def test_velocities_central_differences_second_order():
    errors = []
    for dt in (1.0, 0.5):
        times = np.arange(0, 120, dt)
        positions, exact = oscillating_trajectory(times)
        estimate = velocities_from_positions(positions, times)
        errors.append(np.abs(estimate - exact)[1:-1].max())
    assert errors[0] < 1e-3
    assert 3.5 < errors[0] / errors[1] < 4.5  # O(dt^2)
    with pytest.raises(InputError):
        velocities_from_positions(positions[:1], times[:1])


def test_temperature_from_kinetic_uses_3n_minus_3():
    n_atoms, temperature = 10, 300.0
    kinetic = 0.5 * (3 * n_atoms - 3) * units.BOLTZMANN_EV * temperature
    assert temperature_from_kinetic(kinetic, n_atoms) == pytest.approx(temperature, rel=1e-14)


def test_xdatcar_roundtrip_unwrapped(tmp_path):
    """A synthetic trajectory written by ASE's XDATCAR writer (folded into the cell, 8 decimals) comes back
    unwrapped with velocities from central differences."""
    from ase import Atoms
    from ase.io import write

    timestep, stride = 0.5, 2
    times = np.arange(100) * timestep * stride
    positions, exact = oscillating_trajectory(times)
    cell = triclinic_cell()
    frames = [Atoms("OH2", positions=p, cell=cell, pbc=True) for p in positions]
    for frame in frames:
        frame.wrap()
    write(tmp_path / "XDATCAR", frames, format="vasp-xdatcar")
    trajectory = read_md_trajectory(timestep=timestep, stride=stride, xdatcar=tmp_path / "XDATCAR")
    assert trajectory.symbols == ["O", "H", "H"] and trajectory.source["format"] == "xdatcar"
    np.testing.assert_allclose(trajectory.times, times, rtol=0, atol=1e-12)
    assert trajectory.steps.tolist() == list(range(1, 200, 2))
    shift = positions[0] - trajectory.positions[0]
    np.testing.assert_allclose(trajectory.positions + shift, positions, atol=1e-7)
    assert trajectory.potential_energy is None
    np.testing.assert_allclose(trajectory.velocities[1:-1], exact[1:-1], atol=2e-3)
    ekin = 0.5 * np.einsum("n,fnk->f", trajectory.masses, trajectory.velocities ** 2) * units.AMU_A2_PER_FS2_IN_EV
    np.testing.assert_allclose(trajectory.kinetic_energy, ekin, rtol=1e-12)


@pytest.mark.shared
def test_real_vasprun_steps(shared_data):
    """The 5 ionic steps of a real VASP run (a relaxation; no MD output exists here): frames, energies, cells."""
    from ase.io import read

    path = shared_data / "aiida-vasp" / "exit_codes" / "ionic-unconverged" / "out" / "vasprun.xml"
    trajectory = read_md_trajectory(timestep=2.0, vasprun=path)
    reference = read(path, index=":", format="vasp-xml")
    assert len(reference) == len(trajectory.times) == 5
    np.testing.assert_array_equal(trajectory.times, [0.0, 2.0, 4.0, 6.0, 8.0])
    np.testing.assert_allclose(trajectory.potential_energy,
                               [atoms.calc.results["free_energy"] for atoms in reference], rtol=0, atol=1e-8)
    for frame, atoms in enumerate(reference):
        np.testing.assert_allclose(trajectory.cells[frame], atoms.cell.array, atol=1e-12)
        delta = (trajectory.positions[frame] - atoms.positions) @ np.linalg.inv(atoms.cell.array)
        np.testing.assert_allclose(delta, np.round(delta), atol=1e-7)  # same atoms up to lattice vectors
    steps = np.diff(trajectory.positions, axis=0) @ np.linalg.inv(trajectory.cells[0])
    assert np.abs(steps).max() < 0.5  # unwrapped: no jump by a lattice vector
    assert trajectory.source["kinetic_energy"] == "finite-difference velocities"
    np.testing.assert_allclose(trajectory.temperature,
                               temperature_from_kinetic(trajectory.kinetic_energy, 2), rtol=1e-14)


@pytest.mark.shared
def test_real_xdatcar_and_contcar(shared_data):
    run = shared_data / "aiida-vasp" / "born_effective_charge"
    trajectory = read_md_trajectory(timestep=1.0, xdatcar=run / "XDATCAR")
    from ase.io import read

    poscar = read(run / "POSCAR", format="vasp")
    assert trajectory.positions.shape == (1, 26, 3) and trajectory.steps.tolist() == [1]
    np.testing.assert_allclose(trajectory.positions[0], poscar.positions, atol=1e-6)
    assert np.all(np.isnan(trajectory.velocities))  # one frame: no finite difference
    velocities = read_final_velocities(run / "CONTCAR")  # VASP writes a (zero) velocity block
    assert velocities.shape == (26, 3) and not velocities.any()
    assert read_final_velocities(run / "POSCAR") is None

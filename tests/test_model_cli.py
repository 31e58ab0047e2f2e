"""``aiida-irspec fit`` / ``predict`` on the shared ZrO2 OUTCARs and on extxyz files (small settings)."""

import ase.io
import numpy as np
import pytest
from click.testing import CliRunner
from model_structures import fluorite, water_dimer

from aiida_irspec.cli import cli
from aiida_irspec.model import PolarizationModel

SMALL = ["--cutoff", "3.6", "--n-radial", "2", "--l-max", "2"]


@pytest.mark.shared
def test_fit_and_predict_zro2(tmp_path, zro2_outcars, zro2_dir):
    runner = CliRunner()
    model = tmp_path / "model"
    result = runner.invoke(cli, ["fit", *map(str, zro2_outcars[:4]), "-o", str(model), "--validation",
                                 str(zro2_dir / "OUTCAR.9[79].gz"), "--charges", "Zr=4,O=-2", *SMALL])
    assert result.exit_code == 0, result.output
    for text in ("training", "validation", "Z Zr", "Z O", "alpha=", "Zr=+4", "cutoff=3.6"):
        assert text in result.output
    assert PolarizationModel.load(model).metrics["validation"]["born_charges_rmse"]["all"] > 0
    poscars = [zro2_dir / "POSCAR.3", zro2_dir / "POSCAR.5"]
    out = tmp_path / "out.npz"
    result = runner.invoke(cli, ["predict", str(model), *map(str, poscars), "-o", str(out), "--born-charges"])
    assert result.exit_code == 0, result.output
    arrays = np.load(out)
    assert arrays["polarization"].shape == (2, 3) and arrays["born_charges"].shape == (2, 96, 3, 3)
    frames = [ase.io.read(p, format="vasp") for p in poscars]
    np.testing.assert_array_equal(arrays["born_charges"], PolarizationModel.load(model).predict_born_charges(frames))


def test_fit_extxyz_and_errors(tmp_path):
    frames = []
    for seed in range(4):
        atoms = fluorite(seed)
        formal = np.array([4.0 if z == 40 else -2.0 for z in atoms.numbers])
        atoms.arrays["born_charges"] = formal[:, None] * np.eye(3).ravel() + 0.01 * seed
        frames.append(atoms)
    ase.io.write(tmp_path / "train.extxyz", frames)
    runner = CliRunner()
    model = tmp_path / "m.npz"
    result = runner.invoke(cli, ["fit", str(tmp_path / "train.extxyz"), "-o", str(model), *SMALL])
    assert result.exit_code == 0, result.output
    # the polynomial kind and its options reach the model
    polynomial = tmp_path / "p.npz"
    result = runner.invoke(cli, ["fit", str(tmp_path / "train.extxyz"), "-o", str(polynomial), *SMALL, "--kind",
                                 "polynomial", "--polynomial-radial", "2", "--polynomial-degree", "2",
                                 "--transfer-radial", "1"])
    assert result.exit_code == 0, result.output
    loaded = PolarizationModel.load(polynomial)
    assert loaded.fitted_kind == "polynomial" and (loaded.descriptor.polynomial_radial,
                                                   loaded.descriptor.polynomial_degree,
                                                   loaded.descriptor.transfer_radial) == (2, 2, 1)
    # a species the model never saw: clean message, exit code 2
    ase.io.write(tmp_path / "water.xyz", water_dimer())
    result = runner.invoke(cli, ["predict", str(model), str(tmp_path / "water.xyz"), "-o", str(tmp_path / "o.npz")])
    assert result.exit_code == 2 and "knows species" in result.output and "Traceback" not in result.output
    # non-neutral charges
    result = runner.invoke(cli, ["fit", str(tmp_path / "train.extxyz"), "-o", str(model), "--charges", "Zr=4,O=-1",
                                 *SMALL])
    assert result.exit_code == 2 and "sum to" in result.output
    # not a model file
    result = runner.invoke(cli, ["predict", str(tmp_path / "train.extxyz"), str(tmp_path / "water.xyz"), "-o",
                                 str(tmp_path / "o.npz")])
    assert result.exit_code == 2 and "not an aiida-irspec" in result.output


@pytest.mark.slow
@pytest.mark.shared
def test_zro2_accuracy_all_60(zro2_outcars):
    """The default model on all 60 ZrO2 structures: 5-fold CV RMSE of Z well below the species-mean baseline."""
    from aiida_irspec.io.vasp import read_born_charges

    records = [read_born_charges(p) for p in zro2_outcars]
    model = PolarizationModel().fit([r.atoms for r in records], [r.born_charges for r in records])
    assert model.charges == {40: 4.0, 8: -2.0}
    assert model.metrics["cv_rmse"] < 0.08


@pytest.mark.shared
def test_fit_kind_auto_and_predict_partition(tmp_path, zro2_outcars, zro2_dir):
    """``--kind auto`` says what it picked and why; ``--partition`` writes neutral charges and atomic dipoles."""
    runner = CliRunner()
    model = tmp_path / "auto.npz"
    result = runner.invoke(cli, ["fit", *map(str, zro2_outcars[:5]), "-o", str(model), "--kind", "auto", *SMALL,
                                 "--transfer-cutoff", "2.6", "--body-order", "3"])
    assert result.exit_code == 0, result.output
    loaded = PolarizationModel.load(model)
    table = {row["kind"]: row["cv_rmse"] for row in loaded.metrics["kind_selection"]}
    best = min(table, key=table.get)
    assert loaded.fitted_kind == best and f"kind auto: picked {best}" in result.output
    assert loaded.descriptor.body_order == 3 and best != "dipole"
    assert all(f"{kind} {error:.4f}" in result.output for kind, error in table.items())
    out = tmp_path / "partition.npz"
    poscar = zro2_dir / "POSCAR.3"
    result = runner.invoke(cli, ["predict", str(model), str(poscar), "-o", str(out), "--partition"])
    assert result.exit_code == 0, result.output
    arrays = np.load(out)
    assert arrays["charges"].shape == (1, 96) and arrays["atomic_dipoles"].shape == (1, 96, 3)
    assert abs(arrays["charges"].sum()) < 1e-9 and np.ptp(arrays["charges"][0][:32]) > 0  # Zr charges vary


def test_fit_kind_choices_and_default_are_the_models():
    """The fit command names its kinds without importing the model (fast start): they must stay the model's."""
    from aiida_irspec.cli.model import fit
    from aiida_irspec.model.kinds import KINDS
    from aiida_irspec.model.settings import ModelSettings

    option = next(param for param in fit.params if param.name == "kind")
    assert tuple(option.type.choices) == KINDS + ("auto",) and option.default == ModelSettings().kind
    # the defaults the descriptor options' help names are the descriptor's
    descriptor = ModelSettings().descriptor
    for name in ("cutoff", "n_radial", "l_max", "transfer_radial", "invariant_radial", "polynomial_radial",
                 "polynomial_degree"):
        option = next(param for param in fit.params if param.name == name)
        assert f"(default {getattr(descriptor, name)})" in option.help, (name, option.help)

"""``aiida-irspec pdot`` and the irspec.predict_pdot CalcJob: dP/dt along a trajectory where it is stored."""

import pathlib
import shutil

import ase
import numpy as np
import pytest
from click.testing import CliRunner

from campaign_helpers import dimer_model, trajectory_data, water_dimer_md


def test_pdot_command_matches_the_model(tmp_path):
    from aiida_irspec.cli import cli

    model, result = dimer_model(), water_dimer_md()
    model.save(tmp_path / "model.npz")
    result.save_npz(tmp_path / "t.npz")
    runner = CliRunner()
    out = runner.invoke(cli, ["pdot", str(tmp_path / "model.npz"), str(tmp_path / "t.npz"), "-o", str(tmp_path / "p.npz")])
    assert out.exit_code == 0, out.output
    frames = [ase.Atoms(numbers=result.numbers, positions=x) for x in result.positions]
    with np.load(tmp_path / "p.npz") as data:
        assert np.allclose(data["pdot"], model.predict_pdot(frames, result.velocities), rtol=1e-10, atol=1e-12)
        assert np.array_equal(data["times"], result.times)
    out = runner.invoke(cli, ["pdot", str(tmp_path / "model.npz"), str(tmp_path / "t.npz"), "--route", "polarization",
                              "-o", str(tmp_path / "P.npz")])
    assert out.exit_code == 0, out.output
    with np.load(tmp_path / "P.npz") as data:
        polarization = data["polarization"]
    assert np.allclose(polarization, model.predict_polarization(frames))
    bad = runner.invoke(cli, ["pdot", str(tmp_path / "t.npz"), str(tmp_path / "t.npz")])
    assert bad.exit_code == 2 and "not an aiida-irspec polarization model" in bad.output


def test_velocity_route_is_the_time_derivative_of_p(tmp_path):
    """On a finely sampled run (every 0.5 fs) dP/dt from the velocities matches the central difference of P."""
    from aiida_irspec.campaign.pdot import predict_along, read_trajectory

    model, result = dimer_model(), water_dimer_md(steps=200, stride=1)
    result.save_npz(tmp_path / "fine.npz")
    trajectory = read_trajectory(tmp_path / "fine.npz")
    pdot = predict_along(model, trajectory, "velocity")["pdot"]
    polarization = predict_along(model, trajectory, "polarization")["polarization"]
    central = (polarization[2:] - polarization[:-2]) / (2 * 0.5)
    error = np.sqrt(np.mean((central - pdot[1:-1]) ** 2)) / np.sqrt(np.mean(pdot ** 2))
    assert error < 0.05  # O-H stretch (period ~9 fs): central-difference error (omega h)^2 / 6 is ~4%


@pytest.fixture
def irspec_code(aiida_localhost, aiida_code_installed):
    return aiida_code_installed(filepath_executable=shutil.which("aiida-irspec"), computer=aiida_localhost,
                                default_calc_job_plugin="irspec.predict_pdot", label="irspec")


def test_calcjob_on_a_stored_trajectory(irspec_code):
    from aiida.engine import run_get_node

    from aiida_irspec.calculations.predict import PredictPdotCalculation
    from aiida_irspec.data.polarization_model import PolarizationModelData

    model, result = dimer_model(), water_dimer_md()
    node_model = PolarizationModelData(model)
    outputs, node = run_get_node(PredictPdotCalculation, code=irspec_code, model=node_model,
                                 trajectory=trajectory_data(result))
    assert node.is_finished_ok, node.exit_message
    frames = [ase.Atoms(numbers=result.numbers, positions=x) for x in result.positions]
    assert np.allclose(outputs["pdot"].get_array("pdot"), model.predict_pdot(frames, result.velocities), atol=1e-12)
    assert outputs["pdot"].base.attributes.get("units")["pdot"] == "|e| Angstrom/fs"


def test_calcjob_on_a_remote_trajectory_is_not_copied(irspec_code, aiida_localhost, tmp_path):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.calculations.predict import PredictPdotCalculation
    from aiida_irspec.data.polarization_model import PolarizationModelData

    model, result = dimer_model(), water_dimer_md()
    result.save_npz(tmp_path / "trajectory.npz")
    remote = orm.RemoteData(computer=aiida_localhost, remote_path=str(tmp_path)).store()
    outputs, node = run_get_node(PredictPdotCalculation, code=irspec_code, model=PolarizationModelData(model),
                                 remote_trajectory=remote, trajectory_filename=orm.Str("trajectory.npz"),
                                 settings=orm.Dict({"route": "polarization"}))
    assert node.is_finished_ok, node.exit_message
    workdir = node.outputs.remote_folder.get_remote_path()
    linked = pathlib.Path(workdir) / "trajectory.npz"
    assert linked.is_symlink() and linked.resolve() == (tmp_path / "trajectory.npz").resolve()
    assert "trajectory.npz" not in node.outputs.retrieved.base.repository.list_object_names()
    frames = [ase.Atoms(numbers=result.numbers, positions=x) for x in result.positions]
    assert np.allclose(outputs["pdot"].get_array("polarization"), model.predict_polarization(frames))


def test_calcjob_input_validation(irspec_code):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.calculations.predict import PredictPdotCalculation
    from aiida_irspec.data.polarization_model import PolarizationModelData

    model = PolarizationModelData(dimer_model())
    trajectory = trajectory_data(water_dimer_md())
    with pytest.raises(ValueError, match="exactly one of trajectory"):
        run_get_node(PredictPdotCalculation, code=irspec_code, model=model)
    with pytest.raises(ValueError, match="unknown settings speed"):
        run_get_node(PredictPdotCalculation, code=irspec_code, model=model, trajectory=trajectory,
                     settings=orm.Dict({"speed": 1}))

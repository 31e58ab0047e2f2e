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
    out = runner.invoke(cli, ["pdot", str(tmp_path / "model.npz"), str(tmp_path / "t.npz"), "-o",
                              str(tmp_path / "p.npz")])
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
    with pytest.raises(ValueError, match="unknown setting.* .?speed"):
        run_get_node(PredictPdotCalculation, code=irspec_code, model=model, trajectory=trajectory,
                     settings=orm.Dict({"speed": 1}))


def test_both_routes_give_the_same_spectrum():
    """A tblite run stored at every step (0.5 fs): route "auto" predicts P only (one expansion per frame) and
    says so; its spectrum equals the velocity route's (dP/dt from two expansions per frame) band by band, each
    route obeying the f-sum rule against its own <|dP/dt|^2> to round-off."""
    from aiida_irspec import units
    from aiida_irspec.campaign.pdot import predict_along
    from aiida_irspec.spectra.green_kubo import green_kubo_spectrum, pdot_from_polarization, spectrum_from_polarization

    model, result = dimer_model(), water_dimer_md(steps=1000, stride=1)
    trajectory = {"times": result.times, "positions": result.positions, "cells": result.cells,
                  "numbers": result.numbers, "pbc": result.pbc, "velocities": result.velocities}
    auto, velocity = predict_along(model, trajectory), predict_along(model, trajectory, "velocity")
    assert str(auto["route"]) == "polarization" and str(velocity["route"]) == "velocity"
    dt, options = 0.5, {"temperature": 300.0, "molecules": 2, "width_cm1": 120.0, "max_correlation_fs": 400.0}
    from_p = spectrum_from_polarization(auto["polarization"], dt, **options)
    from_pdot = green_kubo_spectrum(velocity["pdot"], dt, **options)
    # f-sum rule: the integral is the same constant times each route's own <|dP/dt|^2>
    from_differences = pdot_from_polarization(auto["polarization"], dt)
    assert from_p.integral() / np.mean(np.sum(from_differences**2, axis=1)) == pytest.approx(
        from_pdot.integral() / np.mean(np.sum(velocity["pdot"] ** 2, axis=1)), rel=1e-9)
    frequency, peak = from_pdot.frequency_cm1, from_pdot.absorption.max()
    assert np.abs(from_p.absorption - from_pdot.absorption).max() < 0.01 * peak
    # librations, bend: 0.1 %, 0.3 % (measured); the stretches +2.2 %: at 3700 cm^-1 and 0.5 fs the difference
    # quotient of P and the integrator's velocities differ at order (omega dt)^2 (sinc^2 alone is -1.1 %)
    for (lo, hi), tolerance in (((0, 1000), 0.005), ((1400, 1900), 0.01), ((3000, 4000), 0.04)):
        band = (frequency >= lo) & (frequency < hi)
        assert from_p.absorption[band].sum() == pytest.approx(from_pdot.absorption[band].sum(), rel=tolerance)
    assert from_p.integral() == pytest.approx(from_pdot.integral(), rel=0.005)
    assert np.sinc(3700 * units.CM1_TO_RAD_PER_FS * dt / (2 * np.pi)) ** 2 == pytest.approx(1 - 0.011, abs=1e-3)

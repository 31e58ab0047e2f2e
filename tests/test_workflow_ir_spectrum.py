"""irspec.ir_spectrum on tblite (water dimer): NVT snapshots, NVE runs, dP/dt, aggregation, dipole reference."""

import pathlib
import shutil

import numpy as np
import pytest

from campaign_helpers import WATER_DIMER, dimer_model


@pytest.fixture
def codes(aiida_localhost, aiida_code_installed):
    executable = shutil.which("aiida-irspec")
    return (aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                 default_calc_job_plugin="irspec.tblite.md", label="tblite-md"),
            aiida_code_installed(filepath_executable=executable, computer=aiida_localhost,
                                 default_calc_job_plugin="irspec.predict_pdot", label="irspec-predict"))


@pytest.mark.slow
def test_spectrum_of_three_runs_with_dipole_reference(codes):
    import ase.io
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.data.polarization_model import PolarizationModelData
    from aiida_irspec.workflows.ir_spectrum import IRSpectrumWorkChain

    md_code, predict_code = codes
    atoms = ase.io.read(WATER_DIMER)
    atoms.cell = np.eye(3) * 20.0
    runs = {"number": 3, "steps": 400, "timestep": 0.5, "stride": 1, "decorrelation": 50.0, "thermalization": 50.0}
    results, node = run_get_node(
        IRSpectrumWorkChain, structure=orm.StructureData(ase=atoms), model=PolarizationModelData(dimer_model()),
        temperature=orm.Float(300.0), runs=orm.Dict(runs), failures=orm.Dict({"max_concurrent": 2}),
        reference_dipoles=orm.Bool(True), analysis=orm.Dict({"molecules": 2, "width_cm1": 60.0}),
        md={"engine": orm.Str("tblite"), "code": md_code, "protocol": orm.Str("moderate")},
        predict={"code": predict_code, "route": orm.Str("polarization")})
    assert node.is_finished_ok, node.exit_message
    spectrum, reference = results["spectrum"], results["reference_spectrum"]
    assert spectrum.n_runs == reference.n_runs == 3 and sorted(results["pdot"]) == ["run_2", "run_3", "run_4"]
    assert "polarization" in results["pdot"]["run_2"].get_arraynames()
    assert spectrum.settings["temperature_K"] == 300.0 and spectrum.unit == "km/mol/cm^-1"
    # the NVT run stored a snapshot every 50 fs after 50 fs of thermalization; each run starts from one
    nvt = results["nvt_trajectory"]
    assert np.allclose(nvt.get_times(), np.arange(5) * 50.0)
    for k in (2, 3, 4):
        trajectory = results["trajectories"][f"run_{k}"]
        assert np.allclose(trajectory.get_positions()[0], nvt.get_positions()[k])
        assert np.allclose(trajectory.get_array("velocities")[0], nvt.get_array("velocities")[k])
        assert trajectory.numsteps == 401
    # the model's spectrum and tblite's own along the same runs have their bands in the same places
    nu = spectrum.frequency_cm1
    assert np.array_equal(nu, reference.frequency_cm1)
    correlation = np.corrcoef(spectrum.mean[nu < 4500], reference.mean[nu < 4500])[0, 1]
    assert correlation > 0.5, correlation


def test_pdot_where_the_trajectory_lives_or_from_the_stored_one(codes, aiida_computer_local, aiida_code_installed):
    """With the predict code on the MD computer the dP/dt job reads the NVE run's own trajectory.npz in its remote
    folder (symlinked, nothing copied); with it elsewhere, the stored TrajectoryData. Same runs, same dP/dt."""
    import ase.io
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.data.polarization_model import PolarizationModelData
    from aiida_irspec.workflows.ir_spectrum import IRSpectrumWorkChain

    md_code, predict_here = codes
    predict_elsewhere = aiida_code_installed(filepath_executable=shutil.which("aiida-irspec"),
                                             computer=aiida_computer_local(label="elsewhere"),
                                             default_calc_job_plugin="irspec.predict_pdot", label="irspec-elsewhere")
    atoms = ase.io.read(WATER_DIMER)
    atoms.cell = np.eye(3) * 20.0
    runs = {"number": 1, "steps": 100, "timestep": 0.5, "decorrelation": 10.0, "thermalization": 10.0}
    model = PolarizationModelData(dimer_model()).store()

    def spectrum_run(predict_code):
        results, node = run_get_node(
            IRSpectrumWorkChain, structure=orm.StructureData(ase=atoms), model=model, temperature=orm.Float(300.0),
            runs=orm.Dict(runs), analysis=orm.Dict({"molecules": 2, "width_cm1": 60.0}),
            md={"engine": orm.Str("tblite"), "code": md_code, "protocol": orm.Str("moderate")},
            predict={"code": predict_code, "route": orm.Str("velocity")})
        assert node.is_finished_ok, node.exit_message
        (predict,) = [n for n in node.called if n.process_type == "aiida.calculations:irspec.predict_pdot"]
        (nve,) = [n for n in node.called if n.label.startswith("nve run")]
        return results, predict, nve

    remote_results, remote_job, remote_nve = spectrum_run(predict_here)
    assert "trajectory" not in remote_job.inputs
    assert remote_job.inputs.remote_trajectory.pk == remote_nve.outputs.remote_folder.pk
    assert remote_job.inputs.trajectory_filename.value == "trajectory.npz"
    workdir = pathlib.Path(remote_job.outputs.remote_folder.get_remote_path())
    assert (workdir / "trajectory.npz").is_symlink()

    stored_results, stored_job, _ = spectrum_run(predict_elsewhere)
    assert "remote_trajectory" not in stored_job.inputs
    assert stored_job.inputs.trajectory.pk == stored_results["trajectories"]["run_2"].pk

    # the MD runs are seeded, so both spectra come from the same trajectory: the two routes agree
    trajectories = [r["trajectories"]["run_2"].get_positions() for r in (remote_results, stored_results)]
    np.testing.assert_array_equal(*trajectories)
    pdot = [r["pdot"]["run_2"].get_array("pdot") for r in (remote_results, stored_results)]
    assert np.abs(pdot[0]).max() > 0
    np.testing.assert_array_equal(*pdot)

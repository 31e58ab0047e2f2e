"""Jobs that fail on the compute node: the tblite CalcJobs run for real through a Code whose executable
is a fault-injecting wrapper around ``aiida-irspec``. The wrapper counts the jobs it runs and damages the
ones whose numbers it was given: the engine is killed before it writes anything (a crash), or it runs and
its npz output is then deleted or cut off, or its summary is cut off. With ``sticky`` every later job of
the same structure is damaged too (a structure that always kills the engine), so the tblite WorkChain's one
rerun after a crash fails again.

Each failure must end the job with its documented exit code (310-313), the tblite WorkChain with the same
code after its one rerun, the engine-agnostic WorkChain above it with 401 naming that code, and a fan-out
of reference jobs must leave the failed one out and keep every other result. A crash that the rerun cures:
test_tblite_workchains.py. Not here (see docs/reliability.md): a run that does not converge
(test_tblite_calcjobs.py, test_vasp_workchains.py), past its wall time (test_tblite_workchains.py and
test_cluster.py on SLURM; core.direct has no wall time), energy drift (test_tblite_calcjobs.py), too many
failures (test_workflow_active_learning.py).
"""

import pathlib
import re
import secrets
import shutil
import sys

import numpy as np
import pytest

from campaign_helpers import SMALL_DESCRIPTOR, trajectory_data, water_dimer_md

pytest.importorskip("tblite")

EXECUTABLE = shutil.which("aiida-irspec", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
    "aiida-irspec")
OUTPUTS = "born_charges.npz trajectory.npz"
FAULTS = {  # fault -> shell lines run instead of the plain command ($REAL: the real aiida-irspec)
    "crash": 'exec "$REAL" "$@" & kill -KILL $!; wait $!',
    "no-output": f'"$REAL" "$@"; rm -f {OUTPUTS}',
    "truncated-output": f'"$REAL" "$@"; for f in {OUTPUTS}; do [ -e "$f" ] && truncate -s 300 "$f"; done',
    "truncated-summary": '"$REAL" "$@"; truncate -s 40 summary.json',
}
EXIT_STATUS = {"crash": 310, "truncated-summary": 311, "no-output": 312, "truncated-output": 313}


def options():
    return {"resources": {"num_machines": 1}, "max_wallclock_seconds": 600, "withmpi": False,
            "environment_variables": {"OMP_NUM_THREADS": "1"}}


@pytest.fixture
def faulty_code(aiida_code_installed, aiida_localhost, tmp_path):
    """``faulty_code(fault, at, sticky=False)``: an InstalledCode on localhost whose executable runs
    ``aiida-irspec`` and applies ``fault`` (a key of FAULTS) to the jobs numbered in ``at`` (1-based, in start
    order) and, when ``sticky``, to every later job of the same structure (same structure.extxyz)."""
    if EXECUTABLE is None:
        pytest.skip("the aiida-irspec executable is not on the PATH")
    aiida_localhost.set_minimum_job_poll_interval(0.0)

    def make(fault, at=(1,), sticky=False):
        folder = tmp_path / f"fault-{fault}"
        folder.mkdir()
        script = folder / "aiida-irspec"
        poison = f'echo "$sum" >> "{folder}/poisoned"' if sticky else ":"
        script.write_text(
            "#!/bin/bash\n"
            f'REAL="{EXECUTABLE}"\n'
            f'n=$( ( flock 9; n=$(( $(cat "{folder}/count" 2>/dev/null || echo 0) + 1 )); '
            f'echo $n > "{folder}/count"; echo $n ) 9>"{folder}/lock" )\n'
            'sum=$(sha256sum structure.extxyz 2>/dev/null | cut -d" " -f1)\n'
            f'case " {" ".join(map(str, at))} " in\n'
            f'  *" $n "*) {poison} ;;\n'
            f'  *) grep -qx "$sum" "{folder}/poisoned" 2>/dev/null || exec "$REAL" "$@" ;;\n'
            'esac\n'
            f'echo "fault injected: {fault} (job $n)" >&2\n'
            f"{FAULTS[fault]}\n")
        script.chmod(0o755)
        return aiida_code_installed(filepath_executable=str(script), computer=aiida_localhost,
                                    default_calc_job_plugin="irspec.tblite.born_charges",
                                    label=f"faulty-{fault}-{secrets.token_hex(4)}")  # the fixture reuses labels

    return make


@pytest.fixture
def water_dimer():
    from ase.collections import s22

    return s22["Water_dimer"]


@pytest.mark.parametrize("fault", list(EXIT_STATUS))
def test_failed_job_ends_with_its_exit_code(faulty_code, water_dimer, fault):
    """The Born-charge WorkChain on tblite whose job fails, and its rerun too: the job's code (310-313), passed
    on by the tblite WorkChain, then 401."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    _, node = run_get_node(WorkflowFactory("irspec.born_charges"), structure=orm.StructureData(ase=water_dimer),
                           engine=orm.Str("tblite"), code=faulty_code(fault, at=(1, 2)), protocol=orm.Str("fast"),
                           options=orm.Dict(options()))
    tblite = node.called[0]
    jobs = tblite.called
    assert [job.exit_status for job in jobs] == [EXIT_STATUS[fault]] * 2, [(j.pk, j.exit_message) for j in jobs]
    for job in jobs:
        assert f"fault injected: {fault}" in job.outputs.retrieved.base.repository.get_object_content("aiida.err")
    assert tblite.exit_status == EXIT_STATUS[fault] and tblite.exit_message == jobs[-1].exit_message
    assert node.exit_status == 401 and f"exit status {EXIT_STATUS[fault]}" in node.exit_message
    assert "born_charges" not in node.outputs and not any("born_charges" in job.outputs for job in jobs)
    # what could be read is kept: the summary of a run whose npz was lost
    assert ("misc" in jobs[-1].outputs) == ("misc" in tblite.outputs) == (fault in ("no-output", "truncated-output"))


def reports_of(node, caplog):
    """The process reports of ``node``, from the log records pytest captured (the database log handler is bound
    to the first profile of the session, which is not always this test's)."""
    return [record.getMessage() for record in caplog.records if f"[{node.pk}|" in record.getMessage()]


def test_failed_reference_is_left_out_and_every_other_kept(faulty_code, caplog):
    """Active learning with 4 reference jobs of which the 2nd to start crashes, and so does its rerun (1 in 4 <=
    the allowed 0.5): the loop goes on, the crashed frame is recorded and left out, the 3 other references are
    kept, equal to tblite's own, and the model is fitted on them."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.engines.tblite import born_charges
    from aiida_irspec.workflows.active_learning import ActiveLearningWorkChain

    pool = trajectory_data(water_dimer_md()).store()
    selection = {"initial": 4, "batch": 1, "budget": 4, "error_estimate": "uncertainty", "holdout": 0}
    code = faulty_code("crash", at=(2,), sticky=True)
    results, node = run_get_node(
        ActiveLearningWorkChain, pool=pool, selection=orm.Dict(selection), candidates=orm.List([0, 20, 40, 60]),
        failures=orm.Dict({"max_failed_fraction": 0.5, "max_concurrent": 4}),
        model=orm.Dict({"descriptor": SMALL_DESCRIPTOR, "baseline": "zero"}),
        born_charges={"engine": orm.Str("tblite"), "code": code, "protocol": orm.Str("fast")})
    assert node.is_finished_ok, node.exit_message
    history = results["history"].get_dict()
    assert len(history["failed_frames"]) == 1 and len(history["failed_jobs"]) == 1
    failed = history["failed_frames"][0]
    failed_job = orm.load_node(history["failed_jobs"][0])
    assert failed_job.exit_status == 401 and [job.exit_status for job in failed_job.called[0].called] == [310, 310]
    kept = sorted(int(key.split("_")[1]) for key in results["born_charges"])
    assert kept == sorted({0, 20, 40, 60} - {failed})
    assert results["model"].training_set_size == 3 and history["rows"][-1]["attempted"] == 4
    for frame in kept:
        atoms = results["structures"][f"frame_{frame}"].get_ase()
        np.testing.assert_allclose(results["born_charges"][f"frame_{frame}"].born_charges,
                                   born_charges(atoms, displacement=2e-3, accuracy=1.0), atol=1e-6)
    assert any(f"for frame {failed} failed" in message for message in reports_of(node, caplog))


@pytest.mark.reliability  # about 30 s
def test_campaign_stops_at_its_failure_limit_and_keeps_what_it_computed(faulty_code, aiida_localhost,
                                                                       aiida_code_installed, tmp_path):
    """The tiny campaign with ``failures.max_failed_fraction: 0`` and its 3rd engine job crashing with its rerun
    (job 1 is the sampling MD, jobs 2 and 3 the first two reference jobs): ``campaign run`` exits 4 naming exit
    status 410; the sampling trajectory and every finished reference are kept (the other first reference, and
    those launched in the sliding window while the crashed job was rerun)."""
    import yaml
    from aiida import orm
    from click.testing import CliRunner

    from aiida_irspec.cli import cli
    from campaign_helpers import tiny_campaign_spec

    engine = faulty_code("crash", at=(3,), sticky=True)
    predict = aiida_code_installed(filepath_executable=EXECUTABLE, computer=aiida_localhost,
                                   default_calc_job_plugin="irspec.predict_pdot",
                                   label=f"irspec-{secrets.token_hex(4)}")
    spec = tiny_campaign_spec(engine.full_label, predict.full_label)
    spec["learning"]["failures"]["max_failed_fraction"] = 0.0
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli, ["campaign", "run", str(path)])
    assert result.exit_code == 4 and "exit 410" in result.output, result.output
    assert "Traceback" not in result.output
    node = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": spec["name"]}).order_by(
        {orm.WorkflowNode: {"ctime": "desc"}}).first()[0]
    failed, attempted = map(int, re.search(r"(\d+) of (\d+) reference jobs failed", node.exit_message).groups())
    assert node.exit_status == 410 and failed == 1 and attempted >= 2, node.exit_message
    assert node.outputs.sampling.trajectory.numsteps == 41
    learning = [child for child in node.called if child.process_label == "ActiveLearningWorkChain"][0]
    assert len(learning.outputs.born_charges) == attempted - 1
    crashed = [job for job in learning.called_descendants if isinstance(job, orm.CalcJobNode) and job.exit_status]
    assert [job.exit_status for job in crashed] == [310, 310]


@pytest.mark.reliability  # about 30 s
def test_crashed_nve_run_is_left_out_of_the_spectrum(faulty_code, aiida_localhost, aiida_code_installed, caplog):
    """irspec.ir_spectrum with 3 NVE runs of which the first to start crashes, and its rerun too (1 in 3 <= the
    allowed 0.5): the spectrum is the mean of the 2 others, whose trajectories and dP/dt are kept; the crash is
    reported."""
    import ase.io
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.data.polarization_model import PolarizationModelData
    from aiida_irspec.workflows.ir_spectrum import IRSpectrumWorkChain
    from campaign_helpers import WATER_DIMER, dimer_model

    md_code = faulty_code("crash", at=(2,), sticky=True)  # job 1 is the NVT run that makes the snapshots
    predict = aiida_code_installed(filepath_executable=EXECUTABLE, computer=aiida_localhost,
                                   default_calc_job_plugin="irspec.predict_pdot",
                                   label=f"irspec-{secrets.token_hex(4)}")
    atoms = ase.io.read(WATER_DIMER)
    atoms.cell = np.eye(3) * 20.0
    runs = {"number": 3, "steps": 200, "timestep": 0.5, "decorrelation": 10.0, "thermalization": 10.0}
    results, node = run_get_node(
        IRSpectrumWorkChain, structure=orm.StructureData(ase=atoms), model=PolarizationModelData(dimer_model()),
        temperature=orm.Float(300.0), runs=orm.Dict(runs),
        failures=orm.Dict({"max_concurrent": 3, "max_failed_fraction": 0.5}),
        analysis=orm.Dict({"molecules": 2, "width_cm1": 60.0}),
        md={"engine": orm.Str("tblite"), "code": md_code, "protocol": orm.Str("moderate"),
            "options": orm.Dict(options())},
        predict={"code": predict})
    assert node.is_finished_ok, node.exit_message
    nve = [child for child in node.called if child.label.startswith("nve run")]
    failed = [child for child in nve if not child.is_finished_ok]
    assert len(nve) == 3 and len(failed) == 1 and failed[0].exit_status == 401
    assert failed[0].called[0].exit_status == 310
    assert [job.exit_status for job in failed[0].called[0].called] == [310, 310]
    kept = sorted(f"run_{child.label.split()[-1]}" for child in nve if child.is_finished_ok)
    assert sorted(results["pdot"]) == sorted(results["trajectories"]) == kept
    assert results["spectrum"].n_runs == 2
    assert any("run left out" in message for message in reports_of(node, caplog))

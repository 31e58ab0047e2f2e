"""The tblite WorkChains ``irspec.tblite.md`` / ``irspec.tblite.born_charges`` and the builders from protocols of the
engine-agnostic ``irspec.md`` / ``irspec.born_charges`` for both engines (VASP with aiida-vasp's mock-vasp).

The restart handlers run for real: a job whose engine process dies from a signal (core.direct on localhost), and
jobs that SLURM cancels for their wall time (the private cluster of ``.ci/cluster.sh``, marker ``cluster``: core.direct
has no wall time). Exit codes of failed jobs that a handler cannot cure: test_job_failures.py.
"""

import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("tblite")

EXECUTABLE = shutil.which("aiida-irspec", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
    "aiida-irspec")


def options(**extra):
    """Job options; the jobs see the PYTHONPATH of the tests (so that they run the same aiida_irspec)."""
    environment = {"OMP_NUM_THREADS": "1"}
    if os.environ.get("PYTHONPATH"):
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return {"resources": {"num_machines": 1}, "max_wallclock_seconds": 600, "withmpi": False,
            "environment_variables": environment, **extra}


@pytest.fixture
def localhost(aiida_localhost):
    if EXECUTABLE is None:
        pytest.skip("the aiida-irspec executable is not on the PATH")
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    return aiida_localhost


@pytest.fixture
def code(aiida_code_installed, localhost):
    """The ``aiida-irspec`` of this environment as a tblite code on localhost (core.direct)."""
    return aiida_code_installed(default_calc_job_plugin="irspec.tblite.md", computer=localhost,
                                filepath_executable=EXECUTABLE)


@pytest.fixture
def water_dimer():
    from ase.collections import s22

    return s22["Water_dimer"]


def structure_of(atoms):
    from aiida import orm

    return orm.StructureData(ase=atoms)


def reports_of(node):
    from aiida.cmdline.utils.common import get_workchain_report

    return get_workchain_report(node, "REPORT")


# ---- restarts ------------------------------------------------------------------------------------------------

@pytest.fixture
def signal_code(aiida_code_installed, localhost, tmp_path):
    """A tblite code whose first job's engine process is killed by SIGSEGV one second after it started (the job
    then has no summary: 310); later jobs run normally."""
    script = tmp_path / "aiida-irspec"
    script.write_text(
        "#!/bin/bash\n"
        f'n=$(( $(cat "{tmp_path}/count" 2>/dev/null || echo 0) + 1 )); echo $n > "{tmp_path}/count"\n'
        f'[ $n -gt 1 ] && exec "{EXECUTABLE}" "$@"\n'
        f'"{EXECUTABLE}" "$@" & pid=$!\n'
        "sleep 1; kill -SEGV $pid; wait $pid; status=$?\n"
        'echo "engine process killed by SIGSEGV (exit status $status)" >&2; exit $status\n')
    script.chmod(0o755)
    return aiida_code_installed(default_calc_job_plugin="irspec.tblite.md", computer=localhost,
                                filepath_executable=str(script), label="tblite-segv")


def test_crashed_job_is_run_again_and_gives_the_run_without_crash(signal_code, water_dimer):
    """The engine dies from a signal: the job ends with 310 (no summary), the WorkChain runs it once more with the
    same inputs, and the trajectory is the one of a run that never crashed."""
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.engines import md, tblite

    builder = WorkflowFactory("irspec.tblite.md").get_builder_from_protocol(
        signal_code, structure_of(water_dimer), protocol="fast", options=options(), ensemble="nvt",
        temperature=300.0, steps=3000, stride=100, seed=4)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    jobs = sorted(node.called, key=lambda job: job.ctime)
    assert [job.exit_status for job in jobs] == [310, 0]
    assert "killed by SIGSEGV" in jobs[0].outputs.retrieved.base.repository.get_object_content("aiida.err")
    assert "summary.json" not in jobs[0].outputs.retrieved.base.repository.list_object_names()
    assert jobs[1].inputs.parameters.get_dict() == jobs[0].inputs.parameters.get_dict()
    assert jobs[1].get_option("max_wallclock_seconds") == jobs[0].get_option("max_wallclock_seconds")
    assert "crashed (exit 310" in reports_of(node)
    assert results["trajectory"].pk == jobs[1].outputs.trajectory.pk
    direct = md.run_md(water_dimer, tblite.make_calculator(), ensemble="nvt", temperature=300.0, steps=3000,
                       timestep=1.0, stride=100, seed=4)
    np.testing.assert_allclose(results["trajectory"].get_array("positions"), direct.positions, atol=1e-6)


@pytest.mark.parametrize("failure", ["engine", "input"])
def test_deterministic_failures_are_not_run_again(code, water_dimer, failure):
    """tblite failing on atoms on top of each other (322) or refusing a stride that does not divide the steps (320):
    one job, whose exit code and message the WorkChain passes on."""
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    if failure == "engine":
        collapsed = water_dimer.copy()
        collapsed.positions[1] = collapsed.positions[0]
        builder = WorkflowFactory("irspec.tblite.born_charges").get_builder_from_protocol(
            code, structure_of(collapsed), options=options())
        status, words = 322, "tblite"
    else:
        builder = WorkflowFactory("irspec.tblite.md").get_builder_from_protocol(
            code, structure_of(water_dimer), steps=10, stride=3, options=options())
        status, words = 320, "stride"
    _, node = run_get_node(builder)
    assert [job.exit_status for job in node.called] == [status] and words in node.called[0].exit_message
    assert node.exit_status == status and node.exit_message == node.called[0].exit_message
    assert "running it" not in reports_of(node)


# ---- wall time on a real SLURM ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slurm(aiida_profile, tmp_path_factory):
    """(tblite code on the cluster's SLURM, trap folder): `cluster setup` of the private cluster, whose trap makes
    the jobs it is armed for sleep past their wall time."""
    from aiida import orm

    from test_cluster import cluster_settings, setup_computer, ssh_arguments

    trap = tmp_path_factory.mktemp("walltime-trap")
    result = setup_computer(aiida_profile, "slurm-tblite", *ssh_arguments(cluster_settings(), trap))
    assert result.exit_code == 0, result.output
    return orm.load_code("tblite@slurm-tblite"), trap


@pytest.mark.cluster
@pytest.mark.parametrize("killed", [1, 3])
def test_walltime_kill_is_run_again_with_more_time_up_to_a_bound(slurm, water_dimer, killed):
    """irspec.born_charges on tblite through SLURM, which cancels the first job (killed=1) or every job (killed=3)
    for its wall time of 30 s: the tblite WorkChain runs it again from the start with twice the time, at most twice
    (30, 60, 120 s), and then ends with 120, which irspec.born_charges reports as 401 naming exit status 120."""
    from aiida.engine import run_get_node

    from aiida_irspec.workflows.born_charges import BornChargesWorkChain
    from test_cluster import arm, disarm

    code, trap = slurm
    arm(trap, *range(1, killed + 1))
    try:
        builder = BornChargesWorkChain.get_builder_from_protocol(
            code, structure_of(water_dimer), protocol="fast", options=options(max_wallclock_seconds=30))
        _, node = run_get_node(builder)
    finally:
        disarm(trap)
    tblite = node.called[0]
    jobs = sorted(tblite.called, key=lambda job: job.ctime)
    assert all("DUE TO TIME LIMIT" in job.get_scheduler_stderr() for job in jobs[:killed])
    if killed == 1:
        assert node.is_finished_ok and tblite.is_finished_ok, (node.exit_message, tblite.exit_message)
        assert [job.exit_status for job in jobs] == [120, 0]
        assert [job.get_option("max_wallclock_seconds") for job in jobs] == [30, 60]
        assert node.outputs.born_charges.get_array("born_charges").shape == (6, 3, 3)
    else:
        assert [job.exit_status for job in jobs] == [120, 120, 120]
        assert [job.get_option("max_wallclock_seconds") for job in jobs] == [30, 60, 120]
        assert tblite.exit_status == 120 and "giving up" in reports_of(tblite)
        assert node.exit_status == 401 and "exit status 120" in node.exit_message


# ---- builders from protocols ---------------------------------------------------------------------------------

def test_protocols_are_listed_for_every_workchain():
    from aiida.plugins import WorkflowFactory

    for name in ("irspec.md", "irspec.born_charges", "irspec.tblite.md", "irspec.tblite.born_charges"):
        process = WorkflowFactory(name)
        assert list(process.get_available_protocols()) == ["fast", "moderate", "precise"], name
        assert process.get_default_protocol() == "moderate"


def test_engine_of_a_code_comes_from_its_plugin(aiida_code_installed, localhost):
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.workflows.engines import engine_of_code

    def plugin_code(plugin, label):
        return aiida_code_installed(default_calc_job_plugin=plugin, computer=localhost, label=label,
                                    filepath_executable="/bin/true")

    assert engine_of_code(plugin_code("irspec.tblite.born_charges", "t")).name == "tblite"
    assert engine_of_code(plugin_code("vasp.vasp", "v")).name == "vasp"
    assert engine_of_code(plugin_code("irspec.vasp.mlff_md", "m")).name == "vasp"
    with pytest.raises(InputError, match="plugin irspec.predict_pdot.* is not the code of an engine"):
        engine_of_code(plugin_code("irspec.predict_pdot", "p"))
    with pytest.raises(InputError, match="has no default CalcJob plugin"):
        engine_of_code(plugin_code(None, "none"))


def test_md_builder_from_protocol_with_tblite(code, water_dimer, tmp_path):
    """The engine comes from the code; overrides mirror the ports (as a dict or a YAML file); the engine's own
    protocol level follows the level; the built WorkChain runs."""
    import yaml
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.exceptions import InputError
    from aiida_irspec.workflows.md import MdWorkChain

    overrides = {"temperature": 250.0, "steps": 20, "stride": 10, "seed": 3,
                 "engine_overrides": {"parameters": {"friction": 20.0}}}
    builder = MdWorkChain.get_builder_from_protocol(code, structure_of(water_dimer), protocol="fast",
                                                    overrides=overrides, options=options())
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides))
    again = MdWorkChain.get_builder_from_protocol(code, structure_of(water_dimer), protocol="fast", overrides=path,
                                                  options=options())
    for name in ("engine", "protocol", "temperature", "steps", "stride", "seed", "engine_overrides", "options"):
        assert builder[name] == again[name], name
    assert builder.engine.value == "tblite" and builder.protocol.value == "fast"
    assert builder.steps.value == 20 and builder.temperature.value == 250.0
    with pytest.raises(InputError, match="unknown input 'step' .*did you mean 'steps'"):
        MdWorkChain.get_builder_from_protocol(code, structure_of(water_dimer), overrides={"step": 20})
    with pytest.raises(InputError, match="unknown engine 'tblight'.*did you mean 'tblite'"):
        MdWorkChain.get_builder_from_protocol(code, structure_of(water_dimer), engine="tblight")

    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    job = node.called[0].called[0]
    parameters = job.inputs.parameters.get_dict()
    assert parameters["friction"] == 20.0 and parameters["timestep"] == 1.0  # tblite's fast level: 1 fs
    assert parameters["temperature"] == 250.0 and results["trajectory"].numsteps == 3
    assert isinstance(results["remote_folder"], orm.RemoteData)


def test_born_charges_builder_from_protocol_with_tblite(code, water_dimer):
    from aiida.engine import run_get_node

    from aiida_irspec.engines import tblite
    from aiida_irspec.workflows.born_charges import BornChargesWorkChain

    builder = BornChargesWorkChain.get_builder_from_protocol(code, structure_of(water_dimer), options=options())
    assert builder.engine.value == "tblite" and builder.protocol.value == "moderate"
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    job = node.called[0].called[0]
    assert job.inputs.parameters["displacement"] == 1e-3  # tblite's moderate level
    np.testing.assert_allclose(results["born_charges"].born_charges,
                               tblite.born_charges(water_dimer, displacement=1e-3, accuracy=0.1), atol=1e-9)


@pytest.mark.shared
def test_builders_from_protocol_with_vasp(localhost, water_dimer, zro2_dir, tmp_path):
    """VASP (mock-vasp with a real DFPT OUTCAR of the shared ZrO2 set): the engine comes from the code, the extras
    go to engine_inputs, a molecule is refused at submission; the Born charges are those of the OUTCAR."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.data.frames import frame_structure
    from aiida_irspec.io.vasp import read_born_charges
    from aiida_irspec.workflows.born_charges import BornChargesWorkChain
    from aiida_irspec.workflows.md import MdWorkChain
    from vasp_mock import MAPPING, zro2_born_charges_setup

    vasp = zro2_born_charges_setup(localhost, zro2_dir, tmp_path, [1])
    structure = frame_structure(vasp["pool"], 0)
    builder = BornChargesWorkChain.get_builder_from_protocol(
        vasp["code"], structure, options=vasp["options"], potential_family=vasp["family"], potential_mapping=MAPPING)
    assert builder.engine.value == "vasp" and builder.engine_inputs["potential_family"].value == vasp["family"]
    assert builder.engine_inputs["potential_mapping"].get_dict() == MAPPING
    md = MdWorkChain.get_builder_from_protocol(vasp["code"], structure, overrides={"temperature": 300.0, "steps": 10},
                                               potential_family=vasp["family"], ml_ff=orm.SinglefileData.from_string(
                                                   "stand-in", filename="ML_FF"))
    assert md.engine.value == "vasp" and md.engine_inputs["ml_ff"].filename == "ML_FF"

    stored = orm.QueryBuilder().append(orm.Node).count()
    molecule = BornChargesWorkChain.get_builder_from_protocol(vasp["code"], structure_of(water_dimer),
                                                              potential_family=vasp["family"])
    with pytest.raises(ValueError, match="VASP needs a periodic cell"):
        run_get_node(molecule)
    assert orm.QueryBuilder().append(orm.Node).count() == stored

    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert node.called[0].process_type == "aiida.workflows:irspec.vasp.born_charges"
    np.testing.assert_array_equal(results["born_charges"].get_array("born_charges"),
                                  read_born_charges(zro2_dir / "OUTCAR.1.gz").born_charges)

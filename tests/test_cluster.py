"""Jobs and a campaign on a real SLURM cluster reached over SSH: the private cluster of ``.ci/cluster.sh``.

``bash .ci/cluster.sh start`` first (it writes /tmp/irspec-cluster/cluster.env; ``IRSPEC_CLUSTER_ENV`` points
elsewhere); the tests skip when it is not up. The Computers are made with ``aiida-irspec cluster setup``:
``slurm-test`` (core.ssh to the cluster's sshd + core.slurm) and ``local-test`` (core.local + core.direct), each
with the codes ``tblite`` and ``irspec`` (this environment's ``aiida-irspec``). Every job runs on both and
the results must be equal, array for array.

``slurm-test`` carries a trap in its prepend text: when ``<trap>/sleep_at`` holds N, the N-th job after it
was armed sleeps past its wall time, so that SLURM cancels it (``DUE TO TIME LIMIT``) like any job that
runs too long.
"""

import os
import pathlib
import shutil
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from campaign_helpers import WATER_DIMER, dimer_model, tiny_campaign_spec
from conftest import port_open

pytestmark = pytest.mark.cluster

ENV_FILE = pathlib.Path(os.environ.get("IRSPEC_CLUSTER_ENV", "/tmp/irspec-cluster/cluster.env"))
EXECUTABLE = shutil.which("aiida-irspec", path=str(pathlib.Path(sys.executable).parent))
MOCK_VASP = shutil.which("mock-vasp", path=str(pathlib.Path(sys.executable).parent))  # aiida-vasp's stand-in
#: OpenBLAS picks its kernels by CPU unless told (OPENBLAS_CORETYPE ...): results are bit-identical only with the
#: same kernels, and jobs started through SSH and SLURM do not inherit this environment, so pass its choice on
BLAS_ENVIRONMENT = {key: value for key, value in os.environ.items() if key.startswith("OPENBLAS_")}
OPTIONS = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}, "max_wallclock_seconds": 60,
           "environment_variables": {"OMP_NUM_THREADS": "1", **BLAS_ENVIRONMENT}}
WALLTIME = 120  # exit status of a job the scheduler ended for its wall time


def cluster_settings():
    """The KEY=VALUE lines of the cluster's env file as a dict, or skip with the reason."""
    if not ENV_FILE.is_file():
        pytest.skip(f"the test cluster is not up (no {ENV_FILE}): run `bash .ci/cluster.sh start`")
    settings = dict(line.split("=", 1) for line in ENV_FILE.read_text().split() if "=" in line)
    if not port_open(int(settings["CLUSTER_PORT"]), settings["CLUSTER_HOST"]):
        pytest.skip(f"the test cluster's sshd is not listening on {settings['CLUSTER_HOST']}:"
                    f"{settings['CLUSTER_PORT']}: run `bash .ci/cluster.sh start`")
    if EXECUTABLE is None or MOCK_VASP is None:
        pytest.skip(f"no aiida-irspec or mock-vasp executable next to {sys.executable}")
    return settings


def setup_computer(profile, label, *arguments):
    """``aiida-irspec cluster setup LABEL ...`` on ``profile`` with this environment's aiida-irspec and mock-vasp
    as the executables: the click Result."""
    from aiida_irspec.cli import cli

    return CliRunner().invoke(cli, ["-p", profile.name, "cluster", "setup", label, "--irspec-executable", EXECUTABLE,
                                    "--vasp-executable", MOCK_VASP, "--mpiprocs-per-machine", "1", *arguments])


def ssh_arguments(settings, trap):
    """`cluster setup` options of the test cluster (``settings`` of its env file) with the wall-time trap."""
    return ["--hostname", settings["CLUSTER_HOST"], "--port", settings["CLUSTER_PORT"],
            "--username", settings["CLUSTER_USER"], "--key-filename", settings["CLUSTER_KEY"],
            "--workdir", settings["CLUSTER_WORKDIR"], "--poll-interval", "1", "--safe-interval", "0",
            "--prepend-text", trap_text(trap)]


def trap_text(folder):
    """Prepend text of the trap: count the jobs; a job whose number is a line of ``sleep_at`` sleeps 10 min."""
    return (f'( flock 9; n=$(( $(cat {folder}/count 2>/dev/null || echo 0) + 1 )); echo $n > {folder}/count; '
            f'grep -qx "$n" {folder}/sleep_at 2>/dev/null && touch walltime_trap ) 9>{folder}/lock; '
            f'if [ -e walltime_trap ]; then sleep 600; fi')


def arm(trap, *numbers):
    """Make the jobs ``numbers`` (counted from now, from 1) sleep past their wall time."""
    (trap / "count").unlink(missing_ok=True)
    (trap / "sleep_at").write_text("".join(f"{n}\n" for n in numbers))


def disarm(trap):
    (trap / "sleep_at").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def computers(aiida_profile, tmp_path_factory):
    """(slurm-test, local-test, trap folder): the two Computers with their codes, made by `cluster setup`."""
    from aiida import orm

    trap = tmp_path_factory.mktemp("walltime-trap")
    start = time.perf_counter()
    result = setup_computer(aiida_profile, "slurm-test", *ssh_arguments(cluster_settings(), trap))
    assert result.exit_code == 0, result.output
    assert "Checked slurm-test" in result.output
    print(f"cluster setup of slurm-test: {time.perf_counter() - start:.1f} s")
    local = ["--transport", "core.local", "--scheduler", "core.direct", "--hostname", "localhost",
             "--workdir", str(tmp_path_factory.mktemp("local-work")), "--poll-interval", "0"]
    result = setup_computer(aiida_profile, "local-test", *local)
    assert result.exit_code == 0, result.output
    return orm.load_computer("slurm-test"), orm.load_computer("local-test"), trap


def run_on_both(computers, build):
    """Run ``build(code_label_of(name))`` on the cluster and on localhost: (cluster node, local node)."""
    from aiida.engine import run_get_node

    nodes = []
    for computer in computers[:2]:
        start = time.perf_counter()
        node = run_get_node(build(lambda name, c=computer: f"{name}@{c.label}"))[1]
        assert node.is_finished_ok, f"{node.process_label} on {computer.label}: {node.exit_status} {node.exit_message}"
        print(f"{node.process_label} on {computer.label}: {time.perf_counter() - start:.1f} s")
        nodes.append(node)
    return nodes


def water_dimer_structure():
    import ase.io
    from aiida import orm

    return orm.StructureData(ase=ase.io.read(WATER_DIMER))


# ------------------------------------------------------------------------------------------------ set-up

def test_setup_is_idempotent_and_names_what_does_not_work(computers, aiida_profile):
    slurm, _, trap = computers
    again = setup_computer(aiida_profile, "slurm-test", *ssh_arguments(cluster_settings(), trap))
    assert again.exit_code == 0, again.output
    assert again.output.count(" exists") == 4 and " created" not in again.output
    assert (slurm.transport_type, slurm.scheduler_type) == ("core.ssh", "core.slurm")
    other = setup_computer(aiida_profile, "slurm-test", "--hostname", "127.0.0.2", "--workdir", "/tmp")
    assert other.exit_code == 2 and "exists with other settings: hostname '127.0.0.1'" in other.output
    closed = setup_computer(aiida_profile, "nowhere-test", "--hostname", "127.0.0.1", "--port", "1", "--username",
                            "root", "--workdir", "/tmp", "--safe-interval", "0")
    assert closed.exit_code == 5 and "cannot connect (core.ssh to 127.0.0.1)" in closed.output


# ------------------------------------------------------------------------------------------------ jobs

def test_born_charges_job_on_the_cluster_equals_localhost(computers):
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    structure = water_dimer_structure()
    workchain = WorkflowFactory("irspec.tblite.born_charges")
    cluster, local = run_on_both(computers, lambda code: workchain.get_builder_from_protocol(
        orm.load_code(code("tblite")), structure, protocol="fast", options=OPTIONS))
    job = cluster.called[0]
    assert job.computer.scheduler_type == "core.slurm" and job.get_job_id()
    assert "JobState=COMPLETED" in _jobcomp_line(job.get_job_id())
    charges = cluster.outputs.born_charges.get_array("born_charges")
    assert charges.shape == (6, 3, 3) and np.abs(charges).max() > 0.1
    np.testing.assert_array_equal(charges, local.outputs.born_charges.get_array("born_charges"))


def test_md_and_dpdt_jobs_on_the_cluster_equal_localhost(computers):
    """NVT MD, then dP/dt of a model along it: on the cluster from the run folder there (a symlink, never
    copied), on localhost from the stored trajectory; the same numbers."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from aiida_irspec.calculations.predict import PredictPdotCalculation
    from aiida_irspec.data.polarization_model import PolarizationModelData

    structure = water_dimer_structure()
    md = WorkflowFactory("irspec.tblite.md")
    cluster, local = run_on_both(computers, lambda code: md.get_builder_from_protocol(
        orm.load_code(code("tblite")), structure, protocol="fast", options=OPTIONS, ensemble="nvt",
        temperature=300.0, steps=200, stride=10, seed=7))
    for name in ("positions", "velocities", "times"):
        np.testing.assert_array_equal(cluster.outputs.trajectory.get_array(name),
                                      local.outputs.trajectory.get_array(name))
    assert cluster.outputs.trajectory.numsteps == 21

    model = PolarizationModelData(dimer_model())
    remote, stored = (run_get_node(PredictPdotCalculation, code=orm.load_code("irspec@slurm-test"), model=model,
                                   remote_trajectory=cluster.outputs.remote_folder,
                                   trajectory_filename=orm.Str("trajectory.npz"), metadata={"options": OPTIONS})[1],
                      run_get_node(PredictPdotCalculation, code=orm.load_code("irspec@local-test"), model=model,
                                   trajectory=local.outputs.trajectory, metadata={"options": OPTIONS})[1])
    assert remote.is_finished_ok and stored.is_finished_ok, (remote.exit_message, stored.exit_message)
    assert "trajectory.npz" not in remote.outputs.retrieved.base.repository.list_object_names()
    pdot = remote.outputs.pdot.get_array("pdot")
    assert pdot.shape == (21, 3) and np.abs(pdot).max() > 0
    np.testing.assert_array_equal(pdot, stored.outputs.pdot.get_array("pdot"))


@pytest.mark.shared
def test_vasp_born_charges_on_the_cluster_equal_localhost(computers, zro2_dir, tmp_path):
    """irspec.born_charges with engine vasp through SLURM: the code vasp@slurm-test of `cluster setup
    --vasp-executable` (aiida-vasp's mock-vasp, which answers with a real DFPT OUTCAR of the shared ZrO2 set)."""
    from aiida import orm

    from aiida_irspec.data.frames import frame_structure
    from aiida_irspec.io.vasp import read_born_charges
    from aiida_irspec.workflows.born_charges import BornChargesWorkChain
    from vasp_mock import MAPPING, zro2_born_charges_setup

    vasp = zro2_born_charges_setup(computers[1], zro2_dir, tmp_path, [1])  # registry made by a dry run on localhost

    def build(code):
        builder = BornChargesWorkChain.get_builder()
        builder.structure = frame_structure(vasp["pool"], 0)
        builder.update(engine=orm.Str("vasp"), code=orm.load_code(code("vasp")), protocol=orm.Str("moderate"),
                       options=orm.Dict(vasp["options"]),
                       engine_inputs={"potential_family": orm.Str(vasp["family"]),
                                      "potential_mapping": orm.Dict(MAPPING)})
        return builder

    cluster, local = run_on_both(computers, build)
    charges = cluster.outputs.born_charges.get_array("born_charges")
    np.testing.assert_array_equal(charges, local.outputs.born_charges.get_array("born_charges"))
    np.testing.assert_array_equal(charges, read_born_charges(zro2_dir / "OUTCAR.1.gz").born_charges)


# ------------------------------------------------------------------------------------------------ campaign

def test_campaign_moves_to_the_cluster_with_one_line_and_survives_a_walltime_kill(computers, tmp_path):
    """The tiny campaign on localhost, then the same spec with `codes.computer` changed on the cluster, where
    SLURM cancels its third job for its wall time: its tblite WorkChain runs it again with twice the time and the
    campaign gives the same arrays as on localhost. (The bound on such reruns: test_tblite_workchains.py.)"""
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_irspec.cli import cli

    slurm, local, trap = computers
    spec = tiny_campaign_spec("tblite", "irspec")
    spec["codes"].update(computer=local.label, options=OPTIONS)
    local_file, cluster_file = tmp_path / "local.yaml", tmp_path / "cluster.yaml"
    local_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    cluster_file.write_text(local_file.read_text().replace(f"computer: {local.label}\n", f"computer: {slurm.label}\n"))
    changed = [(a, b) for a, b in zip(local_file.read_text().splitlines(), cluster_file.read_text().splitlines())
               if a != b]
    assert changed == [(f"  computer: {local.label}", f"  computer: {slurm.label}")]

    nodes = {}
    for where, path in (("local", local_file), ("cluster", cluster_file)):
        if where == "cluster":
            arm(trap, 3)
        start = time.perf_counter()
        result = CliRunner().invoke(cli, ["campaign", "run", str(path)])
        print(f"tiny campaign on {where}: {time.perf_counter() - start:.1f} s")
        assert result.exit_code == 0, result.output
        nodes[where] = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": "tiny-water-dimer"}).order_by(
            {orm.WorkflowNode: {"ctime": "desc"}}).first()[0]
    disarm(trap)
    cluster, local_run = nodes["cluster"], nodes["local"]
    assert cluster.is_finished_ok and local_run.is_finished_ok

    jobs = [n for n in cluster.called_descendants if isinstance(n, orm.CalcJobNode)]
    assert {job.computer.label for job in jobs} == {slurm.label}
    killed = [job for job in jobs if job.exit_status == WALLTIME]
    assert len(killed) == 1, [(job.pk, job.exit_status) for job in jobs]
    assert "DUE TO TIME LIMIT" in killed[0].get_scheduler_stderr()
    assert "JobState=TIMEOUT" in _jobcomp_line(killed[0].get_job_id())
    engine = killed[0].base.links.get_incoming(link_type=LinkType.CALL_CALC).one().node
    assert engine.process_type.startswith("aiida.workflows:irspec.tblite.")
    rerun = engine.base.links.get_outgoing(link_type=LinkType.CALL_CALC, link_label_filter="iteration_02").one().node
    assert engine.is_finished_ok and rerun.is_finished_ok
    assert rerun.get_option("max_wallclock_seconds") == 2 * killed[0].get_option("max_wallclock_seconds")
    assert len(jobs) == len([n for n in local_run.called_descendants if isinstance(n, orm.CalcJobNode)]) + 1

    ours, theirs = cluster.outputs, local_run.outputs
    for name in ("positions", "velocities"):
        np.testing.assert_array_equal(ours.sampling.trajectory.get_array(name),
                                      theirs.sampling.trajectory.get_array(name))
    history = ours.learning.history.get_dict()
    assert history["failed_frames"] == [] and history["rows"][-1]["attempted"] == 7
    assert _without_uuids(history) == _without_uuids(theirs.learning.history.get_dict())
    for name in ("spectrum", "reference_spectrum"):
        for array in ("frequency_cm1", "mean", "stderr"):
            np.testing.assert_array_equal(ours.spectrum[name].get_array(array),
                                          theirs.spectrum[name].get_array(array))


@pytest.mark.timeout(2400)
def test_archived_campaign_reruns_on_the_cluster_bit_identical(aiida_config_tmp, aiida_profile_factory, tmp_path):
    """A campaign finished on localhost, exported with `verdi archive create` and imported into a fresh profile,
    then run again from its stored inputs with every code moved to the SLURM cluster, caching on for the plugin's
    calculations: the spectrum is bit-identical. The CalcJobs run again (their hash holds the computer); the
    calcfunctions whose inputs are equal come from the imported ones' cache (after `verdi node rehash`: an
    archive import drops the hashes)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.manage import get_manager
    from aiida.manage.caching import enable_caching

    from aiida_irspec.cli import cli
    from daemon_helpers import daemon_codes, daemon_computer, verdi

    settings = cluster_settings()
    archive = tmp_path / "campaign.aiida"
    try:
        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.sqlite_dos", name="origin") as origin:
            engine, predict = daemon_codes(daemon_computer(tmp_path / "work"))
            spec = tiny_campaign_spec(engine.full_label, predict.full_label)
            path = tmp_path / "tiny.yaml"
            path.write_text(yaml.safe_dump(spec))
            result = CliRunner().invoke(cli, ["-p", origin.name, "campaign", "run", str(path)])
            assert result.exit_code == 0, result.output
            first = orm.QueryBuilder().append(orm.WorkflowNode, filters={"label": spec["name"]}).one()[0]
            expected = {name: {array: first.outputs.spectrum[name].get_array(array)
                               for array in first.outputs.spectrum[name].get_arraynames()}
                        for name in ("spectrum", "reference_spectrum")}
            uuid = first.uuid
            verdi(origin, "archive", "create", "-N", str(first.pk), "--", str(archive))

        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.sqlite_dos", name="elsewhere") as fresh:
            verdi(fresh, "archive", "import", "--", str(archive))
            verdi(fresh, "node", "rehash", "--force")  # an import drops the nodes' hashes: make them cache sources
            trap = tmp_path / "trap"
            trap.mkdir()
            result = setup_computer(fresh, "slurm-test", *ssh_arguments(settings, trap))
            assert result.exit_code == 0, result.output
            imported = orm.load_node(uuid)
            builder = imported.get_builder_restart()
            tblite, irspec = orm.load_code("tblite@slurm-test"), orm.load_code("irspec@slurm-test")
            for namespace in (builder.sampling, builder.learning.born_charges, builder.spectrum.md):
                namespace.code = tblite
                namespace.options = orm.Dict(OPTIONS)
            builder.spectrum.predict.code = irspec
            builder.spectrum.predict.options = orm.Dict(OPTIONS)
            start = time.perf_counter()
            with enable_caching(identifier="aiida.calculations:irspec.*"):
                node = run_get_node(builder)[1]
            print(f"rerun on the cluster: {time.perf_counter() - start:.1f} s")
            assert node.is_finished_ok, (node.exit_status, node.exit_message)
            for name, arrays in expected.items():
                for array, values in arrays.items():
                    np.testing.assert_array_equal(node.outputs.spectrum[name].get_array(array), values)
            jobs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
            assert jobs and {job.computer.label for job in jobs} == {"slurm-test"}
            assert not any(job.base.caching.is_created_from_cache for job in jobs)
            functions = [n for n in node.called_descendants if isinstance(n, orm.CalcFunctionNode)]
            cached = sorted({n.process_label for n in functions if n.base.caching.is_created_from_cache})
            fresh_runs = sorted({n.process_label for n in functions if not n.base.caching.is_created_from_cache})
            print(f"{len(jobs)} CalcJobs ran on slurm-test; from the cache: {cached}; computed again: {fresh_runs}")
            assert "fit_polarization_model" in cached and "aggregate_spectra" in cached
    finally:
        get_manager().reset_profile()


def _jobcomp_line(job_id):
    """SLURM's job-completion record of ``job_id`` (jobcomp/filetxt of .ci/cluster.sh), waiting up to 10 s."""
    record = pathlib.Path(cluster_settings()["CLUSTER_JOBCOMP"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in record.read_text().splitlines() if line.startswith(f"JobId={job_id} ")]
        if lines:
            return lines[-1]
        time.sleep(0.5)
    raise AssertionError(f"no job-completion record of SLURM job {job_id} in {record}")


def _without_uuids(history):
    """The history dict without the ``model_uuid`` of its rows (the only thing two equal runs differ in)."""
    return {**history, "rows": [{k: v for k, v in row.items() if k != "model_uuid"} for row in history["rows"]]}

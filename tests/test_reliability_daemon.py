"""Daemon faults: the daemon workers are killed hard (SIGKILL) in the middle of a campaign, once while the
reference Born-charge jobs run and once while the NVE runs run, and the daemon is recovered each time
(``recover_daemon``, as ``aiida-irspec campaign recover``).

On the production-like profile (PostgreSQL + RabbitMQ) and on the embedded default (SQLite + ZeroMQ), the
campaign must finish, run every reference job (and NVE run) exactly once as the provenance shows, and give
the spectrum of an undisturbed run of the same spec bit for bit.
"""

import collections

import pytest
import yaml

from campaign_helpers import tiny_campaign_spec
from daemon_helpers import assert_same_spectrum, daemon_codes, daemon_computer, kill_workers, running_daemon, wait_until

from aiida_irspec.workflows.resumable import recover_daemon, was_started

pytestmark = pytest.mark.reliability

REFERENCE_JOB = "aiida.calculations:irspec.tblite.born_charges"
MD_JOB = "aiida.calculations:irspec.tblite.md"


@pytest.fixture(params=["postgres_rabbitmq_profile", "sqlite_zeromq_profile"])
def daemon_profile(request):
    """Each of the two profile kinds the daemon runs on."""
    return request.getfixturevalue(request.param)


def is_nve(job):
    """True for the CalcJob of an NVE run (the ensemble of the MdWorkChain above it, through the engine's
    WorkChain)."""
    caller = job.caller
    while "ensemble" not in caller.inputs:
        caller = caller.caller
    return caller.inputs.ensemble.value == "nve"


def launched(nodes):
    """The process nodes that were launched. A worker killed while it creates a process can leave a stub node
    without a checkpoint (no process state, or still "created"): it never runs and is launched anew."""
    return [node for node in nodes if was_started(node)]


def active_jobs(process_type, select=None):
    """Unterminated CalcJobNodes of ``process_type`` (for which ``select(node)`` is true, if given)."""
    from aiida import orm

    query = orm.QueryBuilder().append(orm.CalcJobNode, filters={
        "process_type": process_type, "attributes.process_state": {"in": ["created", "waiting", "running"]}})
    return [job for job in query.all(flat=True) if select is None or select(job)]


def kill_during(client, stage, node, process_type, select=None, timeout=600):
    """Wait until a ``process_type`` CalcJob (``select``-ed) is running, SIGKILL the workers, and recover as the
    docs say (``aiida-irspec campaign recover``: restart the daemon, send the tasks the crash lost).

    :returns: the PKs of the jobs that were running at the kill.
    """
    assert wait_until(lambda: active_jobs(process_type, select) or node.is_terminated, timeout, interval=0.1), \
        f"no {stage} job started within {timeout} s"
    running = [job.pk for job in active_jobs(process_type, select)]
    assert running and not node.is_terminated, f"the campaign ended before its {stage} stage could be disturbed"
    kill_workers(client)
    revived = recover_daemon(client, workers=1)  # a worker killed inside AiiDA's submit leaves a child taskless
    print(f"\nkilled during the {stage} stage; sent the missing tasks of {revived}")
    return running


@pytest.mark.timeout(1500)
def test_campaign_survives_killed_workers(daemon_profile, tmp_path):
    from aiida import orm
    from aiida.engine import run_get_node, submit

    from aiida_irspec.workflows.campaign import builder_from_file

    engine, predict = daemon_codes(daemon_computer(tmp_path / "work"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_spec(engine.full_label, predict.full_label)))

    _, undisturbed = run_get_node(builder_from_file(path))  # in this process, no daemon
    assert undisturbed.is_finished_ok, undisturbed.exit_message

    with running_daemon(daemon_profile) as client:
        node = submit(builder_from_file(path))
        killed = {"reference": kill_during(client, "reference", node, REFERENCE_JOB),
                  "NVE": kill_during(client, "NVE", node, MD_JOB, select=is_nve)}
        wait_until(lambda: node.is_terminated, 900, interval=1.0)
        assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message, client.daemon_log_file)

    # every process interrupted by a kill finished after the restart
    for pk in killed["reference"] + killed["NVE"]:
        assert orm.load_node(pk).is_finished_ok, orm.load_node(pk).exit_message

    # no reference job ran twice: one Born-charge CalcJob per reference structure, one per chosen frame
    descendants = node.called_descendants
    jobs = launched(n for n in descendants if n.process_type == REFERENCE_JOB)
    per_structure = collections.Counter(job.inputs.structure.uuid for job in jobs)
    assert len(per_structure) == 7 and set(per_structure.values()) == {1}, per_structure
    history = node.outputs.learning.history.get_dict()
    frames = history["holdout"] + [frame for row in history["rows"] for frame in row["batch"]]
    assert sorted(frames) == sorted(set(frames)) and len(frames) == 7
    # nor did an NVE run: one MD CalcJob per snapshot, two in all
    nve = launched(n for n in descendants if n.process_type == MD_JOB and is_nve(n))
    assert len(nve) == 2 and len({n.inputs.structure.uuid for n in nve}) == 2, \
        [(n.pk, n.caller.pk, n.inputs.structure.uuid, n.process_state, str(n.ctime)) for n in nve]
    stubs = [n for n in descendants if isinstance(n, orm.ProcessNode) and not was_started(n)]
    assert all(not n.base.links.get_outgoing().all() and n.is_killed for n in stubs), "a stub has outputs or is active"

    # what the kills hit (shown with -s): jobs running, launches reused by SubmitOnce, never-started stubs
    logs = [log.message for n in [node, *descendants] for log in orm.Log.collection.get_logs_for(n)]
    print(f"\nkilled during reference jobs {killed['reference']} and NVE jobs {killed['NVE']}; "
          f"{sum('was launched before an interruption' in m for m in logs)} launches reused, "
          f"{len(stubs)} never-started stubs left")

    # the same result as without the kills, bit for bit
    assert_same_spectrum(node.outputs.spectrum.spectrum, undisturbed.outputs.spectrum.spectrum)
    assert_same_spectrum(node.outputs.spectrum.reference_spectrum, undisturbed.outputs.spectrum.reference_spectrum)

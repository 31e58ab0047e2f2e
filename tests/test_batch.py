"""The batch fan-out (aiida_irspec.workflows.batch.FanOut) on real ``core.arithmetic.add`` CalcJobs that sleep
for given seconds (``metadata.options.sleep``) on localhost, launched by a small WorkChain of this module, in
this process and through the daemon.

Checked from the job nodes' creation and last-change (termination) times: never more than ``max_concurrent``
jobs unfinished at once; a short job's slot is refilled before the long one ends (a sliding window, not
waves); a unit's follow-up job shares the window and goes before new units; failures are counted against
``max_failed_fraction`` of all units, whatever the order in which jobs end, and stop the fan-out above it with
the WorkChain's exit code, keeping every result; a daemon worker killed in the middle of a fan-out neither
launches a job twice nor loses one.
"""

import collections
import pathlib
import shutil
import time

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import WorkChain, while_

from daemon_helpers import daemon_computer, kill_workers, max_overlap, running_daemon, wait_until
from aiida_irspec.workflows.batch import FanOut
from aiida_irspec.workflows.resumable import SubmitOnce, recover_daemon, was_started


class Sleepers(FanOut, SubmitOnce, WorkChain):
    """One unit per entry of ``jobs`` ([seconds, fails]): an add job of ``x = key`` that sleeps that long and,
    when it fails, adds up to -1 (the add parser's exit status 410); fails = "refused" gives it inputs of a
    wrong type (refused at launch). With ``follow``, a unit whose first job
    succeeds goes on with a one-second ``second`` job. With ``hold`` ({"after": label, "marker": path}), the
    step that launches job ``label`` writes the file ``marker`` right after and stalls (for a worker to be
    killed in the middle of a step), unless the file exists."""

    FAN_OUT_UNIT = "unit"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("code", valid_type=orm.AbstractCode)
        spec.input("jobs", valid_type=orm.List)
        spec.input("max_concurrent", valid_type=orm.Int)
        spec.input("max_failed_fraction", valid_type=orm.Float, default=lambda: orm.Float(0.5))
        spec.input("follow", valid_type=orm.Bool, default=lambda: orm.Bool(False))
        spec.input("hold", valid_type=orm.Dict, required=False)
        spec.outline(cls.queue, while_(cls.fan_out_busy)(cls.fan_out_step), cls.results)
        spec.output_namespace("sums", valid_type=orm.Int, dynamic=True, help="The sum of each job (<kind>_<key>).")
        spec.output("failed", valid_type=orm.Dict, required=False, help="PK of the failed job by unit.")
        spec.exit_code(400, "ERROR_TOO_MANY_FAILED_JOBS", message="{failed} of {attempted} units failed")

    def queue(self):
        self.fan_out("first", list(range(len(self.inputs.jobs))), self.inputs.max_concurrent.value,
                     self.inputs.max_failed_fraction.value)

    def launch_job(self, kind, key):
        from aiida.plugins import CalculationFactory

        seconds, fails = self.inputs.jobs[key] if kind == "first" else (1, False)
        x = orm.Str("refused") if fails == "refused" else orm.Int(key)  # a wrong type: refused by the port
        node = self.submit(CalculationFactory("core.arithmetic.add"), code=self.inputs.code, x=x,
                           y=orm.Int(-key - 1 if fails else 0),
                           metadata={"call_link_label": f"{kind}_{key}",
                                     "options": {"sleep": int(seconds), "resources": {"num_machines": 1}}})
        if "hold" in self.inputs and self.inputs.hold["after"] == f"{kind}_{key}":
            marker = pathlib.Path(self.inputs.hold["marker"])
            if not marker.exists():
                marker.touch()
                time.sleep(300)
        return node

    def job_succeeded(self, kind, key, node):
        self.out(f"sums.{kind}_{key}", node.outputs.sum)
        if kind == "first" and self.inputs.follow.value:
            self.fan_out_follow("second", key)

    def results(self):
        if self.ctx.failed:
            self.out("failed", orm.Dict(self.ctx.failed).store())

    def too_many_failures(self, failed, attempted):
        self.results()
        return self.exit_codes.ERROR_TOO_MANY_FAILED_JOBS.format(failed=failed, attempted=attempted)


def bash_code(computer):
    """A stored InstalledCode running the add job's script with bash on ``computer``."""
    return orm.InstalledCode(label="bash", computer=computer, filepath_executable=shutil.which("bash"),
                             default_calc_job_plugin="core.arithmetic.add").store()


def jobs_by_label(node):
    """{call link label: [started job nodes]} of the jobs ``node`` launched (stubs of interrupted launches left
    out)."""
    jobs = collections.defaultdict(list)
    for link in node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all():
        if was_started(link.node):
            jobs[link.link_label].append(link.node)
    return dict(jobs)


def one_job_each(node):
    """{label: job}, checking that no label was launched twice and every job ended before ``node``."""
    jobs = jobs_by_label(node)
    assert all(len(nodes) == 1 for nodes in jobs.values()), {label: [n.pk for n in nodes]
                                                            for label, nodes in jobs.items()}
    jobs = {label: nodes[0] for label, nodes in jobs.items()}
    assert all(job.is_terminated and job.mtime <= node.mtime for job in jobs.values())
    return jobs


def peak(jobs):
    """The most jobs that existed unfinished at one instant (from creation to termination)."""
    return max_overlap([(job.ctime, job.mtime) for job in jobs])


def reports(node, caplog):
    """The process reports of ``node`` as pytest captured them (the database log handler is bound to the
    session's first profile)."""
    return [record.getMessage() for record in caplog.records if f"[{node.pk}|" in record.getMessage()]


@pytest.fixture
def local_code(aiida_localhost):
    """The bash code on aiida-core's localhost fixture, its jobs polled without delay."""
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    return bash_code(aiida_localhost)


def check_sliding_window(node):
    """One 12 s job and five 1 s jobs, two at a time: the short jobs run one after the other in the second slot,
    the first refill while the long job runs (in waves of two, job 2 would start only after the long one ended)."""
    assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message)
    jobs = one_job_each(node)
    assert sorted(jobs) == [f"first_{k}" for k in range(6)]
    assert sorted(node.outputs.sums) == sorted(jobs) and all(node.outputs.sums[f"first_{k}"].value == k
                                                             for k in range(6))
    assert peak(jobs.values()) == 2
    order = sorted(jobs, key=lambda label: jobs[label].ctime)
    assert order == [f"first_{k}" for k in range(6)]  # launched in queue order
    # the slot of job 1 was refilled while the long job ran (in waves, job 2 would wait for job 0); job 1 ends
    # about 11 s before job 0, however long a job's overhead is on this machine
    assert jobs["first_1"].mtime < jobs["first_2"].ctime < jobs["first_0"].mtime, \
        [(label, str(job.ctime), str(job.mtime)) for label, job in jobs.items()]


SLIDING = [[12, False]] + [[1, False]] * 5


def test_sliding_window_in_this_process(local_code):
    from aiida.engine import run_get_node

    _, node = run_get_node(Sleepers, code=local_code, jobs=orm.List(SLIDING), max_concurrent=orm.Int(2))
    check_sliding_window(node)


def test_sliding_window_through_the_daemon(sqlite_zeromq_profile, tmp_path):
    from aiida.engine import submit

    code = bash_code(daemon_computer(tmp_path / "work"))
    with running_daemon(sqlite_zeromq_profile) as client:
        node = submit(Sleepers, code=code, jobs=orm.List(SLIDING), max_concurrent=orm.Int(2))
        assert wait_until(lambda: node.is_terminated, 300), client.daemon_log_file
    check_sliding_window(node)


def test_follow_up_jobs_share_the_window_and_go_first(local_code):
    """Units of 10 s, 1 s and 1 s, each followed by a 1 s job, two at a time: unit 1's follow-up starts while
    the long unit runs, before unit 2 does; unit 0's follow-up after unit 0; never more than two jobs run."""
    from aiida.engine import run_get_node

    _, node = run_get_node(Sleepers, code=local_code, jobs=orm.List([[10, False], [1, False], [1, False]]),
                           max_concurrent=orm.Int(2), follow=orm.Bool(True))
    assert node.is_finished_ok, node.exit_message
    jobs = one_job_each(node)
    assert sorted(jobs) == sorted(f"{kind}_{k}" for kind in ("first", "second") for k in range(3))
    assert sorted(node.outputs.sums) == sorted(jobs)
    assert peak(jobs.values()) == 2
    assert jobs["first_1"].mtime < jobs["second_1"].ctime < min(jobs["first_2"].ctime, jobs["first_0"].mtime)
    assert jobs["first_0"].mtime < jobs["second_0"].ctime


def test_a_failure_within_the_fraction_goes_on_even_when_it_ends_first(local_code, caplog):
    """Four units, one at a time, of which the first fails: 1 failed unit is not more than 0.25 of the 4 units,
    so the fan-out goes on (the fraction counts all units, not those ended so far: 1 of 1 would stop it)."""
    from aiida.engine import run_get_node

    _, node = run_get_node(Sleepers, code=local_code, jobs=orm.List([[0, True], [0, False], [0, False], [0, False]]),
                           max_concurrent=orm.Int(1), max_failed_fraction=orm.Float(0.25))
    assert node.is_finished_ok, node.exit_message
    jobs = one_job_each(node)
    assert jobs["first_0"].exit_status == 410 and peak(jobs.values()) == 1
    assert sorted(node.outputs.sums) == ["first_1", "first_2", "first_3"]
    assert node.outputs.failed.get_dict() == {"0": jobs["first_0"].pk}
    assert any(f"first ArithmeticAddCalculation<{jobs['first_0'].pk}> for unit 0 failed (exit 410: " in message
               and message.endswith("unit left out") for message in reports(node, caplog))


def test_a_job_refused_at_launch_is_a_failed_unit(local_code, caplog):
    """Units 1 and 2 of four have inputs their CalcJob refuses: no node, no exception out of the WorkChain; the
    first is within 0.25 x 4 and is left out, the second is over it: the fan-out stops with exit 400."""
    from aiida.engine import run_get_node

    jobs_in = [[0, False], [0, "refused"], [0, False], [0, False]]
    _, node = run_get_node(Sleepers, code=local_code, jobs=orm.List(jobs_in), max_concurrent=orm.Int(2),
                           max_failed_fraction=orm.Float(0.25))
    assert node.is_finished_ok, node.exit_message
    assert sorted(one_job_each(node)) == ["first_0", "first_2", "first_3"]
    assert node.outputs.failed.get_dict() == {"1": None}
    assert any("first for unit 1 refused at launch (" in message for message in reports(node, caplog))

    jobs_in[2] = [0, "refused"]
    _, node = run_get_node(Sleepers, code=local_code, jobs=orm.List(jobs_in), max_concurrent=orm.Int(1),
                           max_failed_fraction=orm.Float(0.25))
    assert node.exit_status == 400 and node.exit_message == "2 of 3 units failed", node.exit_message
    assert sorted(one_job_each(node)) == ["first_0"]


def test_failures_above_the_fraction_stop_and_keep_every_result(local_code, caplog):
    """Five units, two at a time, 0.25 allowed: units 1 and 2 fail, one after the other, while unit 0 (16 s) runs. The
    second failure is more than 0.25 x 5: nothing more is launched, unit 0 is waited for and kept, and the WorkChain
    exits 400 with 2 failed of the 3 units that ended."""
    from aiida.engine import run_get_node

    jobs_in = [[16, False], [0, True], [0, True], [0, False], [0, False]]
    _, node = run_get_node(Sleepers, code=local_code, jobs=orm.List(jobs_in), max_concurrent=orm.Int(2),
                           max_failed_fraction=orm.Float(0.25))
    assert node.exit_status == 400 and node.exit_message == "2 of 3 units failed", node.exit_message
    jobs = one_job_each(node)
    assert sorted(jobs) == ["first_0", "first_1", "first_2"]  # units 3 and 4 never launched
    assert list(node.outputs.sums) == ["first_0"] and jobs["first_0"].is_finished_ok
    assert node.outputs.failed.get_dict() == {"1": jobs["first_1"].pk, "2": jobs["first_2"].pk}
    assert any("]: 2 of 5 units failed, more than the allowed fraction 0.25: stopping" in message
               for message in reports(node, caplog))


@pytest.mark.reliability  # about a minute
def test_a_killed_worker_launches_no_job_twice_and_loses_none(sqlite_zeromq_profile, tmp_path):
    """Ten 3 s units, three at a time, through the daemon; its worker is SIGKILLed twice and the daemon recovered
    each time: once in the middle of the step that launched job 4 (after collecting a finished job and
    launching job 4), once while the WorkChain waits (after 7 jobs ended). The step run again after the first
    kill takes job 4 as launched (SubmitOnce) instead of launching it again; every unit ran exactly once,
    every sum is kept, and never more than three jobs existed unfinished at once."""
    from aiida.engine import submit

    code = bash_code(daemon_computer(tmp_path / "work"))
    marker = tmp_path / "held"
    with running_daemon(sqlite_zeromq_profile) as client:
        node = submit(Sleepers, code=code, jobs=orm.List([[3, False]] * 10), max_concurrent=orm.Int(3),
                      hold=orm.Dict({"after": "first_4", "marker": str(marker)}))

        def ended():
            return sum(job.is_terminated for nodes in jobs_by_label(node).values() for job in nodes)

        running_at_kills = []
        for kill_when in (marker.exists, lambda: ended() >= 7):
            assert wait_until(lambda: kill_when() or node.is_terminated, 300, interval=0.1)
            assert not node.is_terminated, "the fan-out ended before it could be disturbed"
            running_at_kills.append(sorted(label for label, nodes in jobs_by_label(node).items()
                                           if not nodes[0].is_terminated))
            kill_workers(client)
            recover_daemon(client, workers=1)
        assert wait_until(lambda: node.is_terminated, 300), client.daemon_log_file
    messages = [log.message for log in orm.Log.collection.get_logs_for(node)]
    print(f"\nunfinished jobs at the kills: {running_at_kills}")
    assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message)
    assert any("]: first_4: ArithmeticAddCalculation<" in message and "was launched before an interruption"
               in message for message in messages), messages
    jobs = one_job_each(node)
    assert sorted(jobs) == sorted(f"first_{k}" for k in range(10))
    assert all(node.outputs.sums[label].value == int(label.split("_")[1]) for label in jobs)
    assert sorted(node.outputs.sums) == sorted(jobs) and "failed" not in node.outputs
    assert peak(jobs.values()) <= 3

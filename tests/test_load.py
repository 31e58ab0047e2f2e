"""Load: 200 reference Born-charge jobs on the daemon (two workers) of the production-like profile
(PostgreSQL + RabbitMQ), at most 20 at a time, with the workers' memory sampled throughout.

The workflow is the reference-job stage of a campaign: ``irspec.active_learning`` with a seed set of 199
frames and one held-out frame, so that all 200 reference jobs are launched before the first fit. Every job is
``irspec.born_charges`` -> ``irspec.vasp.born_charges`` -> aiida-vasp's ``vasp.vasp`` CalcJob, run by
aiida-vasp's ``mock-vasp`` (returns at once) on the real OUTCARs of 12 ZrO2 structures (the pool of 200
frames repeats them). Concurrency is checked by polling and from the jobs' creation / last-change times.
"""

import collections
import time

import pytest

from daemon_helpers import WorkerMemory, daemon_computer, max_overlap, running_daemon
from vasp_mock import MAPPING, ZRO2_CONVERGED, zro2_born_charges_setup

pytestmark = [pytest.mark.reliability, pytest.mark.services, pytest.mark.shared]

N_JOBS = 200
MAX_CONCURRENT = 20
REFERENCE = "aiida.workflows:irspec.born_charges"
ACTIVE = ["created", "waiting", "running"]


def count(process_type, states):
    """Number of process nodes of ``process_type`` in one of ``states``."""
    from aiida import orm

    return orm.QueryBuilder().append(orm.ProcessNode, filters={
        "process_type": process_type, "attributes.process_state": {"in": states}}).count()


@pytest.mark.timeout(1800)
def test_200_reference_jobs_at_most_20_at_a_time(postgres_rabbitmq_profile, zro2_dir, tmp_path):
    from aiida import orm
    from aiida.engine import submit

    from aiida_irspec.workflows.active_learning import ActiveLearningWorkChain

    computer = daemon_computer(tmp_path / "work")
    numbers = [ZRO2_CONVERGED[k % len(ZRO2_CONVERGED)] for k in range(N_JOBS)]
    vasp = zro2_born_charges_setup(computer, zro2_dir, tmp_path, numbers)
    selection = {"strategy": "farthest_point", "initial": N_JOBS - 1, "batch": 1, "budget": N_JOBS, "holdout": 1,
                 "error_estimate": "holdout", "target_error": 1e-9}
    born_charges = {"engine": orm.Str("vasp"), "code": vasp["code"], "protocol": orm.Str("moderate"),
                    "options": orm.Dict(vasp["options"]),
                    "engine_inputs": {"potential_family": orm.Str(vasp["family"]),
                                      "potential_mapping": orm.Dict(MAPPING)}}
    model = {"descriptor": {"cutoff": 3.5, "n_radial": 3, "l_max": 1}, "baseline": "formal"}

    polled = []  # (time.monotonic(), reference jobs running, reference jobs finished)
    with running_daemon(postgres_rabbitmq_profile, workers=2) as client:
        with WorkerMemory(client) as memory:
            start = time.monotonic()
            node = submit(ActiveLearningWorkChain, pool=vasp["pool"], selection=orm.Dict(selection),
                          failures=orm.Dict({"max_concurrent": MAX_CONCURRENT}), model=orm.Dict(model),
                          born_charges=born_charges)
            while not node.is_terminated and time.monotonic() - start < 1700:
                polled.append((time.monotonic(), count(REFERENCE, ACTIVE), count(REFERENCE, ["finished"])))
                time.sleep(0.5)
            wall = time.monotonic() - start
        assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message, client.daemon_log_file)

    # every frame got exactly one reference job, and every one finished through mock-vasp's real OUTCAR
    jobs = [n for n in node.called if n.process_type == REFERENCE]
    per_frame = collections.Counter(job.base.links.get_incoming(link_label_filter="structure").one().node.uuid
                                    for job in jobs)
    assert len(jobs) == N_JOBS and len(per_frame) == N_JOBS and all(job.is_finished_ok for job in jobs)
    vasp_jobs = [n for n in node.called_descendants if n.process_type == "aiida.calculations:vasp.vasp"]
    assert len(vasp_jobs) == N_JOBS and all(job.is_finished_ok for job in vasp_jobs)
    assert node.outputs.history.get_dict()["rows"][-1]["attempted"] == N_JOBS

    # at most MAX_CONCURRENT at a time, and the throttle was reached: by polling, and from the node times
    peak_polled = max(running for _, running, _ in polled)
    peak_times = max_overlap([(job.ctime, job.mtime) for job in jobs])
    peak_calcjobs = max_overlap([(job.ctime, job.mtime) for job in vasp_jobs])
    assert peak_polled <= MAX_CONCURRENT and peak_times == MAX_CONCURRENT and peak_calcjobs <= MAX_CONCURRENT

    # the workers' memory (RSS summed over both) does not grow with the number of jobs: its peak while the
    # second 100 reference jobs ran is within 20% (or 30 MiB) of its peak while the first 100 ran
    half = next(t for t, _, finished in polled if finished >= N_JOBS // 2)
    done = next(t for t, _, finished in polled if finished >= N_JOBS)
    first = max(rss for t, rss in memory.samples if t <= half)
    second = max(rss for t, rss in memory.samples if half < t <= done)
    overall = max(rss for _, rss in memory.samples)
    print(f"\n{N_JOBS} reference jobs in {done - start:.0f} s (whole work chain {wall:.0f} s); peak concurrency polled "
          f"{peak_polled}, from node times {peak_times} (CalcJobs {peak_calcjobs}); workers' RSS peak "
          f"{first:.0f} MiB (jobs 1-100), {second:.0f} MiB (jobs 101-200), {overall:.0f} MiB overall (with the fit)")
    assert second <= max(1.2 * first, first + 30), (first, second)

"""A real AiiDA daemon for the daemon tests: start/stop it, its codes, its workers (find, SIGKILL, memory)."""

import contextlib
import os
import shutil
import signal
import threading
import time

import psutil


def wait_until(condition, timeout, interval=0.5):
    """Poll ``condition()`` every ``interval`` s until it is true or ``timeout`` s have passed; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(interval)
    return condition()


@contextlib.contextmanager
def running_daemon(profile, workers=1):
    """Start the daemon of ``profile`` with ``workers`` workers (generous time-outs: other jobs may load the
    machine), yield its DaemonClient, and stop it again, checking that it is down."""
    from aiida.engine.daemon.client import DaemonClient

    client = DaemonClient(profile)
    client.start_daemon(number_workers=workers, timeout=120)
    try:
        yield client
    finally:
        client.stop_daemon(wait=True, timeout=120)
        assert wait_until(lambda: not client.is_daemon_running, 60), "the daemon did not stop"


def max_overlap(intervals):
    """The largest number of (start, end) intervals that overlap at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def daemon_computer(workdir, poll_interval=0.5):
    """A stored core.local/core.direct Computer ``localhost-daemon`` working in ``workdir``, polling its jobs
    every ``poll_interval`` s (10 s by default in AiiDA), one MPI process per machine by default."""
    from aiida import orm

    computer = orm.Computer(label="localhost-daemon", hostname="localhost", transport_type="core.local",
                            scheduler_type="core.direct", workdir=str(workdir)).store()
    computer.configure(safe_interval=0.0)
    computer.set_minimum_job_poll_interval(poll_interval)
    computer.set_default_mpiprocs_per_machine(1)
    return computer


def daemon_codes(computer):
    """The campaign's ``tblite`` engine and ``irspec`` predict InstalledCodes (the ``aiida-irspec`` executable)
    on ``computer``; (engine, predict)."""
    from aiida import orm

    executable = shutil.which("aiida-irspec")
    engine = orm.InstalledCode(label="tblite", computer=computer, filepath_executable=executable,
                               default_calc_job_plugin="irspec.tblite.md").store()
    predict = orm.InstalledCode(label="irspec", computer=computer, filepath_executable=executable,
                                default_calc_job_plugin="irspec.predict_pdot").store()
    return engine, predict


def worker_pids(client):
    """PIDs of the daemon's worker processes, as circus reports them (its ``stats`` command)."""
    return sorted(int(pid) for pid in client.get_worker_info().get("info", {}))


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_workers(client, timeout=60):
    """SIGKILL every daemon worker (no clean-up, no checkpoint: a hard crash) and wait until they are gone.

    :returns: the killed PIDs.
    """
    pids = worker_pids(client)
    assert pids, "the daemon has no workers to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(_alive(pid) for pid in pids), timeout, interval=0.1), \
        f"daemon workers {pids} survived SIGKILL"
    return pids


class WorkerMemory(threading.Thread):
    """Samples the summed resident memory (RSS) of the daemon's workers every ``interval`` s while running.

    Workers are the children of the circus process whose command line is ``verdi ... daemon worker``, found
    anew at each sample (so restarted workers count too). ``samples`` holds (time.monotonic() in s, RSS in MiB)
    pairs.
    """

    def __init__(self, client, interval=1.0):
        super().__init__(daemon=True)
        self.circus = psutil.Process(client.get_daemon_pid())
        self.interval = interval
        self.samples = []
        self._stop_event = threading.Event()

    def _rss(self):
        total = 0
        for child in self.circus.children():
            try:
                if "worker" in child.cmdline():
                    total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def run(self):
        while not self._stop_event.is_set():
            self.samples.append((time.monotonic(), self._rss()))
            self._stop_event.wait(self.interval)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *_):
        self._stop_event.set()
        self.join()


def spectrum_arrays(spectrum):
    """Every array of an IRSpectrumData (frequency_cm1, mean, stderr, ..., runs), by name."""
    return {name: spectrum.get_array(name) for name in spectrum.get_arraynames()}


def assert_same_spectrum(spectrum, expected):
    """Bit-identical IRSpectrumData: the same array names and every array equal (np.array_equal, no tolerance).
    ``expected`` is an IRSpectrumData or the dict of :func:`spectrum_arrays` of one."""
    import numpy as np

    arrays = spectrum_arrays(spectrum)
    reference = expected if isinstance(expected, dict) else spectrum_arrays(expected)
    assert sorted(arrays) == sorted(reference)
    different = {name: (arrays[name].shape, reference[name].shape,
                        float(np.max(np.abs(arrays[name] - reference[name])))
                        if arrays[name].shape == reference[name].shape else None)
                 for name in arrays if not np.array_equal(arrays[name], reference[name])}
    assert not different, f"arrays differ (name: shape, expected shape, largest difference): {different}"


def verdi(profile, *args):
    """Run ``verdi -p PROFILE ARGS`` in this process; its output. Fails the test on a non-zero exit."""
    from aiida.cmdline.commands.cmd_verdi import verdi as verdi_command
    from click.testing import CliRunner

    result = CliRunner().invoke(verdi_command, ["-p", profile.name, *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output

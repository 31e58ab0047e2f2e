"""A real AiiDA daemon for the tests of the production-like profile (marker ``services``)."""

import contextlib
import time


def wait_until(condition, timeout, interval=0.5):
    """Poll ``condition()`` every ``interval`` s until it is true or ``timeout`` s have passed; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(interval)
    return condition()


@contextlib.contextmanager
def running_daemon(profile):
    """Start the daemon of ``profile`` (generous time-outs: other jobs may load the machine), yield its
    DaemonClient, and stop it again, checking that it is down."""
    from aiida.engine.daemon.client import DaemonClient

    client = DaemonClient(profile)
    client.start_daemon(timeout=120)
    try:
        yield client
    finally:
        client.stop_daemon(wait=True, timeout=120)
        assert wait_until(lambda: not client.is_daemon_running, 60), "the daemon did not stop"

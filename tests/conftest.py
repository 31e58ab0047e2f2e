"""Shared fixtures: an isolated AiiDA profile (aiida-core's fixtures), the shared VASP data, a
production-like PostgreSQL + RabbitMQ profile for the tests marked ``services``, and an embedded
SQLite + ZeroMQ profile (no service) for daemon tests."""

import os
import pathlib
import secrets
import shutil
import socket
import subprocess

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures"]

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("IRSPEC_SHARED", REPO.parent / "shared"))


def pytest_configure(config):
    """Ctrl-C reaches the commands the tests start, also when pytest was started in the background by a shell
    without job control (which starts it with SIGINT ignored, a disposition every child would inherit: the
    signal tests would then test nothing).

    Hypothesis profile ``reliability`` (thousands of fuzz cases): loaded by ``-m reliability`` or by the
    environment variable ``HYPOTHESIS_PROFILE=reliability``; the default run keeps hypothesis' defaults. Both
    draw the same cases on every run (a CI run passes or fails on the code, not on the draw); set
    ``IRSPEC_FUZZ_RANDOM=1`` to draw new ones (how the fuzz looks for new bugs, docs/reliability.md)."""
    import signal

    from hypothesis import HealthCheck, settings

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    derandomize = os.environ.get("IRSPEC_FUZZ_RANDOM", "0") != "1"
    settings.register_profile("reproducible", derandomize=derandomize)
    settings.register_profile("reliability", max_examples=int(os.environ.get("IRSPEC_FUZZ_EXAMPLES", 1000)),
                              deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=derandomize)
    markexpr = config.getoption("markexpr", "") or ""
    if "reliability" in markexpr and "not reliability" not in markexpr:
        settings.load_profile("reliability")
    else:
        settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))


def port_open(port, host="127.0.0.1", timeout=1.0):
    """True when something listens on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def shared_data():
    """The folder ../shared/data, or skip with a reason."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set IRSPEC_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def zro2_dir(shared_data):
    """The 60 ZrO2 DFPT results (OUTCAR.N.gz, POSCAR.N)."""
    return shared_data / "zro2"


@pytest.fixture(scope="session")
def zro2_outcars(zro2_dir):
    """Paths of the 60 ZrO2 OUTCARs, in numeric order."""
    return sorted(zro2_dir.glob("OUTCAR.*.gz"), key=lambda p: int(p.name.split(".")[1]))


@pytest.fixture
def postgres_rabbitmq_profile(aiida_config_tmp, aiida_profile_factory):
    """A temporary profile on PostgreSQL (core.psql_dos) with the RabbitMQ broker, loaded for one test.

    Creates its own role and database (``verdi presto --use-postgres`` fails on this OS locale), switches
    RabbitMQ's consumer timeout off for channels opened afterwards, and drops the database at the end.
    """
    if not (port_open(5432) and port_open(5672)):
        pytest.skip("PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) are needed")
    import psycopg

    name = f"irspec_test_{secrets.token_hex(4)}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'")
        conn.execute(f"CREATE DATABASE {name} OWNER {name} ENCODING 'UTF8' TEMPLATE template0")
    if shutil.which("rabbitmqctl"):
        subprocess.run(["rabbitmqctl", "eval", "application:set_env(rabbit, consumer_timeout, undefined)."],
                       capture_output=True, timeout=60, check=False)
    storage = {"database_hostname": "127.0.0.1", "database_port": 5432, "database_username": name,
               "database_password": name, "database_name": name,
               "repository_uri": f"file://{aiida_config_tmp.dirpath}/repository-{name}"}
    try:
        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.psql_dos", storage_config=storage,
                                   broker_backend="core.rabbitmq", name=name) as profile:
            profile.set_option("warnings.rabbitmq_version", False)
            yield profile
    finally:
        from aiida.manage import get_manager

        get_manager().reset_profile()
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def sqlite_zeromq_profile(aiida_config_tmp, aiida_profile_factory):
    """A temporary profile on SQLite (core.sqlite_dos) with aiida-core's ZeroMQ broker, loaded for one test:
    the default of ``verdi presto``; the daemon starts the broker service itself (no external service)."""
    try:
        with aiida_profile_factory(aiida_config_tmp, storage_backend="core.sqlite_dos",
                                   broker_backend="core.zeromq") as profile:
            yield profile
    finally:
        from aiida.manage import get_manager

        get_manager().reset_profile()

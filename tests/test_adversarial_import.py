"""`aiida-irspec import-vasp` under concurrency and signals: real processes, real databases, real SIGINT.

Two (or four) imports of the same folder into the same group at the same time, on PostgreSQL + RabbitMQ and on
SQLite, end with each file imported once, every process reporting success and no traceback. Ctrl-C (SIGINT)
in the middle of an import ends with one ``Error:`` line and exit code 130, and leaves the group consistent:
every node in it is a complete import, no file is half imported, and running the command again imports the
rest. The guarantee is a database lock taken by each file's transaction (see
aiida_irspec/calculations/import_vasp.py), not a check before inserting.
"""

import gzip
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.adversarial, pytest.mark.shared]

CLI = str(pathlib.Path(sys.executable).with_name("aiida-irspec"))


@pytest.fixture
def import_tree(tmp_path, zro2_outcars, shared_data):
    """A folder of a user's runs: ``n`` ZrO2 OUTCARs (gzip), the VASP 5.4 run's OUTCAR and vasprun.xml (26
    atoms) and a POSCAR (skipped). Returns a function n -> (folder, number of files with Born charges)."""
    def make(n):
        folder = tmp_path / f"runs-{n}"
        bec = shared_data / "aiida-vasp" / "born_effective_charge"
        for k, outcar in enumerate(zro2_outcars[:n]):
            (folder / f"zro2-{k}").mkdir(parents=True)
            shutil.copy(outcar, folder / f"zro2-{k}" / "OUTCAR.gz")
        (folder / "pszn").mkdir()
        for name in ("OUTCAR", "vasprun.xml", "POSCAR"):
            shutil.copy(bec / name, folder / "pszn" / name)
        return folder, n + 2

    return make


def start_import(folder, group, profile):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # AIIDA_PATH: the test's config
    assert "AIIDA_PATH" in env
    return subprocess.Popen([CLI, "-p", profile.name, "import-vasp", str(folder), "-g", group], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def assert_each_file_once(group_label, n_files):
    """The group holds ``n_files`` BornChargesData, each the output of one finished import of a distinct file
    content; no content was imported twice (one SinglefileData and one import per sha256)."""
    from aiida import orm

    from aiida_irspec.data.born_charges import BornChargesData

    group = orm.load_group(group_label)
    nodes = list(group.nodes)
    assert len(nodes) == n_files and all(isinstance(node, BornChargesData) for node in nodes)
    hashes = [node.source["sha256"] for node in nodes]
    assert len(set(hashes)) == n_files
    files = orm.QueryBuilder().append(orm.SinglefileData, project=["attributes.sha256"]).all(flat=True)
    assert sorted(files) == sorted(hashes)  # one stored file per content, none left over
    imports = orm.QueryBuilder().append(orm.CalcFunctionNode, filters={
        "attributes.function_name": "import_vasp_file"}).all(flat=True)
    assert len(imports) == n_files and all(node.is_finished_ok for node in imports)
    assert all(node.creator.is_finished_ok and "structure" in node.creator.outputs for node in nodes)


def assert_clean(code, out, err, allowed=(0,)):
    assert code in allowed, (code, out, err)
    assert "Traceback" not in out + err and "database is locked" not in out + err, err


def run_concurrently(profile, folder, n_files, processes=2, group="same"):
    running = [start_import(folder, group, profile) for _ in range(processes)]
    results = [finish(process) for process in running]
    statuses = []
    for code, out, err in results:
        assert_clean(code, out, err)
        summary = out.splitlines()[-1]
        assert f"group '{group}' holds {n_files} nodes" in summary, out
        statuses.append(out)
    imported = sum(out.count(" imported (pk") - out.count("already imported (pk") for out in statuses)
    already = sum(out.count("already imported (pk") for out in statuses)
    assert imported == n_files and already == (processes - 1) * n_files, statuses
    assert_each_file_once(group, n_files)


def test_two_concurrent_imports_sqlite(sqlite_zeromq_profile, import_tree):
    """SQLite (the default profile of `verdi presto`): two imports of 8 files at once. Before: 'database is
    locked' tracebacks."""
    folder, n_files = import_tree(6)
    run_concurrently(sqlite_zeromq_profile, folder, n_files)


@pytest.mark.services
def test_two_concurrent_imports_postgres(postgres_rabbitmq_profile, import_tree):
    """PostgreSQL + RabbitMQ: two imports of 8 files at once. Before: both reported success and the group held
    every file twice, or a UniqueViolation traceback."""
    folder, n_files = import_tree(6)
    run_concurrently(postgres_rabbitmq_profile, folder, n_files)


@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def test_four_concurrent_imports(backend, request, import_tree):
    """Four imports of 22 files at once, on each backend."""
    profile = request.getfixturevalue("sqlite_zeromq_profile" if backend == "sqlite" else
                                      "postgres_rabbitmq_profile")
    folder, n_files = import_tree(20)
    run_concurrently(profile, folder, n_files, processes=4)


def interrupt_after_first_import(profile, folder, group, sig=signal.SIGINT, timeout=300):
    """Start an import, send ``sig`` once its first file is in the group, return (code, out, err)."""
    from aiida import orm

    process = start_import(folder, group, profile)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = orm.QueryBuilder().append(orm.Group, filters={"label": group}, tag="g").append(
            orm.Node, with_group="g").count()
        if found:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    return finish(process)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_import_leaves_the_group_consistent(sqlite_zeromq_profile, import_tree, sig):
    """Ctrl-C (or SIGTERM) in the middle: one Error line, exit 130 (143), the group holds only complete
    imports (each file whole or not at all), and the same command afterwards imports the rest exactly once."""
    from aiida import orm

    folder, n_files = import_tree(12)
    code, out, err = interrupt_after_first_import(sqlite_zeromq_profile, folder, "interrupted", sig)
    assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], (code, out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"Error: stopped by {sig.name} after"), err
    assert "run the same command again" in errors[0]
    kept = orm.load_group("interrupted").count()
    assert 1 <= kept < n_files
    assert_each_file_once("interrupted", kept)  # nothing half imported: every stored file is a finished import

    code, out, err = finish(start_import(folder, "interrupted", sqlite_zeromq_profile))
    assert_clean(code, out, err)
    assert out.count("already imported (pk") == kept and out.count(" imported (pk") == n_files
    assert_each_file_once("interrupted", n_files)


@pytest.mark.services
def test_interrupted_import_postgres(postgres_rabbitmq_profile, import_tree):
    """Ctrl-C on PostgreSQL: the same guarantees."""
    from aiida import orm

    folder, n_files = import_tree(12)
    code, out, err = interrupt_after_first_import(postgres_rabbitmq_profile, folder, "interrupted")
    assert code == 130 and "Traceback" not in out + err, (code, out, err)
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    kept = orm.load_group("interrupted").count()
    assert 1 <= kept < n_files
    assert_each_file_once("interrupted", kept)


def test_concurrent_import_and_reader_of_the_group(sqlite_zeromq_profile, import_tree, tmp_path):
    """An import of a file that another import holds the lock for waits for it and then reuses its node,
    also when the second import names the file directly under another name (same content)."""
    folder, n_files = import_tree(4)
    renamed = tmp_path / "vasprun-born.xml.gz"
    renamed.write_bytes(gzip.compress((folder / "pszn" / "vasprun.xml").read_bytes(), mtime=0))
    first = start_import(folder, "mixed", sqlite_zeromq_profile)
    second = start_import(folder / "pszn" / "vasprun.xml", "mixed", sqlite_zeromq_profile)
    for code, out, err in (finish(first), finish(second)):
        assert_clean(code, out, err)
    code, out, err = finish(start_import(renamed, "mixed", sqlite_zeromq_profile))
    assert_clean(code, out, err)
    assert "imported (pk" in out  # compressed bytes differ: a new file content, imported once
    assert_each_file_once("mixed", n_files + 1)

"""Import existing VASP linear-response results (OUTCAR / vasprun.xml) with provenance, once per content.

Files are recognised by their content, not their name (:func:`aiida_irspec.io.vasp.detect_format`, plain or
gzip/xz/bz2/lzma): an OUTCAR or vasprun.xml with Born effective charges is imported; everything else found
under a folder is skipped with the reason (not a VASP output, an XDATCAR, a VASP output without Born charges).

Each imported file becomes a SinglefileData (attributes ``sha256`` of its bytes as stored and ``source_path``),
the input of the calcfunction :func:`import_vasp_file`, whose outputs are the StructureData and the
BornChargesData. A file whose sha256 is already the input of a finished import is not imported again: its
existing BornChargesData is reused (added to the group).

Concurrency: each file is imported in one database transaction that first takes a lock the database gives
(PostgreSQL: the transaction-level advisory lock :data:`IMPORT_LOCK_KEY`; SQLite: its single write lock, taken
by a write at the start of the transaction) and only then looks for an earlier import of the same content,
so two imports of the same files at the same time import each file once. A transaction that finds the SQLite
database locked by another writer is rolled back and retried (:data:`LOCK_WAIT_SECONDS` in all). A file is
imported whole or not at all: an exception (e.g. a KeyboardInterrupt) rolls back the file in progress and
keeps the ones before it, each with its group membership; the command itself asks to stop between files
(``stop``), so that Ctrl-C is never lost in a callback that Python runs while it arrives.
"""

import dataclasses
import hashlib
import io
import os
import pathlib
import random
import stat
import time

from aiida import orm
from aiida.manage import get_manager

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.born_charges import BornChargesData
from aiida_irspec.exceptions import IrspecError, MalformedFileError
from aiida_irspec.io.vasp import detect_format, open_vasp_file, parse_born_charges

IMPORTED, ALREADY_IMPORTED, SKIPPED, ERROR = "imported", "already imported", "skipped", "error"
#: Key of the PostgreSQL advisory lock held by the transaction of each imported file.
IMPORT_LOCK_KEY = 0x1E5BEC0A
#: How long an import waits in all for an SQLite database locked by another writer before giving up.
LOCK_WAIT_SECONDS = 300.0


@versioned_calcfunction
def import_vasp_file(file):
    """Parse a VASP OUTCAR or vasprun.xml (plain or compressed) held in a SinglefileData.

    Returns ``structure`` (StructureData of the run) and ``born_charges`` (BornChargesData with the
    dielectric tensor when the file has one; source engine, version, format, path, sha256).
    """
    with file.open(mode="rb") as handle:
        data = handle.read()
    path = file.base.attributes.get("source_path", file.filename)
    record = parse_born_charges(data, path)
    source = {"engine": "vasp", "version": record.source["vasp_version"], "format": record.source["format"],
              "path": record.source["path"], "sha256": record.source["sha256"]}
    born = BornChargesData(record.born_charges, symbols=record.atoms.get_chemical_symbols(),
                           dielectric=record.dielectric, source=source)
    return {"structure": orm.StructureData(ase=record.atoms), "born_charges": born}


@dataclasses.dataclass
class ImportResult:
    """Outcome of one file: status "imported", "already imported", "skipped" (then ``message`` says why) or
    "error" (then ``message`` is the error)."""

    path: pathlib.Path
    status: str
    born_charges: BornChargesData | None = None
    message: str = ""


def file_sha256(data):
    """Hex sha256 of bytes: the identity of an imported file."""
    return hashlib.sha256(data).hexdigest()


def find_files(paths):
    """Every regular file under ``paths`` (folders recursively, symbolic links to folders not followed) and the
    paths that are not folders themselves; naturally sorted (OUTCAR.9 before OUTCAR.10), without duplicates."""
    import re

    found = set()
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            for folder, _, names in os.walk(path):
                found.update(pathlib.Path(folder) / name for name in names)
        else:
            found.add(path)
    return sorted(found, key=lambda p: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(p))])


def classify(path):
    """None when ``path`` may hold Born charges (a VASP OUTCAR or vasprun.xml by content), else an
    ImportResult "skipped" with the reason, or "error" when the file cannot be read."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return ImportResult(path, ERROR, message=f"{error.strerror}: {path}")
    if not stat.S_ISREG(mode):
        return ImportResult(path, SKIPPED, message="not a regular file (a FIFO, device or socket is not read)")
    try:
        with open_vasp_file(path) as handle:
            head = handle.read(4096)
    except OSError as error:
        return ImportResult(path, ERROR, message=f"{error.strerror}: {path}")
    except MalformedFileError as error:
        return ImportResult(path, ERROR, message=str(error))
    kind = detect_format(head)
    if kind in ("outcar", "vasprun"):
        return None
    if kind == "xdatcar":
        return ImportResult(path, SKIPPED, message="an XDATCAR (positions only, no Born charges)")
    if not head.strip():
        return ImportResult(path, SKIPPED, message="an empty file")
    if b"\x00" in head:
        return ImportResult(path, SKIPPED, message="not a VASP OUTCAR or vasprun.xml (binary data)")
    first = head.decode("iso-8859-1").strip().splitlines()[0][:40]
    return ImportResult(path, SKIPPED, message=f"not a VASP OUTCAR or vasprun.xml (starts with {first!r})")


class ImportStopped(Exception):
    """``stop()`` asked the import to end: ``results`` holds the files done before (each imported whole)."""

    def __init__(self, results):
        super().__init__(f"stopped after {len(results)} files")
        self.results = results


def import_vasp_files(paths, group=None, progress=None, stop=None):
    """Import VASP output files; returns one ImportResult per path, in order.

    paths: files (any content: see :func:`classify`). group: an orm.Group to add every imported or already
    imported BornChargesData to (None: no group). progress: optional callable(path) called before each file.
    stop: optional callable asked before each file; when it returns true, :class:`ImportStopped` is raised with
    the results so far (the command's Ctrl-C). A VASP output without Born charges is "skipped"; an unreadable
    or malformed one is an "error"; neither creates a node. Each file is imported in its own locked
    transaction (see the module doc).
    """
    results = []
    for path in map(pathlib.Path, paths):
        if stop is not None and stop():
            raise ImportStopped(results)
        if progress is not None:
            progress(path)
        results.append(classify(path) or _import_one(path, group))
    return results


def _import_one(path, group):
    """Import one OUTCAR / vasprun.xml unless its content was imported before (checked under the lock)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImportResult(path, ERROR, message=f"{error.strerror}: {path}")
    try:
        parse_born_charges(data, path)
    except MalformedFileError as error:
        if error.found and str(error.found).startswith("none (not a linear-response run"):
            return ImportResult(path, SKIPPED, message="a VASP output without Born effective charges "
                                                       "(not a linear-response run, or cut off before them)")
        return ImportResult(path, ERROR, message=str(error))
    except IrspecError as error:
        return ImportResult(path, ERROR, message=str(error))
    sha256 = file_sha256(data)

    def attempt():
        known = find_imported([sha256])
        if sha256 in known:
            result = ImportResult(path, ALREADY_IMPORTED, known[sha256])
        else:
            file = orm.SinglefileData(io.BytesIO(data), filename=path.name)
            file.base.attributes.set("sha256", sha256)
            file.base.attributes.set("source_path", str(path.resolve()))
            result = ImportResult(path, IMPORTED, run_without_interrupt_handler(import_vasp_file, file)["born_charges"])
        if group is not None:
            group.add_nodes([result.born_charges])
        return result

    try:
        return locked_transaction(attempt)
    except DatabaseBusy as error:
        return ImportResult(path, ERROR, message=str(error))


def run_without_interrupt_handler(function, *args):
    """Outputs of the calcfunction ``function`` run on ``args`` as calling it would, but without the SIGINT
    handler that aiida-core installs for the call: that handler kills the process from inside the signal, with
    database queries on the connection whose statement the signal interrupted, and the import hung there (one
    Ctrl-C in about ten on PostgreSQL). The command's own handler stays in place and stops between files."""
    process_class = function.process_class
    runner = get_manager().create_runner(communicator=None)  # what aiida-core's run_get_node does
    return process_class(inputs=process_class.create_inputs(*args), runner=runner).execute()


def find_imported(hashes):
    """Map sha256 -> BornChargesData of earlier finished imports of files with those hashes (one query)."""
    hashes = list(set(hashes))
    if not hashes:
        return {}
    query = orm.QueryBuilder()
    query.append(orm.SinglefileData, filters={"attributes.sha256": {"in": hashes}}, project=["attributes.sha256"],
                 tag="file")
    query.append(orm.CalcFunctionNode, with_incoming="file", tag="import",
                 filters={"attributes.function_name": import_vasp_file.__name__, "attributes.exit_status": 0})
    query.append(BornChargesData, with_incoming="import", project=["*"])
    return dict(query.all())


class DatabaseBusy(IrspecError):
    """Another writer kept the (SQLite) database locked for longer than :data:`LOCK_WAIT_SECONDS`."""

    exit_code = 1


def locked_transaction(function, wait=LOCK_WAIT_SECONDS):
    """``function()`` inside one database transaction that holds the import lock (module doc); its result.

    An SQLite database locked by another writer rolls the transaction back and retries after a short random
    pause, until ``wait`` seconds have passed (then :class:`DatabaseBusy`).
    """
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    storage = get_manager().get_profile_storage()
    deadline = time.monotonic() + wait
    while True:
        try:
            with storage.transaction() as session:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK_KEY})
                else:  # SQLite: any write takes the database's single write lock until the commit
                    session.execute(text("UPDATE db_dbsetting SET key = key WHERE 0 = 1"))
                return function()
        except OperationalError as error:
            if "locked" not in str(error).lower() and "busy" not in str(error).lower():
                raise
            if time.monotonic() > deadline:
                raise DatabaseBusy(f"the database stayed locked by another writer for {wait:.0f} s") from None
            time.sleep(random.uniform(0.05, 0.5))


def get_or_create_group(label):
    """The group ``label``, created when missing, safely when another process creates it at the same time."""
    def attempt():
        found = orm.QueryBuilder().append(orm.Group, filters={"label": label, "type_string": "core"}).first(flat=True)
        return found if found is not None else orm.Group(label=label).store()

    return locked_transaction(attempt)

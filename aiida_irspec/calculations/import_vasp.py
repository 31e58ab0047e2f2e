"""Import existing VASP linear-response results (OUTCAR / vasprun.xml) with provenance, idempotently.

Each file becomes a SinglefileData (attributes ``sha256`` of its bytes and ``source_path``), the input of
the calcfunction :func:`import_vasp_file`, whose outputs are the StructureData and the BornChargesData.
A file whose sha256 is already the input of a finished import is not imported again: its existing
BornChargesData is reused.
"""

import dataclasses
import hashlib
import io
import pathlib

from aiida import orm
from aiida.manage import get_manager

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.born_charges import BornChargesData
from aiida_irspec.exceptions import IrspecError
from aiida_irspec.io.vasp import parse_born_charges

IMPORTED, ALREADY_IMPORTED, ERROR = "imported", "already imported", "error"


@versioned_calcfunction
def import_vasp_file(file):
    """Parse a VASP OUTCAR or vasprun.xml (plain or gzipped) held in a SinglefileData.

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
    """Outcome of importing one file: status is "imported", "already imported" or "error" (then message)."""

    path: pathlib.Path
    status: str
    born_charges: BornChargesData | None = None
    message: str = ""


def file_sha256(data):
    """Hex sha256 of bytes: the identity of an imported file."""
    return hashlib.sha256(data).hexdigest()


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


def import_vasp_files(paths, group=None, progress=None, batch_size=20):
    """Import VASP output files; returns one ImportResult per path, in order.

    paths: OUTCAR / vasprun.xml files (plain or gzipped). group: an orm.Group to add every imported or
    already imported BornChargesData to (None: no group). progress: optional callable(path) called before
    each file. Unreadable or malformed files give status "error" with the message and create no node.
    Files are stored ``batch_size`` at a time in one database transaction each (one commit per batch).
    """
    paths = [pathlib.Path(path) for path in paths]
    results, hashes = {}, {}
    for path in paths:
        try:
            hashes[path] = file_sha256(path.read_bytes())
        except OSError as error:
            results[path] = ImportResult(path, ERROR, message=f"{error.strerror}: {path}")
    known = find_imported(hashes.values())
    pending = list(hashes)
    storage = get_manager().get_profile_storage()
    for first in range(0, len(pending), batch_size):
        with storage.transaction():
            for path in pending[first:first + batch_size]:
                if progress is not None:
                    progress(path)
                results[path] = _import_one(path, known)
    if group is not None:
        group.add_nodes([result.born_charges for result in results.values() if result.born_charges is not None])
    return [results[path] for path in paths]


def _import_one(path, known):
    """Import one file unless its sha256 is in ``known`` (sha256 -> BornChargesData, updated here)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImportResult(path, ERROR, message=f"{error.strerror}: {path}")
    sha256 = file_sha256(data)
    if sha256 in known:
        return ImportResult(path, ALREADY_IMPORTED, known[sha256])
    try:
        parse_born_charges(data, path)
    except IrspecError as error:
        return ImportResult(path, ERROR, message=str(error))
    file = orm.SinglefileData(io.BytesIO(data), filename=path.name)
    file.base.attributes.set("sha256", sha256)
    file.base.attributes.set("source_path", str(path.resolve()))
    known[sha256] = import_vasp_file(file)["born_charges"]
    return ImportResult(path, IMPORTED, known[sha256])

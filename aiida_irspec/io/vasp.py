"""Everything the package reads from VASP files: Born charges, dielectric tensor, structures, MD trajectories.

No AiiDA import. Files are recognised by their content, never by their name: a vasprun.xml (``<?xml``,
``<modeling>``), an OUTCAR (first line `` vasp.X.Y.Z``) or an XDATCAR (VASP 5+ header and
``Direct configuration=``), each plain or compressed with gzip, xz, bz2 or lzma (detected by the magic
bytes, :func:`open_vasp_file`). vasprun.xml is decoded with the encoding it declares (VASP writes
``encoding="ISO-8859-1"``); OUTCAR and XDATCAR, which declare none, are read as ISO-8859-1 too, so no byte
is refused (only their ASCII numbers and keywords are parsed).

Born charges: the OUTCAR (VASP 5.4 and 6 formats) and vasprun.xml of a ``LEPSILON``/``LCALCEPS`` run.
Convention: ``Z[i, a, b] = dP_a / dx_{i,b}`` in |e|, shape (N, 3, 3): ``a`` is the electric field /
polarization direction, ``b`` the displacement direction of ion ``i``. VASP prints each ion's block with
rows = field direction, in the OUTCAR and in the ``born_charges`` sets of vasprun.xml alike, so both are
read as printed and never transposed.

Trajectories: :func:`read_trajectory` reads every MD step a file holds (rules in its docstring).

Every input that is not a complete result raises :class:`~aiida_irspec.exceptions.MalformedFileError`
naming the file, the 1-based line (``None`` when the fault is not at one line) and what was expected.
"""

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import io
import lzma
import math
import pathlib
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
import zlib

import ase
import ase.data
import ase.io
import numpy as np

from aiida_irspec import units
from aiida_irspec.exceptions import InputError, MalformedFileError

__all__ = [
    "BornChargesRecord",
    "VaspTrajectory",
    "compression_of",
    "detect_format",
    "open_vasp_file",
    "parse_born_charges",
    "read_born_charges",
    "read_final_velocities",
    "read_outcar_born_charges",
    "read_structure",
    "read_trajectory",
    "read_vasprun_born_charges",
    "temperature_from_kinetic",
    "unwrap_positions",
    "velocities_from_positions",
]

#: Compressions read, by magic bytes: name -> (magic, module whose ``decompress`` and ``open`` read it).
#: ``lzma`` is the legacy ".lzma" (LZMA-alone) container, whose header starts with the properties byte 0x5d.
_COMPRESSIONS = {"gzip": (b"\x1f\x8b", gzip), "xz": (b"\xfd7zXZ\x00", lzma), "bz2": (b"BZh", bz2),
                 "lzma": (b"\x5d\x00\x00", lzma)}
#: Containers recognised but not read: named in the error instead of "binary data".
_UNREAD_CONTAINERS = {"zip": b"PK\x03\x04", "zstd": b"\x28\xb5\x2f\xfd", "7z": b"7z\xbc\xaf\x27\x1c"}
#: What the decompressors raise on a damaged or cut-off stream.
_STREAM_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
#: VASP's text encoding (declared in every vasprun.xml); OUTCAR and XDATCAR declare none.
VASP_TEXT_ENCODING = "iso-8859-1"

_BORN_HEADER = "BORN EFFECTIVE CHARGES ("
_DIELECTRIC_HEADER = "MACROSCOPIC STATIC DIELECTRIC TENSOR (including local field effects"
_GLUED_NUMBERS = re.compile(r"(?:[-+]?\d+\.\d*(?:[eE][-+]?\d+)?)+")
_NUMBER = re.compile(r"[-+]?\d+\.\d*(?:[eE][-+]?\d+)?")
_ELEMENT = re.compile(r"[A-Z][a-z]?")


@dataclasses.dataclass
class BornChargesRecord:
    """What a linear-response run gives: structure, Born charges, dielectric tensor and where it came from.

    atoms: the structure of the run (Cartesian Angstrom, species in the order of the file, periodic).
    born_charges: (N, 3, 3) in |e|, ``Z[i, a, b] = dP_a / dx_{i,b}``, as printed by VASP.
    dielectric: (3, 3) electronic (ion-clamped) dielectric tensor epsilon_infinity, or None.
    source: {"path", "format": "outcar" | "vasprun", "vasp_version", "sha256"} (sha256 of the file's
        bytes as stored, compressed or not).
    """

    atoms: ase.Atoms
    born_charges: np.ndarray
    dielectric: np.ndarray | None
    source: dict


def read_born_charges(path):
    """Read a VASP OUTCAR or vasprun.xml (plain or gzipped, detected by content) into a BornChargesRecord."""
    path = pathlib.Path(path)
    return parse_born_charges(path.read_bytes(), path)


def read_outcar_born_charges(path):
    """Read a VASP OUTCAR (plain or gzipped): the last Born-charge block, dielectric tensor, input structure."""
    path = pathlib.Path(path)
    return parse_born_charges(path.read_bytes(), path, expect="outcar")


def read_vasprun_born_charges(path):
    """Read a VASP vasprun.xml (plain or gzipped): the last ``born_charges`` array, ``epsilon``, ``finalpos``."""
    path = pathlib.Path(path)
    return parse_born_charges(path.read_bytes(), path, expect="vasprun")


def parse_born_charges(data, path, expect=None):
    """Parse the bytes ``data`` of a VASP OUTCAR or vasprun.xml (plain or compressed); ``path`` is used for
    messages and the source.

    expect: None (detect), "outcar" or "vasprun" (anything else in the file is then an error).
    """
    sha256 = hashlib.sha256(data).hexdigest()
    raw = decompress(data, path)
    kind = _born_charges_format(raw, path)
    if expect is not None and kind != expect:
        raise MalformedFileError(path, 1, f"a VASP {expect}", f"a VASP {kind}")
    record = (_VasprunParser(raw, path) if kind == "vasprun" else _OutcarParser(_decode(raw, path), path)).parse()
    record.source["sha256"] = sha256
    return record


def _born_charges_format(raw, path):
    """"outcar" or "vasprun" for the decompressed bytes of a file that may hold Born charges, else the error."""
    if not raw.strip():
        raise MalformedFileError(path, 1, "a VASP OUTCAR or vasprun.xml", "an empty file")
    kind = detect_format(raw[:4096])
    if kind in ("outcar", "vasprun"):
        return kind
    _refuse_binary(raw, path)
    if kind == "xdatcar":
        raise MalformedFileError(path, 1, "a VASP OUTCAR or vasprun.xml", "an XDATCAR (positions only)")
    text = raw[:4096].decode(VASP_TEXT_ENCODING)
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    raise MalformedFileError(path, 1, "a VASP OUTCAR (first line ' vasp.X.Y.Z ...') or vasprun.xml", first[:80])


def read_structure(path, index=-1):
    """The structure in a VASP OUTCAR / vasprun.xml (the one the Born charges belong to), or, for any other
    file ASE reads (POSCAR, CONTCAR, extxyz, cif, ...), the frame ``index`` of it, as an ase.Atoms."""
    path = pathlib.Path(path)
    raw = decompress(path.read_bytes(), path)
    kind = detect_format(raw[:4096])
    if kind in ("vasprun", "outcar"):
        return (_VasprunParser(raw, path) if kind == "vasprun" else _OutcarParser(_decode(raw, path), path)
                ).parse_structure()
    try:
        return ase.io.read(path, index=index)
    except (OSError, ValueError, KeyError, IndexError, StopIteration, ase.io.formats.UnknownFileTypeError) as error:
        raise MalformedFileError(path, None, "a structure file that ASE can read", str(error)) from error


# ---------------------------------------------------------------------------------------------------------
# bytes -> text -> format: the one place for compression and decoding


def compression_of(head):
    """The compression of a file from its first bytes: "gzip", "xz", "bz2", "lzma", or None (plain)."""
    for name, (magic, _) in _COMPRESSIONS.items():
        if head.startswith(magic):
            return name
    return None


def decompress(data, path):
    """The bytes ``data`` of ``path`` decompressed when they are gzip, xz, bz2 or lzma (by magic bytes)."""
    name = compression_of(data[:8])
    if name is None:
        return data
    try:
        return _COMPRESSIONS[name][1].decompress(data)
    except _STREAM_ERRORS as error:
        raise MalformedFileError(path, None, f"a complete {name} stream ({name}-compressed file)",
                                 f"damaged or cut-off {name} data: {error}") from error


@contextlib.contextmanager
def open_vasp_file(path):
    """A binary stream of the file's content, decompressed when it is gzip, xz, bz2 or lzma (magic bytes).

    Damaged or cut-off compressed data raise :class:`MalformedFileError` naming the compression, at the
    read that meets them (inside the ``with`` block).
    """
    path = pathlib.Path(path)
    with open(path, "rb") as handle:
        name = compression_of(handle.read(8))
    if name is None:
        with open(path, "rb") as handle:
            yield handle
        return
    try:
        with _COMPRESSIONS[name][1].open(path, "rb") as handle:
            yield handle
    except _STREAM_ERRORS as error:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise MalformedFileError(path, None, f"a complete {name} stream ({name}-compressed file)",
                                 f"damaged or cut-off {name} data: {error}") from error


def _decode(data, path):
    """Text of an OUTCAR / XDATCAR: ISO-8859-1 (VASP's encoding; every byte is valid); NUL bytes refused."""
    if not data.strip():
        raise MalformedFileError(path, 1, "a VASP OUTCAR, vasprun.xml or XDATCAR", "an empty file")
    _refuse_binary(data, path)
    return data.decode(VASP_TEXT_ENCODING)


def _refuse_binary(data, path):
    """MalformedFileError for data with a NUL byte, naming a compressed container that is not read."""
    nul = data.find(b"\x00")
    if nul < 0:
        return
    for name, magic in _UNREAD_CONTAINERS.items():
        if data.startswith(magic):
            raise MalformedFileError(path, None, "a plain, gzip, xz, bz2 or lzma file",
                                     f"a {name}-compressed file (decompress it first)")
    raise MalformedFileError(path, data.count(b"\n", 0, nul) + 1, "text", "binary data (NUL byte)")


def _looks_like_vasprun(head):
    return head.lstrip().startswith("<?xml") or "<modeling>" in head[:1000]


def _looks_like_outcar(head):
    return head.lstrip().startswith("vasp.")


def _looks_like_xdatcar(head):
    """VASP 5+ XDATCAR: title, scale, 3 lattice rows, species, counts, 'Direct configuration='."""
    lines = head.splitlines()
    if len(lines) < 8 or not lines[7].strip().lower().startswith(("direct configuration", "cartesian configuration")):
        return False
    try:
        [float(word) for line in lines[1:5] for word in line.split()]
        [int(word) for word in lines[6].split()]
    except ValueError:
        return False
    return all(_ELEMENT.fullmatch(word.split("_")[0].split("/")[0]) for word in lines[5].split())


def detect_format(head):
    """"vasprun", "outcar", "xdatcar" or None, from the first (decompressed) bytes or text of a file."""
    if isinstance(head, bytes):
        head = head.decode(VASP_TEXT_ENCODING)
    head = head[:4096]
    if _looks_like_vasprun(head):
        return "vasprun"
    if _looks_like_outcar(head):
        return "outcar"
    if _looks_like_xdatcar(head):
        return "xdatcar"
    return None


def _parse_floats(path, line_number, line, count, what, shown=None):
    """Exactly ``count`` finite floats from a line of whitespace-separated numbers (VASP may glue negative
    numbers together: '-1.234-5.678'); ``shown`` is the text quoted in the error (default: the line)."""
    shown = (line if shown is None else shown).strip()
    values = []
    for token in line.split():
        try:
            values.append(float(token))
        except ValueError:
            if not _GLUED_NUMBERS.fullmatch(token):
                raise MalformedFileError(path, line_number, what, shown) from None
            values.extend(float(number) for number in _NUMBER.findall(token))
    if len(values) != count or not all(math.isfinite(value) for value in values):
        raise MalformedFileError(path, line_number, what, shown)
    return values


def _symbol(path, line_number, text):
    match = _ELEMENT.match(text.strip())
    if match is None or match.group() not in ase.data.chemical_symbols[1:]:
        raise MalformedFileError(path, line_number, "a chemical element", text.strip())
    return match.group()


# ---------------------------------------------------------------------------------------------------------
# OUTCAR


class _OutcarParser:
    """Targeted parse of an OUTCAR held as a list of lines (0-based index; messages say index + 1)."""

    def __init__(self, text, path):
        self.path = path
        self.lines = text.splitlines()

    def parse(self):
        atoms = self.parse_structure()
        n_ions = len(atoms)
        born = self._born_charges(n_ions)
        dielectric = self._dielectric()
        source = {"path": str(self.path), "format": "outcar", "vasp_version": self._version()}
        return BornChargesRecord(atoms=atoms, born_charges=born, dielectric=dielectric, source=source)

    def parse_structure(self):
        """The input structure: lattice and Cartesian positions VASP prints at start-up, species from the POTCARs."""
        n_ions, nions_line = self._int_after("NIONS =")
        counts_line = self._find_first("ions per type =")
        counts = self._ints_after_equals(counts_line, "the numbers of ions per type")
        if sum(counts) != n_ions:
            raise MalformedFileError(self.path, counts_line + 1, f"ions per type adding up to NIONS = {n_ions}",
                                     self.lines[counts_line].strip())
        species = self._species(nions_line, len(counts))
        symbols = [symbol for symbol, count in zip(species, counts) for _ in range(count)]

        positions_line = self._find_first("position of ions in cartesian coordinates")
        lattice_line = self._find_last("direct lattice vectors", stop=positions_line)
        cell = [self._floats(lattice_line + 1 + k, 6, "a lattice vector row (6 numbers)", keep=3)
                for k in range(3)]
        positions = [self._floats(positions_line + 1 + k, 3, "3 Cartesian coordinates of an ion")
                     for k in range(n_ions)]
        return ase.Atoms(symbols=symbols, positions=positions, cell=cell, pbc=True)

    def _version(self):
        token = self.lines[0].split()[0] if self.lines[0].split() else ""
        return token[len("vasp."):] if token.startswith("vasp.") else ""

    # -- Born charges and dielectric tensor

    def _born_charges(self, n_ions):
        header = self._find_last_header(_BORN_HEADER, "a 'BORN EFFECTIVE CHARGES (...)' block",
                                        exclude="excluding local field")
        self._expect_dashes(header + 1)
        born = np.empty((n_ions, 3, 3))
        line = header + 2
        for ion in range(1, n_ions + 1):
            words = self._line(line).split()
            if words != ["ion", str(ion)]:
                raise MalformedFileError(self.path, line + 1, f"'ion {ion}' (block of {n_ions} ions = NIONS)",
                                         self._found(line))
            for row in range(3):
                numbers = self._line(line + 1 + row).split()
                if not numbers or numbers[0] != str(row + 1):
                    raise MalformedFileError(self.path, line + 2 + row,
                                             f"row {row + 1} of the Born charge of ion {ion}",
                                             self._found(line + 1 + row))
                born[ion - 1, row] = _parse_floats(self.path, line + 2 + row, " ".join(numbers[1:]), 3,
                                                   f"3 numbers in row {row + 1} of the Born charge of ion {ion}",
                                                   shown=self._line(line + 1 + row))
            line += 4
        if self._line(line).split()[:1] == ["ion"]:
            raise MalformedFileError(self.path, line + 1,
                                     f"the end of the Born charge block after NIONS = {n_ions} ions",
                                     self._found(line))
        return born

    def _dielectric(self):
        """The last 'MACROSCOPIC STATIC DIELECTRIC TENSOR (including local field effects in DFT)', else the last
        one including local field effects at another level (LRPA: 'in RPA (Hartree)'); None if there is none."""
        headers = [k for k in range(len(self.lines) - 1, -1, -1)
                   if _DIELECTRIC_HEADER in self.lines[k] and self.lines[k].lstrip().startswith(_DIELECTRIC_HEADER)]
        if not headers:
            return None
        header = next((k for k in headers if "in DFT" in self.lines[k]), headers[0])
        self._expect_dashes(header + 1)
        return np.array([self._floats(header + 2 + k, 3, "a row of 3 numbers of the dielectric tensor")
                         for k in range(3)])

    # -- line helpers

    def _line(self, index):
        return self.lines[index] if index < len(self.lines) else ""

    def _found(self, index):
        if index >= len(self.lines):
            return "end of file"
        return self.lines[index].strip() or "an empty line"

    def _find_first(self, needle, stop=None):
        for index, line in enumerate(self.lines[:stop]):
            if needle in line:
                return index
        raise MalformedFileError(self.path, None, f"a line with '{needle}'", "none")

    def _find_last(self, needle, stop=None):
        stop = len(self.lines) if stop is None else stop
        for index in range(stop - 1, -1, -1):
            if needle in self.lines[index]:
                return index
        raise MalformedFileError(self.path, None, f"a line with '{needle}'", "none")

    def _find_last_header(self, prefix, what, exclude):
        for index in range(len(self.lines) - 1, -1, -1):
            if prefix in self.lines[index]:
                line = self.lines[index].lstrip()
                if line.startswith(prefix) and exclude not in line:
                    return index
        raise MalformedFileError(self.path, None, what, "none (not a linear-response run, or cut off)")

    def _expect_dashes(self, index):
        line = self._line(index).strip()
        if not line or set(line) != {"-"}:
            raise MalformedFileError(self.path, index + 1, "a line of dashes under the header", self._found(index))

    def _floats(self, index, count, what, keep=None):
        if index >= len(self.lines):
            raise MalformedFileError(self.path, index + 1, what, "end of file")
        values = _parse_floats(self.path, index + 1, self.lines[index], count, what)
        return values[:keep] if keep else values

    def _int_after(self, needle):
        index = self._find_first(needle)
        tail = self.lines[index].split(needle, 1)[1].split()
        try:
            value = int(tail[0])
        except (IndexError, ValueError):
            raise MalformedFileError(self.path, index + 1, f"an integer after '{needle}'",
                                     self.lines[index].strip()) from None
        if value <= 0:
            raise MalformedFileError(self.path, index + 1, f"a positive integer after '{needle}'", str(value))
        return value, index

    def _ints_after_equals(self, index, what):
        try:
            values = [int(word) for word in self.lines[index].partition("=")[2].split()]
        except ValueError:
            raise MalformedFileError(self.path, index + 1, what, self.lines[index].strip()) from None
        if not values or min(values) <= 0:
            raise MalformedFileError(self.path, index + 1, what, self.lines[index].strip())
        return values

    def _species(self, stop, n_types):
        """One element per POTCAR, from VRHFIN (``VRHFIN =Zr: ...``), else TITEL (``TITEL = PAW_PBE Zr_sv ...``),
        else (NWRITE = 0 prints neither) the first ``n_types`` ``POTCAR: PAW_PBE Zr_sv ...`` lines (VASP prints
        that list twice)."""
        for key in ("VRHFIN =", "TITEL  =", "POTCAR:"):
            found = [(index, line.split(key[-1], 1)[1]) for index, line in enumerate(self.lines[:stop])
                     if key in line]
            if key != "VRHFIN =":
                found = [(index, value.split()[1] if len(value.split()) > 1 else value) for index, value in found]
            if key == "POTCAR:":
                found = found[:n_types]
            if found:
                if len(found) != n_types:
                    raise MalformedFileError(self.path, found[-1][0] + 1,
                                             f"{n_types} POTCAR '{key.split()[0]}' lines (one per ion type)",
                                             f"{len(found)} lines")
                return [_symbol(self.path, index + 1, value) for index, value in found]
        raise MalformedFileError(self.path, None, "POTCAR 'VRHFIN', 'TITEL' or 'POTCAR:' lines naming the species",
                                 "none")


# ---------------------------------------------------------------------------------------------------------
# vasprun.xml


class _Element:
    """A minimal XML element that remembers its 1-based source line."""

    __slots__ = ("tag", "attrib", "line", "children", "text")

    def __init__(self, tag, attrib, line):
        self.tag, self.attrib, self.line, self.children, self.text = tag, attrib, line, [], []

    def find_all(self, tag, name=None):
        return [child for child in self.children
                if child.tag == tag and (name is None or child.attrib.get("name") == name)]

    def iter(self, tag, name=None):
        for child in self.children:
            if child.tag == tag and (name is None or child.attrib.get("name") == name):
                yield child
            yield from child.iter(tag, name)

    def string(self):
        return "".join(self.text).strip()


# Bulky sections of vasprun.xml that hold nothing this reader needs: checked for well-formedness, not kept.
_SKIPPED_XML = frozenset({"eigenvalues", "dos", "projected", "dielectricfunction", "eigenvalues_kpoints_opt",
                          "projected_kpoints_opt", "partial"})


def _parse_xml(data, path):
    """A tree of _Element of the XML bytes ``data`` (decoded by the encoding the file declares, UTF-8 when it
    declares none), without the bulky sections in _SKIPPED_XML."""
    root = _Element("#document", {}, 1)
    stack = [root]
    skipping = [0]  # depth inside a skipped section
    parser = xml.parsers.expat.ParserCreate()

    def start(tag, attrib):
        if skipping[0] or tag in _SKIPPED_XML:
            skipping[0] += 1
            return
        element = _Element(tag, attrib, parser.CurrentLineNumber)
        stack[-1].children.append(element)
        stack.append(element)

    def end(tag):
        if skipping[0]:
            skipping[0] -= 1
        else:
            stack.pop()

    def characters(data):
        if not skipping[0]:
            stack[-1].text.append(data)

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, characters
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        cut_off = error.lineno >= data.rstrip().count(b"\n") + 1
        found = "end of file (cut off)" if cut_off else xml.parsers.expat.errors.messages[error.code]
        raise MalformedFileError(path, error.lineno, "well-formed XML", found) from None
    return root


class _VasprunParser:
    def __init__(self, data, path):
        self.path = path
        self.root = _parse_xml(data, path)
        modeling = self.root.find_all("modeling")
        if not modeling:
            raise MalformedFileError(path, 1, "a <modeling> root element (vasprun.xml)",
                                     self.root.children[0].tag if self.root.children else "nothing")
        self.modeling = modeling[0]

    def parse(self):
        atoms = self.parse_structure()
        born = self._born_charges(len(atoms))
        dielectric = self._dielectric()
        source = {"path": str(self.path), "format": "vasprun", "vasp_version": self._version()}
        return BornChargesRecord(atoms=atoms, born_charges=born, dielectric=dielectric, source=source)

    def parse_structure(self):
        """The ``finalpos`` structure (``initialpos`` if the run has none), species from ``atominfo``."""
        symbols = self._symbols()
        structures = {s.attrib.get("name"): s for s in self.modeling.find_all("structure")}
        structure = structures.get("finalpos") or structures.get("initialpos")
        if structure is None:
            raise MalformedFileError(self.path, None, "a <structure name=\"finalpos\"> or \"initialpos\"", "none")
        crystal = self._one(structure, "crystal")
        cell = self._vectors(self._one(crystal, "varray", "basis"), 3, "the 3 lattice vectors")
        fractional = self._vectors(self._one(structure, "varray", "positions"), len(symbols),
                                   f"{len(symbols)} ion positions (atominfo)")
        return ase.Atoms(symbols=symbols, scaled_positions=fractional, cell=cell, pbc=True)

    def _version(self):
        for generator in self.modeling.find_all("generator"):
            for item in generator.find_all("i", "version"):
                return item.string()
        return ""

    def _symbols(self):
        atominfo = self._one(self.modeling, "atominfo")
        atoms = self._one(atominfo, "array", "atoms")
        rows = self._one(atoms, "set").find_all("rc")
        symbols = []
        for row in rows:
            cells = row.find_all("c")
            if not cells:
                raise MalformedFileError(self.path, row.line, "<c>element</c> in an atominfo row", "an empty row")
            symbols.append(_symbol(self.path, row.line, cells[0].string()))
        declared = atominfo.find_all("atoms")
        if not symbols or (declared and declared[0].string() != str(len(symbols))):
            line = declared[0].line if declared else atoms.line
            raise MalformedFileError(self.path, line, f"<atoms> equal to the {len(symbols)} atominfo rows",
                                     declared[0].string() if declared else "none")
        return symbols

    def _born_charges(self, n_ions):
        arrays = list(self.modeling.iter("array", "born_charges"))
        if not arrays:
            raise MalformedFileError(self.path, None, "an <array name=\"born_charges\">",
                                     "none (not a linear-response run, or cut off)")
        array = arrays[-1]
        sets = array.find_all("set")
        if len(sets) != n_ions:
            raise MalformedFileError(self.path, array.line, f"{n_ions} <set> blocks (one per ion)", f"{len(sets)}")
        return np.array([self._vectors(block, 3, f"3 rows in the Born charge of ion {k + 1}")
                         for k, block in enumerate(sets)])

    def _dielectric(self):
        varrays = list(self.modeling.iter("varray", "epsilon"))
        return np.array(self._vectors(varrays[-1], 3, "3 rows of the dielectric tensor")) if varrays else None

    def _one(self, parent, tag, name=None):
        found = parent.find_all(tag, name)
        if not found:
            label = f"<{tag} name=\"{name}\">" if name else f"<{tag}>"
            raise MalformedFileError(self.path, parent.line, f"{label} inside <{parent.tag}>", "none")
        return found[0]

    def _vectors(self, element, count, what):
        rows = element.find_all("v")
        if len(rows) != count:
            raise MalformedFileError(self.path, element.line, what, f"{len(rows)} <v> rows")
        return [_parse_floats(self.path, row.line, row.string(), 3, "3 numbers in a <v> row") for row in rows]


# ---------------------------------------------------------------------------------------------------------
# MD trajectories


@dataclasses.dataclass
class VaspTrajectory:
    """Every stored step of a VASP run, in file order, in package units.

    times: (F,) fs, ``(step - 1) * POTIM`` (step 1 is the run's first ionic step, at t = 0), or None when the
        file does not state a time step (an XDATCAR, a run that is not MD) and none was given.
    steps: (F,) int, the ionic step of each frame (1-based, as VASP counts).
    positions: (F, N, 3) Cartesian Angstrom, unwrapped (:func:`unwrap_positions`).
    cells: (F, 3, 3) Angstrom, rows are the lattice vectors.
    numbers: (N,) atomic numbers.
    origin: (F,) "dft" (an ab-initio step), "ml" (a machine-learned force-field step) or "unknown" (XDATCAR).
    energy: (F,) eV, the free energy of each step (``e_fr_energy`` / ``free energy TOTEN``, the ML one on ML
        steps), or None when the file has none (XDATCAR).
    kinetic_energy: (F,) eV of the ions as VASP printed it, or None when the file has none.
    timestep: POTIM in fs, or None (see ``times``).
    missing_steps: (M,) int, steps the file counts (an energy, a step header) but stores no positions for
        (OUTCAR with NWRITE = 0, NBLOCK or ML_OUTBLOCK > 1); never guessed.
    source: ``path``, ``format`` ("vasprun" | "outcar" | "xdatcar"), ``compression``, ``vasp_version``,
        ``layout`` (what the frames were read from), ``timestep_from`` ("file" | "argument" | None),
        ``complete`` (False when the file is cut off; its complete steps are kept) and ``notes``.
    """

    times: np.ndarray | None
    steps: np.ndarray
    positions: np.ndarray
    cells: np.ndarray
    numbers: np.ndarray
    origin: np.ndarray
    energy: np.ndarray | None
    kinetic_energy: np.ndarray | None
    timestep: float | None
    missing_steps: np.ndarray
    source: dict

    @property
    def symbols(self):
        """The N chemical symbols."""
        return [ase.data.chemical_symbols[number] for number in self.numbers]

    @property
    def masses(self):
        """(N,) amu."""
        return ase.data.atomic_masses[self.numbers]

    def spacing_problem(self):
        """Why the frames are not one evenly spaced series of steps (uneven step spacing, or steps the file
        counts but holds no positions for between them), or None."""
        if len(self.steps) < 2:
            return None
        spacing = np.diff(self.steps)
        if np.any(spacing != spacing[0]):
            return (f"the frames of {self.source['path']} are not evenly spaced in time (step spacings "
                    f"{_ranges(np.unique(spacing))}): finite differences over them would be wrong")
        inside = self.missing_steps[(self.missing_steps > self.steps[0]) & (self.missing_steps < self.steps[-1])]
        if len(inside):
            return (f"steps {_ranges(inside)} have no positions in {self.source['path']} (NWRITE, NBLOCK or "
                    "ML_OUTBLOCK): finite differences would span them; read vasprun.xml or XDATCAR")
        return None

    def velocity_problem(self):
        """Why velocities cannot be taken from these positions, or None when they can: at least two frames,
        with times, evenly spaced (:meth:`spacing_problem`)."""
        if len(self.steps) < 2:
            return "one frame only: velocities from positions need two"
        if self.times is None:
            return f"{self.source['path']} states no time step: give timestep"
        return self.spacing_problem()

    def velocities(self):
        """(F, N, 3) Angstrom/fs from the positions (:func:`velocities_from_positions`).

        :raises InputError: with :meth:`velocity_problem` when the frames do not allow it.
        """
        problem = self.velocity_problem()
        if problem is not None:
            raise InputError(f"no velocities: {problem}")
        return velocities_from_positions(self.positions, self.times)


def read_trajectory(path, timestep=None):
    """Every stored MD step of a VASP vasprun.xml, OUTCAR or XDATCAR (plain or compressed, by content).

    What is read, per format:

    - vasprun.xml: the ``<calculation>`` blocks (ab-initio steps; a block without ``<scstep>`` is a
      machine-learned step) and the bare ``<structure>`` blocks VASP writes outside them for machine-learned
      steps, each with the ``<energy>`` that follows it. This covers plain AIMD, on-the-fly training (DFT steps
      inside ``<calculation>``, ML steps outside) and production runs with a force field (no
      ``<calculation>`` at all). Named structures (initialpos, finalpos, primitive_cell) are not frames.
      Steps are 1, 2, ... except for ML_MODE = run with ML_OUTBLOCK = k > 1 and VASP >= 6.4.3, which stores
      steps k, 2k, ... (VASP's own rule; older versions wrote every step to vasprun.xml).
    - OUTCAR: one frame per ionic step (ended by "kinetic energy EKIN" in MD, or delimited by VASP 6.3.2+'s
      "Ionic step N" headers): the step's ab-initio POSITION block and "free energy TOTEN" when it has them,
      else its machine-learned "(ML)" block and "free energy ML TOTEN". Steps whose positions were not
      printed (NWRITE = 0, NBLOCK) are listed in ``missing_steps``.
    - XDATCAR (VASP 5+): every configuration, fixed cell or variable cell (header repeated before each),
      numbered as the file numbers them (NBLOCK = 50 gives steps 50, 100, ...).

    Times come from the file's POTIM for MD runs (IBRION = 0) of vasprun.xml and OUTCAR; ``timestep`` (fs) is
    used only when the file does not state one (XDATCAR; a run that is not MD) and must agree with POTIM
    otherwise. A file cut off mid-run keeps its complete steps (``source['complete']`` is False).

    :returns: :class:`VaspTrajectory`.
    :raises MalformedFileError: for a file that is not one of these or holds no complete step.
    :raises InputError: for a ``timestep`` that is not a positive number or disagrees with the file's POTIM.
    """
    path = pathlib.Path(path)
    if timestep is not None and not (isinstance(timestep, (int, float, np.number)) and 0 < timestep < np.inf):
        raise InputError(f"timestep must be a positive number of fs, got {timestep!r}")
    with open(path, "rb") as handle:
        compression = compression_of(handle.read(8))
    with open_vasp_file(path) as handle:
        head = handle.read(4096)
    if not head.strip():
        raise MalformedFileError(path, 1, "a VASP vasprun.xml, OUTCAR or XDATCAR", "an empty file")
    kind = detect_format(head)
    if kind is None:
        _refuse_binary(head, path)
        first = head.decode(VASP_TEXT_ENCODING).lstrip().splitlines()[0][:80]
        raise MalformedFileError(path, 1, "a VASP vasprun.xml, OUTCAR or XDATCAR", first)
    reader = {"vasprun": _VasprunFrames, "outcar": _OutcarFrames, "xdatcar": _XdatcarFrames}[kind]
    with open_vasp_file(path) as handle:
        frames = reader(path).read(handle)
    frames.source.update({"path": str(path), "format": kind, "compression": compression})
    return frames.trajectory(path, timestep)


@dataclasses.dataclass
class _Frames:
    """What a format reader collects: fractional positions are turned into the trajectory in one place."""

    symbols: list
    fractional: list = dataclasses.field(default_factory=list)
    cells: list = dataclasses.field(default_factory=list)
    steps: list = dataclasses.field(default_factory=list)
    origin: list = dataclasses.field(default_factory=list)
    energy: list | None = dataclasses.field(default_factory=list)
    kinetic_energy: list | None = dataclasses.field(default_factory=list)
    missing_steps: list = dataclasses.field(default_factory=list)
    potim: float | None = None  # the file's MD time step, None when it states none or the run is not MD
    source: dict = dataclasses.field(default_factory=dict)

    def trajectory(self, path, timestep):
        if not self.steps:
            raise MalformedFileError(path, None, "at least one complete ionic step with positions", "none")
        cells = np.array(self.cells, dtype=float)
        fractional = np.array(self.fractional, dtype=float)
        if fractional.shape[1:] != (len(self.symbols), 3):
            raise MalformedFileError(path, None, f"{len(self.symbols)} positions per step (atom list)",
                                     f"shape {fractional.shape[1:]}")
        if not (np.all(np.isfinite(cells)) and np.all(np.isfinite(fractional))
                and np.all(np.abs(np.linalg.det(cells)) > 1e-6)):
            raise MalformedFileError(path, None, "finite positions and cells of three independent vectors",
                                     "NaN, infinite or degenerate values")
        if self.potim is not None and timestep is not None and not math.isclose(timestep, self.potim, rel_tol=1e-9):
            raise InputError(f"{path}: timestep {timestep} fs disagrees with the file's POTIM = {self.potim} fs")
        step_time = self.potim if self.potim is not None else timestep
        self.source["timestep_from"] = "file" if self.potim is not None else ("argument" if timestep else None)
        steps = np.array(self.steps, dtype=int)
        numbers = np.array([ase.data.atomic_numbers[symbol] for symbol in self.symbols])
        return VaspTrajectory(
            times=None if step_time is None else (steps - 1) * float(step_time), steps=steps,
            positions=unwrap_positions(np.einsum("fnj,fjk->fnk", fractional, cells), cells), cells=cells,
            numbers=numbers, origin=np.array(self.origin, dtype=str),
            energy=_optional_array(self.energy), kinetic_energy=_optional_array(self.kinetic_energy),
            timestep=None if step_time is None else float(step_time),
            missing_steps=np.array(sorted(self.missing_steps), dtype=int), source=self.source)


def _optional_array(values):
    """A float array of ``values``, or None when there are none or one of them is missing (None)."""
    if not values or any(value is None for value in values):
        return None
    return np.array(values, dtype=float)


def _ranges(numbers):
    """'2-9, 12' for [2, 3, ..., 9, 12]."""
    numbers = sorted(int(n) for n in numbers)
    parts, start = [], None
    for k, number in enumerate(numbers):
        start = number if start is None else start
        if k + 1 == len(numbers) or numbers[k + 1] != number + 1:
            parts.append(str(start) if start == number else f"{start}-{number}")
            start = None
    return ", ".join(parts)


def _version_tuple(version):
    """(6, 4, 3) from '6.4.3  ' (missing parts 0); () when it does not parse."""
    parts = re.findall(r"\d+", version or "")[:3]
    return tuple(int(part) for part in parts) + (0,) * (3 - len(parts)) if parts else ()


class _VasprunFrames:
    """Streaming reader of vasprun.xml steps (memory: one step at a time)."""

    def __init__(self, path):
        self.path = path

    def read(self, handle):
        frames, incar, parameters = _Frames(symbols=[]), {}, {}
        version, complete, depth, root = "", False, 0, None
        awaiting_energy = False  # a bare <structure> (ML step) waits for the <energy> that follows it
        try:
            for event, element in ET.iterparse(handle, events=("start", "end")):
                if event == "start":
                    depth += 1
                    root = element if root is None else root
                    continue
                depth -= 1
                if depth != 1:
                    continue
                tag, name = element.tag, element.get("name")
                if tag == "generator":
                    version = _xml_items(element).get("version", "").strip()
                elif tag == "incar":
                    incar = {key.upper(): value for key, value in _xml_items(element).items()}
                elif tag == "parameters":
                    parameters = {item.get("name"): (item.text or "").strip() for item in element.iter("i")}
                elif tag == "atominfo":
                    frames.symbols = self._symbols(element)
                elif tag == "calculation":
                    awaiting_energy = False
                    structure, energy = element.find("structure"), element.find("energy")
                    if structure is not None and energy is not None:
                        origin = "dft" if element.find("scstep") is not None else "ml"
                        self._frame(frames, structure, origin)
                        self._energy(frames, energy)
                elif tag == "structure" and name is None:
                    self._frame(frames, element, "ml")
                    awaiting_energy = True
                elif tag == "energy" and awaiting_energy:
                    self._energy(frames, element)
                    awaiting_energy = False
                elif tag == "structure" and name == "finalpos":
                    complete = True
                root.clear()  # the children of <modeling> read so far are not needed again
        except ET.ParseError as error:
            frames.source["notes"] = [f"cut off or damaged at line {error.position[0]}: the complete steps before "
                                      "it are kept"]
        if awaiting_energy:  # a last ML step whose energy was cut off
            for name in ("fractional", "cells", "origin"):
                getattr(frames, name).pop()
        frames.steps = self._steps(len(frames.fractional), incar, version)
        if parameters.get("IBRION", "").strip() == "0" and "POTIM" in parameters:
            frames.potim = _positive_float(self.path, parameters["POTIM"], "POTIM")
        frames.source.update({"vasp_version": version, "complete": complete,
                              "layout": _vasprun_layout(frames.origin)})
        frames.source.setdefault("notes", [])
        return frames

    def _symbols(self, atominfo):
        rows = atominfo.findall("array[@name='atoms']/set/rc")
        return [_symbol(self.path, None, (row.findtext("c") or "")) for row in rows]

    def _frame(self, frames, structure, origin):
        if not frames.symbols:
            raise MalformedFileError(self.path, None, "<atominfo> before the first step", "a step first")
        basis = structure.find("crystal/varray[@name='basis']")
        positions = structure.find("varray[@name='positions']")
        if basis is None or positions is None:
            raise MalformedFileError(self.path, None, f"a lattice and positions in step {len(frames.cells) + 1}",
                                     "a <structure> without them")
        frames.cells.append(self._vectors(basis, 3, len(frames.cells) + 1))
        frames.fractional.append(self._vectors(positions, len(frames.symbols), len(frames.cells)))
        frames.origin.append(origin)

    def _energy(self, frames, energy):
        items = _xml_items(energy)
        try:
            frames.energy.append(float(items["e_fr_energy"]) if "e_fr_energy" in items else None)
            frames.kinetic_energy.append(float(items["kinetic"]) if "kinetic" in items else None)
        except ValueError as error:
            raise MalformedFileError(self.path, None, f"numbers in the energies of step {len(frames.cells)}",
                                     str(error)) from None

    def _vectors(self, varray, count, step):
        try:
            rows = [[float(x) for x in (v.text or "").split()] for v in varray.findall("v")]
        except ValueError as error:
            raise MalformedFileError(self.path, None, f"numbers in step {step}", str(error)) from None
        if len(rows) != count or any(len(row) != 3 for row in rows):
            raise MalformedFileError(self.path, None, f"{count} rows of 3 numbers in step {step}",
                                     f"{len(rows)} rows")
        return rows

    @staticmethod
    def _steps(count, incar, version):
        """Step numbers: 1..F, or k, 2k, ... for ML_MODE = run with ML_OUTBLOCK = k on VASP >= 6.4.3."""
        stride = 1
        mode = incar.get("ML_MODE", "").strip().lower()
        if mode == "run" and _version_tuple(version) >= (6, 4, 3):
            try:
                stride = max(1, int(incar.get("ML_OUTBLOCK", "1")))
            except ValueError:
                stride = 1
        return list(range(stride, stride * count + 1, stride))


def _xml_items(element):
    """{name: text} of the ``<i>`` children of an element."""
    return {item.get("name"): (item.text or "") for item in element.findall("i")}


def _vasprun_layout(origin):
    kinds = set(origin)
    if kinds == {"dft"}:
        return "<calculation> blocks (ab-initio MD)"
    if "dft" in kinds:
        return "<calculation> blocks (ab-initio steps) and bare <structure> blocks (machine-learned steps)"
    return "machine-learned steps (no ab-initio <calculation> block)" if kinds else "no steps"


def _positive_float(path, text, what):
    try:
        value = float(text)
    except ValueError:
        raise MalformedFileError(path, None, f"a number for {what}", text) from None
    if not (math.isfinite(value) and value > 0):
        raise MalformedFileError(path, None, f"a positive {what}", text)
    return value


class _OutcarFrames:
    """Streaming reader of the ionic steps of an OUTCAR (ab-initio and machine-learned steps)."""

    _ML_ENERGY = "free  energy ML TOTEN"
    _DFT_ENERGY = "free  energy   TOTEN"
    _STEP_HEADER = re.compile(r"-+ Ionic step\s+(\d+)\s+-+")
    _ITERATION = re.compile(r"-+ Iteration\s+\d+\(")
    _TAGS = {"IBRION": r"^\s*IBRION\s*=\s*(-?\d+)", "POTIM": r"^\s*POTIM\s*=\s*([-+0-9.eE]+)",
             "NWRITE": r"^\s*NWRITE\s*=\s*(\d+)", "NBLOCK": r"^\s*NBLOCK\s*=\s*(\d+)"}

    def __init__(self, path):
        self.path = path

    def _starts_steps(self, stripped):
        return bool(self._STEP_HEADER.fullmatch(stripped) or self._ITERATION.match(stripped)
                    or (stripped.startswith("POSITION") and "TOTAL-FORCE" in stripped))

    def read(self, handle):
        lines = enumerate(io.TextIOWrapper(handle, encoding=VASP_TEXT_ENCODING, newline=None), start=1)
        header, first = [], None
        for lineno, line in lines:  # the start-up part: species, counts, tags, first cell
            if self._starts_steps(line.strip()):
                first = (lineno, line)
                break
            header.append(line.rstrip("\n"))
        start = _OutcarParser("\n".join(header), self.path)
        n_ions, nions_line = start._int_after("NIONS =")
        counts = start._ints_after_equals(start._find_first("ions per type ="), "the numbers of ions per type")
        if sum(counts) != n_ions:
            raise MalformedFileError(self.path, None, f"ions per type adding up to NIONS = {n_ions}", str(counts))
        species = start._species(nions_line, len(counts))
        frames = _Frames(symbols=[symbol for symbol, count in zip(species, counts) for _ in range(count)])
        tags = self._tags(header)
        lattice = start._find_last("direct lattice vectors")
        self.cell = [start._floats(lattice + 1 + k, 6, "a lattice vector row (6 numbers)", keep=3) for k in range(3)]
        self.step, self.number, self.headers, self.cut = {}, 0, False, False
        self.md = tags.get("IBRION") == 0
        for lineno, line in self._chain(first, lines):
            self._line(frames, lineno, line.strip(), lines, n_ions)
            if self.cut:
                break
        complete = self._finish(frames)
        frames.source.update({"vasp_version": start._version(), "complete": complete,
                              "layout": "OUTCAR ionic steps (the ab-initio POSITION block of a step, its "
                                        "machine-learned '(ML)' block when it has no ab-initio one)"})
        if frames.missing_steps:
            frames.source["notes"].append(
                f"steps {_ranges(frames.missing_steps)} have no positions in this OUTCAR (NWRITE = "
                f"{tags.get('NWRITE', '?')}, NBLOCK = {tags.get('NBLOCK', '?')}): they are not guessed")
        if self.md and "POTIM" in tags:
            frames.potim = tags["POTIM"]
        return frames

    @staticmethod
    def _chain(first, lines):
        if first is not None:
            yield first
        yield from lines

    def _line(self, frames, lineno, stripped, lines, n_ions):
        header = self._STEP_HEADER.fullmatch(stripped)
        if header:
            if self.headers:
                self._close(frames)
            self.headers, self.number = True, int(header.group(1))
        elif stripped.startswith("direct lattice vectors"):
            rows = [next(lines, (lineno, "")) for _ in range(3)]
            self.cell = [_parse_floats(self.path, number, row, 6, "a lattice vector row (6 numbers)")[:3]
                         for number, row in rows]
        elif stripped.startswith("POSITION") and "TOTAL-FORCE" in stripped:
            next(lines, None)  # dashes
            rows = [next(lines, (lineno, "")) for _ in range(n_ions)]
            if any(not row.strip() or set(row.strip()) == {"-"} for _, row in rows):
                self.cut = True  # cut off inside the block
                return
            positions = [_parse_floats(self.path, number, row, 6, "3 positions and 3 forces of an ion")[:3]
                         for number, row in rows]
            self.step["ml" if "(ML)" in stripped else "dft"] = (positions, self.cell)
        elif stripped.startswith((self._ML_ENERGY, self._DFT_ENERGY)):
            kind = "ml" if stripped.startswith(self._ML_ENERGY) else "dft"
            self.step[f"energy_{kind}"] = _parse_floats(self.path, lineno, stripped.partition("=")[2].replace(
                "eV", ""), 1, "an energy", stripped)[0]
            if kind == "dft" and not self.headers and not self.md:  # a relaxation step ends with its energy
                self.number += 1
                self._close(frames)
        elif stripped.startswith("kinetic energy EKIN"):
            self.step["kinetic"] = _parse_floats(self.path, lineno, stripped.partition("=")[2], 1,
                                                 "the kinetic energy", stripped)[0]
            if not self.headers:  # an MD step ends with its kinetic energy
                self.number += 1
                self._close(frames)

    def _tags(self, header):
        """IBRION, POTIM, NWRITE, NBLOCK from the parameter listing of the start-up part."""
        tags = {}
        for line in header:
            for key, pattern in self._TAGS.items():
                match = re.match(pattern, line)
                if match:
                    try:
                        tags[key] = float(match.group(1)) if key == "POTIM" else int(match.group(1))
                    except ValueError:
                        continue
        if not (math.isfinite(tags.get("POTIM", 1.0)) and tags.get("POTIM", 1.0) > 0):
            tags.pop("POTIM")
        return tags

    def _close(self, frames):
        """End of step ``self.number``: its ab-initio frame, else its ML frame, else a missing step."""
        step, self.step = self.step, {}
        kind = "dft" if "dft" in step else ("ml" if "ml" in step else None)
        if kind is None:
            if step:
                frames.missing_steps.append(self.number)
            return
        positions, cell = step[kind]
        volume = np.linalg.det(np.array(cell, dtype=float)) if np.all(np.isfinite(cell)) else np.nan
        if not abs(volume) > 1e-6:  # also NaN: the step's positions could not be put in its cell
            raise MalformedFileError(self.path, None, f"lattice vectors spanning a volume in ionic step {self.number}",
                                     f"a cell of volume {volume:.3g} A^3")
        frames.fractional.append(np.linalg.solve(np.array(cell).T, np.array(positions).T).T)
        frames.cells.append(cell)
        frames.steps.append(self.number)
        frames.origin.append(kind)
        frames.energy.append(step.get(f"energy_{kind}"))
        frames.kinetic_energy.append(step.get("kinetic"))

    def _finish(self, frames):
        """The step in progress at the end of the file: kept when the run numbers its steps and the step has
        positions with their energy (the last step of a run); dropped as cut off otherwise. Returns whether
        the file looks complete."""
        frames.source["notes"] = []
        step = self.step
        ended = any(kind in step and f"energy_{kind}" in step for kind in ("dft", "ml"))
        if self.headers and ended and not self.cut:
            self._close(frames)
            return True
        if step or self.cut:
            frames.source["notes"].append(f"cut off in step {self.number + (0 if self.headers else 1)}: the "
                                          f"{len(frames.steps)} complete steps before it are kept")
            return False
        if self.headers and self.number and self.number not in frames.steps + frames.missing_steps:
            frames.source["notes"].append(f"cut off at the start of step {self.number}")
            return False
        return True


class _XdatcarFrames:
    """Reader of a VASP 5+ XDATCAR: fixed cell (header once) or variable cell (header before each frame)."""

    def __init__(self, path):
        self.path = path

    def read(self, handle):
        text = _decode(handle.read(), self.path)
        lines = text.splitlines()
        frames, cell, index = None, None, 0
        complete = True
        while index < len(lines):
            if not lines[index].strip():
                index += 1
                continue
            if not lines[index].strip().lower().startswith(("direct configuration", "cartesian configuration")):
                symbols, cell, index = self._header(lines, index)
                if frames is None:
                    frames = _Frames(symbols=symbols)
                elif symbols != frames.symbols:
                    raise MalformedFileError(self.path, index, f"the atoms {' '.join(frames.symbols[:1])}... "
                                             "of the first header", "other atoms")
                continue
            words = lines[index].replace("=", " ").split()
            try:
                number = int(words[-1])
            except (ValueError, IndexError):
                raise MalformedFileError(self.path, index + 1, "'Direct configuration= N'", lines[index]) from None
            n_atoms = len(frames.symbols)
            block = lines[index + 1:index + 1 + n_atoms]
            if len(block) < n_atoms:
                complete = False
                break
            fractional = [_parse_floats(self.path, index + 2 + k, row, 3, "3 fractional coordinates")
                          for k, row in enumerate(block)]
            if lines[index].strip().lower().startswith("cartesian"):
                fractional = np.linalg.solve(np.array(cell).T, np.array(fractional).T).T.tolist()
            if frames.steps and number <= frames.steps[-1]:
                raise MalformedFileError(self.path, index + 1, f"a configuration number above {frames.steps[-1]}",
                                         str(number))
            frames.fractional.append(fractional)
            frames.cells.append(cell)
            frames.steps.append(number)
            frames.origin.append("unknown")
            index += 1 + n_atoms
        if frames is None:
            raise MalformedFileError(self.path, 1, "an XDATCAR header", "none")
        frames.energy = frames.kinetic_energy = None
        variable = len({tuple(np.ravel(c)) for c in frames.cells}) > 1
        frames.source.update({"vasp_version": "", "complete": complete,
                              "layout": f"XDATCAR configurations ({'variable' if variable else 'fixed'} cell)",
                              "notes": [] if complete else [f"cut off in the configuration after step "
                                                            f"{frames.steps[-1] if frames.steps else 0}"]})
        return frames

    def _header(self, lines, index):
        """(symbols, cell, index after the header) of the 7-line header starting at ``index``."""
        block = lines[index:index + 7]
        if len(block) < 7:
            raise MalformedFileError(self.path, index + len(block) + 1, "a complete XDATCAR header", "end of file")
        scale = _parse_floats(self.path, index + 2, block[1], 1, "a scale factor (one number)")[0]
        cell = np.array([_parse_floats(self.path, index + 3 + k, block[2 + k], 3, "a lattice vector (3 numbers)")
                         for k in range(3)])
        if scale < 0:  # VASP: a negative scale is the volume
            cell *= (-scale / abs(np.linalg.det(cell))) ** (1 / 3)
        elif scale > 0:
            cell *= scale
        names = [_symbol(self.path, index + 6, word.split("_")[0]) for word in block[5].split()]
        try:
            counts = [int(word) for word in block[6].split()]
        except ValueError:
            raise MalformedFileError(self.path, index + 7, "the numbers of atoms per species", block[6]) from None
        if len(counts) != len(names) or min(counts, default=0) <= 0:
            raise MalformedFileError(self.path, index + 7, f"{len(names)} positive atom counts", block[6])
        return [name for name, count in zip(names, counts) for _ in range(count)], cell.tolist(), index + 7


def unwrap_positions(positions, cells):
    """Cartesian positions without jumps across the cell faces: the one unwrapping of the package.

    :param positions: (F, N, 3) Cartesian Angstrom, as written (folded into the cell, or not).
    :param cells: (F, 3, 3) lattice vectors (rows), Angstrom; may change along the run. A frame whose cell has
        no volume (a molecule without a cell) is left as it is.
    :returns: (F, N, 3) Angstrom: frame 0 unchanged; each later frame moved by whole lattice vectors of its own
        cell so that every step from the previous (unwrapped) frame is the minimum image. Positions that are
        already continuous come back unchanged. Exact while no atom moves by half a cell between two frames.
    """
    positions = np.array(positions, dtype=float)
    cells = np.asarray(cells, dtype=float)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise InputError(f"positions must have shape (F, N, 3), got {positions.shape}")
    if cells.shape != (positions.shape[0], 3, 3):
        raise InputError(f"cells must have shape ({positions.shape[0]}, 3, 3), got {cells.shape}")
    if len(positions) < 2:
        return positions
    periodic = np.abs(np.linalg.det(cells)) > 1e-12
    if np.all(periodic) and np.all(cells == cells[0]):  # one cell: all frames at once
        inverse = np.linalg.inv(cells[0])
        jumps = np.round(np.diff(positions, axis=0) @ inverse)
        positions[1:] -= np.cumsum(jumps, axis=0) @ cells[0]
        return positions
    for f in range(1, len(positions)):
        if periodic[f]:
            step = positions[f] - positions[f - 1]
            positions[f] -= np.round(np.linalg.solve(cells[f].T, step.T).T) @ cells[f]
    return positions


def velocities_from_positions(positions, times):
    """Velocities by central differences of unwrapped positions.

    :param positions: (F, N, 3) unwrapped Cartesian positions, Angstrom; F >= 2.
    :param times: (F,) fs, evenly spaced and increasing (frames at other spacings are refused: a finite
        difference across them would mix time steps).
    :returns: (F, N, 3) Angstrom/fs: second-order central differences inside, first-order one-sided
        differences at the first and last frame. The error is O((spacing)^2 * d3x/dt3): store every step (or a
        small stride) when the velocities feed an IR spectrum.
    """
    positions = np.asarray(positions, dtype=float)
    times = np.asarray(times, dtype=float)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise InputError(f"positions must have shape (F, N, 3), got {positions.shape}")
    if times.shape != (positions.shape[0],):
        raise InputError(f"times must have shape ({positions.shape[0]},), got {times.shape}")
    if positions.shape[0] < 2:
        raise InputError("velocities from positions need at least two frames")
    spacing = np.diff(times)
    if np.any(spacing <= 0) or not np.allclose(spacing, spacing[0], rtol=1e-9, atol=0):
        raise InputError("velocities from positions need evenly spaced, increasing times")
    return np.gradient(positions, times, axis=0, edge_order=1)


def temperature_from_kinetic(kinetic_energy, n_atoms):
    """Instantaneous temperature (K) from the kinetic energy (eV) with 3N - 3 degrees of freedom (VASP's
    convention: centre-of-mass motion removed)."""
    dof = 3 * int(n_atoms) - 3
    if dof <= 0:
        raise InputError("a temperature needs at least two atoms")
    return 2.0 * np.asarray(kinetic_energy, dtype=float) / (dof * units.BOLTZMANN_EV)


def kinetic_energy_of(velocities, masses):
    """(F,) eV from velocities (F, N, 3) Angstrom/fs and masses (N,) amu."""
    return 0.5 * np.einsum("n,fnk,fnk->f", masses, velocities, velocities) * units.AMU_A2_PER_FS2_IN_EV


def read_final_velocities(contcar):
    """The velocity block of a CONTCAR (written by VASP at the end of MD), Angstrom/fs, or None.

    :returns: (N, 3) Cartesian Angstrom/fs in the file's atom order, or None when the file has no
        velocity block.
    """
    from ase import units as ase_units

    atoms = ase.io.read(contcar, format="vasp")
    if not atoms.has("momenta"):
        return None
    # ASE multiplied the file's Angstrom/fs by its own Ang/fs factor: divide by the same factor (exact).
    return atoms.get_velocities() / (ase_units.Ang / ase_units.fs)

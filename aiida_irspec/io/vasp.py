"""Born effective charges, dielectric tensor and structure from VASP linear-response outputs.

Reads the OUTCAR (VASP 5.4 and 6 formats) and vasprun.xml of a ``LEPSILON``/``LCALCEPS`` run, plain or
gzipped, and detects which one a file is from its content, not its name. No AiiDA import.

Convention: ``Z[i, a, b] = dP_a / dx_{i,b}`` in |e|, shape (N, 3, 3): ``a`` is the electric field /
polarization direction, ``b`` the displacement direction of ion ``i``. VASP prints each ion's block with
rows = field direction, in the OUTCAR and in the ``born_charges`` sets of vasprun.xml alike, so both are
read as printed and never transposed.

Every input that is not a complete result raises :class:`~aiida_irspec.exceptions.MalformedFileError`
naming the file, the 1-based line (``None`` when the fault is not at one line) and what was expected.
"""

import dataclasses
import gzip
import hashlib
import math
import pathlib
import re
import xml.parsers.expat
import zlib

import ase
import ase.data
import ase.io
import numpy as np

from aiida_irspec.exceptions import MalformedFileError

__all__ = [
    "BornChargesRecord",
    "parse_born_charges",
    "read_born_charges",
    "read_outcar_born_charges",
    "read_structure",
    "read_vasprun_born_charges",
]

_GZIP_MAGIC = b"\x1f\x8b"
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
    """Parse the bytes ``data`` of a VASP OUTCAR or vasprun.xml; ``path`` is used for messages and the source.

    expect: None (detect), "outcar" or "vasprun" (anything else in the file is then an error).
    """
    sha256 = hashlib.sha256(data).hexdigest()
    text = _decode(_decompress(data, path), path)
    kind = _detect_format(text, path)
    if expect is not None and kind != expect:
        raise MalformedFileError(path, 1, f"a VASP {expect}", f"a VASP {kind}")
    parser = _OutcarParser if kind == "outcar" else _VasprunParser
    record = parser(text, path).parse()
    record.source["sha256"] = sha256
    return record


def read_structure(path, index=-1):
    """The structure in a VASP OUTCAR / vasprun.xml (the one the Born charges belong to), or, for any other
    file ASE reads (POSCAR, CONTCAR, extxyz, cif, ...), the frame ``index`` of it, as an ase.Atoms."""
    path = pathlib.Path(path)
    raw = _decompress(path.read_bytes(), path)
    head = raw[:4096].decode("latin-1")
    if _looks_like_vasprun(head) or _looks_like_outcar(head):
        parser = _VasprunParser if _looks_like_vasprun(head) else _OutcarParser
        return parser(_decode(raw, path), path).parse_structure()
    try:
        return ase.io.read(path, index=index)
    except (OSError, ValueError, KeyError, IndexError, StopIteration, ase.io.formats.UnknownFileTypeError) as error:
        raise MalformedFileError(path, None, "a structure file that ASE can read", str(error)) from error


# ---------------------------------------------------------------------------------------------------------
# bytes -> text -> format


def _decompress(data, path):
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise MalformedFileError(path, None, "a complete gzip stream", str(error)) from error


def _decode(data, path):
    if not data.strip():
        raise MalformedFileError(path, 1, "a VASP OUTCAR or vasprun.xml", "an empty file")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise MalformedFileError(path, data.count(b"\n", 0, nul) + 1, "text", "binary data (NUL byte)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise MalformedFileError(path, line, "ASCII/UTF-8 text", f"byte {data[error.start]:#04x}") from error


def _looks_like_vasprun(head):
    return head.lstrip().startswith("<?xml") or "<modeling>" in head[:1000]


def _looks_like_outcar(head):
    return head.lstrip().startswith("vasp.")


def _detect_format(text, path):
    head = text[:4096]
    if _looks_like_vasprun(head):
        return "vasprun"
    if _looks_like_outcar(head):
        return "outcar"
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    raise MalformedFileError(path, 1, "a VASP OUTCAR (first line ' vasp.X.Y.Z ...') or vasprun.xml",
                             first[:80])


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
            values = [int(word) for word in self.lines[index].split("=", 1)[1].split()]
        except ValueError:
            raise MalformedFileError(self.path, index + 1, what, self.lines[index].strip()) from None
        if not values or min(values) <= 0:
            raise MalformedFileError(self.path, index + 1, what, self.lines[index].strip())
        return values

    def _species(self, stop, n_types):
        """One element per POTCAR, from VRHFIN (``VRHFIN =Zr: ...``), else TITEL (``TITEL = PAW_PBE Zr_sv ...``)."""
        for key in ("VRHFIN =", "TITEL  ="):
            found = [(index, line.split("=", 1)[1]) for index, line in enumerate(self.lines[:stop]) if key in line]
            if key == "TITEL  =":
                found = [(index, value.split()[1] if len(value.split()) > 1 else value) for index, value in found]
            if found:
                if len(found) != n_types:
                    raise MalformedFileError(self.path, found[-1][0] + 1,
                                             f"{n_types} POTCAR '{key.split()[0]}' lines (one per ion type)",
                                             f"{len(found)} lines")
                return [_symbol(self.path, index + 1, value) for index, value in found]
        raise MalformedFileError(self.path, None, "POTCAR 'VRHFIN' or 'TITEL' lines naming the species", "none")


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


def _parse_xml(text, path):
    """A tree of _Element of the XML text, without the bulky sections in _SKIPPED_XML."""
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
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as error:
        cut_off = error.lineno >= len(text.rstrip().splitlines())
        found = "end of file (cut off)" if cut_off else xml.parsers.expat.errors.messages[error.code]
        raise MalformedFileError(path, error.lineno, "well-formed XML", found) from None
    return root


class _VasprunParser:
    def __init__(self, text, path):
        self.path = path
        self.root = _parse_xml(text, path)
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

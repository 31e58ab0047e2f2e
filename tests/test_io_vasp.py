"""The VASP readers on real outputs (VASP 6.1 ZrO2 set, VASP 5.4 run of aiida-vasp) and on broken copies."""

import gzip
import hashlib
import time

import ase.io
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiida_irspec.exceptions import MalformedFileError
from aiida_irspec.io.vasp import (
    parse_born_charges,
    read_born_charges,
    read_outcar_born_charges,
    read_structure,
    read_vasprun_born_charges,
)

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def bec_dir(shared_data):
    """The VASP 5.4.4 LEPSILON run of aiida-vasp's test data (OUTCAR + vasprun.xml of the same run)."""
    return shared_data / "aiida-vasp" / "born_effective_charge"


@pytest.fixture(scope="module")
def outcar54_lines(bec_dir):
    return (bec_dir / "OUTCAR").read_text().splitlines(keepends=True)


def header_index(lines, prefix):
    """0-based index of the last line starting (after blanks) with prefix."""
    return max(k for k, line in enumerate(lines) if line.lstrip().startswith(prefix))


def direction_blocks(lines, n_ions):
    """VASP's per-field-direction intermediate blocks 'POSITION  DIRECTION k  BORN EFFECTIVE CHARGE':
    (3, N, 3), [k, i, b] = the response of ion i along b to the field along k (VASP's own labelling)."""
    blocks = []
    for k in (1, 2, 3):
        start = header_index(lines, f"POSITION         DIRECTION {k}")
        blocks.append([[float(x) for x in lines[start + 2 + i].split()[3:6]] for i in range(n_ions)])
    return np.array(blocks)


def test_all_zro2_outcars(zro2_outcars, zro2_dir):
    """60 VASP 6.1 OUTCARs: 96 ions, acoustic sum rule, dielectric, structure = POSCAR.N, source."""
    assert len(zro2_outcars) == 60
    for path in zro2_outcars:
        record = read_born_charges(path)
        assert record.born_charges.shape == (96, 3, 3)
        assert np.abs(record.born_charges.sum(axis=0)).max() < 1e-3
        assert record.dielectric.shape == (3, 3)
        assert np.all(np.diag(record.dielectric) > 1)
        poscar = ase.io.read(zro2_dir / path.name.replace("OUTCAR", "POSCAR").removesuffix(".gz"), format="vasp")
        assert record.atoms.get_chemical_symbols() == poscar.get_chemical_symbols()
        np.testing.assert_allclose(record.atoms.cell[:], poscar.cell[:], atol=1e-8)
        np.testing.assert_allclose(record.atoms.positions, poscar.positions, atol=1e-7)
        assert record.source == {"path": str(path), "format": "outcar", "vasp_version": "6.1.0",
                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    symbols = np.array(record.atoms.get_chemical_symbols())
    diagonal = np.einsum("iaa->ia", record.born_charges).mean(axis=1)
    assert 4.5 < diagonal[symbols == "Zr"].mean() < 6.0
    assert -3.0 < diagonal[symbols == "O"].mean() < -2.25


def test_outcar_parse_is_fast(zro2_outcars):
    """One 12.6k-line gzipped OUTCAR in well under 0.1 s."""
    best = min(_timed(read_outcar_born_charges, zro2_outcars[0]) for _ in range(3))
    assert best < 0.1


def _timed(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def test_plain_and_gzipped_equal(zro2_outcars, tmp_path):
    plain = tmp_path / "OUTCAR"
    plain.write_bytes(gzip.decompress(zro2_outcars[0].read_bytes()))
    a, b = read_born_charges(plain), read_born_charges(zro2_outcars[0])
    np.testing.assert_array_equal(a.born_charges, b.born_charges)
    np.testing.assert_array_equal(a.dielectric, b.dielectric)
    assert a.source["sha256"] != b.source["sha256"]


def test_gzipped_vasprun(bec_dir, tmp_path):
    packed = tmp_path / "vasprun.xml.gz"
    packed.write_bytes(gzip.compress((bec_dir / "vasprun.xml").read_bytes()))
    a, b = read_born_charges(packed), read_vasprun_born_charges(bec_dir / "vasprun.xml")
    assert a.source["format"] == "vasprun"
    np.testing.assert_array_equal(a.born_charges, b.born_charges)


def test_vasp54_outcar_agrees_with_vasprun(bec_dir):
    """Same run, two files: the OUTCAR (5 decimals) and vasprun.xml (8 decimals) agree to the printed digits,
    with no transposition in between."""
    outcar = read_outcar_born_charges(bec_dir / "OUTCAR")
    vasprun = read_vasprun_born_charges(bec_dir / "vasprun.xml")
    assert outcar.source["vasp_version"] == vasprun.source["vasp_version"] == "5.4.4.18Apr17-6-g9f103f2a35"
    assert (outcar.source["format"], vasprun.source["format"]) == ("outcar", "vasprun")
    assert outcar.atoms.get_chemical_symbols() == vasprun.atoms.get_chemical_symbols()
    assert len(outcar.atoms) == 26
    np.testing.assert_allclose(outcar.atoms.cell[:], vasprun.atoms.cell[:], atol=1e-8)
    np.testing.assert_allclose(outcar.atoms.positions, vasprun.atoms.positions, atol=1e-6)
    np.testing.assert_allclose(outcar.born_charges, vasprun.born_charges, rtol=0, atol=5.01e-6)
    np.testing.assert_allclose(outcar.dielectric, vasprun.dielectric, rtol=0, atol=5.01e-7)
    transposed = vasprun.born_charges.transpose(0, 2, 1)
    assert np.abs(outcar.born_charges - transposed).max() > 0.1


def test_orientation_rows_are_field_direction(zro2_outcars, bec_dir):
    """VASP labels its per-field intermediate blocks 'DIRECTION k' (the field / polarization direction a);
    row a of each final block is that block's response, so Z[i, a, b] = dP_a / dx_{i,b} as read. The
    matrices are far from symmetric, so the transposed reading would fail this check."""
    for path in (zro2_outcars[25], bec_dir / "OUTCAR"):
        record = read_born_charges(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            lines = handle.readlines()
        by_field = direction_blocks(lines, len(record.atoms))  # (3, N, 3): [a, i, b]
        as_read = record.born_charges.transpose(1, 0, 2)  # [a, i, b]
        asymmetry = np.abs(record.born_charges - record.born_charges.transpose(0, 2, 1)).max()
        assert asymmetry > 0.1
        assert np.abs(as_read - by_field).max() < 0.02 < asymmetry / 5
        assert np.abs(record.born_charges.transpose(0, 2, 1).transpose(1, 0, 2) - by_field).max() > 0.1


@pytest.mark.parametrize("name", ["lepsilon", "localfield"])
def test_other_vasprun_files(shared_data, name):
    path = shared_data / "aiida-vasp" / name / "vasprun.xml"
    record = read_born_charges(path)
    assert record.source["format"] == "vasprun" and record.source["vasp_version"] == "5.4.1"
    assert record.born_charges.shape == (len(record.atoms), 3, 3) == (8, 3, 3)
    assert record.dielectric.shape == (3, 3)


def test_read_structure(zro2_dir, bec_dir):
    poscar = read_structure(zro2_dir / "POSCAR.1")
    outcar = read_structure(zro2_dir / "OUTCAR.1.gz")
    np.testing.assert_allclose(outcar.positions, poscar.positions, atol=1e-7)
    vasprun = read_structure(bec_dir / "vasprun.xml")
    assert vasprun.get_chemical_formula() == read_structure(bec_dir / "OUTCAR").get_chemical_formula()


# ---------------------------------------------------------------------------------------------------------
# malformed copies of the real files


def _write(tmp_path, lines, name="OUTCAR"):
    path = tmp_path / name
    path.write_text("".join(lines))
    return path


def _raises(path, line, expected_part):
    with pytest.raises(MalformedFileError) as info:
        read_born_charges(path)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert expected_part in info.value.expected
    assert str(path) in str(info.value)
    return info.value


def test_truncated_born_block(outcar54_lines, tmp_path):
    start = header_index(outcar54_lines, "BORN EFFECTIVE CHARGES (")
    cut = start + 2 + 4 * 10 + 2  # header, dashes, 10 ions, 'ion 11' and its first row
    path = _write(tmp_path, outcar54_lines[:cut])
    error = _raises(path, cut + 1, "row 2 of the Born charge of ion 11")
    assert error.found == "end of file"


def test_block_with_too_few_ions(outcar54_lines, tmp_path):
    start = header_index(outcar54_lines, "BORN EFFECTIVE CHARGES (")
    last_ion = start + 2 + 4 * 25
    lines = outcar54_lines[:last_ion] + outcar54_lines[last_ion + 4:]
    _raises(_write(tmp_path, lines), last_ion + 1, "'ion 26' (block of 26 ions = NIONS)")


def test_block_with_too_many_ions(outcar54_lines, tmp_path):
    start = header_index(outcar54_lines, "BORN EFFECTIVE CHARGES (")
    end = start + 2 + 4 * 26
    extra = [" ion   27\n", *outcar54_lines[end - 3:end]]
    _raises(_write(tmp_path, outcar54_lines[:end] + extra + outcar54_lines[end:]), end + 1, "end of the Born")


def test_no_born_block(outcar54_lines, tmp_path):
    start = header_index(outcar54_lines, "BORN EFFECTIVE CHARGES (")
    error = _raises(_write(tmp_path, outcar54_lines[:start]), None, "BORN EFFECTIVE CHARGES")
    assert "cut off" in error.found


@pytest.mark.parametrize("bad", ["5.4x557", "*********", "nan", "--"])
def test_non_numeric_field(outcar54_lines, tmp_path, bad):
    start = header_index(outcar54_lines, "BORN EFFECTIVE CHARGES (")
    target = start + 2 + 4 * 2 + 2  # ion 3, row 2
    words = outcar54_lines[target].split()
    lines = list(outcar54_lines)
    lines[target] = f"    {words[0]}  {words[1]}  {bad}  {words[3]}\n"
    _raises(_write(tmp_path, lines), target + 1, "row 2 of the Born charge of ion 3")


def test_nions_disagrees_with_ions_per_type(outcar54_lines, tmp_path):
    index = next(k for k, line in enumerate(outcar54_lines) if "ions per type =" in line)
    lines = list(outcar54_lines)
    lines[index] = lines[index].replace("16", "15")
    _raises(_write(tmp_path, lines), index + 1, "adding up to NIONS = 26")


def test_bad_dielectric_row(outcar54_lines, tmp_path):
    start = header_index(outcar54_lines, "MACROSCOPIC STATIC DIELECTRIC TENSOR (including")
    lines = list(outcar54_lines)
    lines[start + 3] = "           0.000000     5.894056\n"
    _raises(_write(tmp_path, lines), start + 4, "dielectric tensor")


def test_dielectric_prefers_dft_local_fields(outcar54_lines, tmp_path):
    """With both, the tensor with DFT local-field effects wins even when an RPA one comes later; a run with only
    the RPA (LRPA = .TRUE.) one gets that; the ionic contribution is never taken."""
    start = header_index(outcar54_lines, "MACROSCOPIC STATIC DIELECTRIC TENSOR (including")
    block = outcar54_lines[start:start + 5]
    rpa = [block[0].replace("in DFT", "in RPA (Hartree)"), block[1], "  1.0 0.0 0.0\n", "  0.0 2.0 0.0\n",
           "  0.0 0.0 3.0\n"]
    ionic = [" MACROSCOPIC STATIC DIELECTRIC TENSOR IONIC CONTRIBUTION\n", block[1], "  9.0 0.0 0.0\n",
             "  0.0 9.0 0.0\n", "  0.0 0.0 9.0\n"]
    both = _write(tmp_path, outcar54_lines[:start + 5] + rpa + ionic + outcar54_lines[start + 5:])
    np.testing.assert_allclose(np.diag(read_born_charges(both).dielectric), [5.894056, 5.894056, 6.171821])
    only_rpa = [line.replace("in DFT", "in RPA (Hartree)") for line in outcar54_lines]
    only_rpa[start + 2:start + 5] = rpa[2:]
    rpa_path = tmp_path / "rpa"
    rpa_path.mkdir()
    np.testing.assert_allclose(np.diag(read_born_charges(_write(rpa_path, only_rpa)).dielectric), [1, 2, 3])


def test_glued_negative_numbers(outcar54_lines, tmp_path):
    """VASP prints wide negative numbers without a separating blank ('-10.12345-11.54321'): still read."""
    start = header_index(outcar54_lines, "BORN EFFECTIVE CHARGES (")
    lines = list(outcar54_lines)
    lines[start + 3] = "    1   -10.12345-11.54321     0.07348\n"
    record = read_born_charges(_write(tmp_path, lines))
    np.testing.assert_array_equal(record.born_charges[0, 0], [-10.12345, -11.54321, 0.07348])


def test_empty_binary_unknown_and_broken_gzip(tmp_path, zro2_outcars, zro2_dir):
    empty = tmp_path / "OUTCAR"
    empty.write_text("\n  \n")
    assert _raises(empty, 1, "OUTCAR").found == "an empty file"
    binary = tmp_path / "OUTCAR.bin"
    binary.write_bytes(b"vasp.6\nabc\n\x00\x01\x02")
    _raises(binary, 3, "text")
    poscar = _raises(zro2_dir / "POSCAR.1", 1, "OUTCAR")
    assert poscar.found == "test"
    broken = tmp_path / "OUTCAR.gz"
    broken.write_bytes(zro2_outcars[0].read_bytes()[:20000])
    _raises(broken, None, "gzip")


def test_wrong_reader_for_the_format(bec_dir):
    with pytest.raises(MalformedFileError, match="expected a VASP outcar"):
        read_outcar_born_charges(bec_dir / "vasprun.xml")


def test_vasprun_truncated(bec_dir, tmp_path):
    lines = (bec_dir / "vasprun.xml").read_text().splitlines(keepends=True)
    start = header_index(lines, '<array name="born_charges"')
    path = _write(tmp_path, lines[:start + 10], "vasprun.xml")
    error = _raises(path, start + 11, "well-formed XML")
    assert "cut off" in error.found


def test_vasprun_non_numeric_and_missing_set(bec_dir, tmp_path):
    lines = (bec_dir / "vasprun.xml").read_text().splitlines(keepends=True)
    start = header_index(lines, '<array name="born_charges"')
    bad = list(lines)
    bad[start + 4] = bad[start + 4].replace("-0.26090999", "-0.2609O999")
    _raises(_write(tmp_path, bad, "vasprun.xml"), start + 5, "3 numbers")
    missing = lines[:start + 2] + lines[start + 7:]
    _raises(_write(tmp_path, missing, "vasprun.xml"), start + 1, "26 <set> blocks")


def test_vasprun_without_born_charges(shared_data):
    error = _raises(shared_data / "aiida-vasp" / "dielectric" / "vasprun.xml", None, "born_charges")
    assert "not a linear-response run" in error.found


# ---------------------------------------------------------------------------------------------------------
# fuzz: mutated real blocks raise MalformedFileError or parse to finite arrays, nothing else


@pytest.fixture(scope="module")
def outcar54_tail(outcar54_lines):
    """The 5.4 OUTCAR as (prefix bytes up to the dielectric tensor, mutable tail lines with the Born block)."""
    start = header_index(outcar54_lines, "MACROSCOPIC STATIC DIELECTRIC TENSOR (including")
    return "".join(outcar54_lines[:start]), outcar54_lines[start:]


_mutation = st.one_of(
    st.tuples(st.just("char"), st.integers(0, 10**6), st.sampled_from(list("0123456789.-+eE xion*\t\n\x00"))),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.just("")),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just("")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_fuzz_outcar_reader(outcar54_tail, mutations):
    prefix, tail = outcar54_tail
    lines = list(tail)
    for kind, position, char in mutations:
        if not lines:
            break
        index = position % len(lines)
        if kind == "char":
            line = lines[index]
            at = position % max(len(line), 1)
            lines[index] = line[:at] + char + line[at + 1:]
        elif kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        else:
            lines = lines[:index]
    data = (prefix + "".join(lines)).encode()
    try:
        record = parse_born_charges(data, "fuzzed/OUTCAR")
    except MalformedFileError as error:
        assert error.path == "fuzzed/OUTCAR"
        return
    assert record.born_charges.shape == (26, 3, 3)
    assert np.all(np.isfinite(record.born_charges))

"""The VASP readers on real outputs (VASP 6.1 ZrO2 set, VASP 5.4 run of aiida-vasp, the real MD outputs of
../shared/data/vasp-md) and on broken copies."""

import gzip
import hashlib
import re
import time

import ase.io
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiida_irspec.exceptions import InputError, MalformedFileError
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


# ---------------------------------------------------------------------------------------------------------
# compression and encoding of every VASP file


@pytest.mark.parametrize("compression", ["xz", "bz2", "lzma"])
def test_born_charges_from_xz_bz2_lzma(bec_dir, tmp_path, compression):
    """phonopy ships vasprun.xml-born.xz: xz, bz2 and lzma are read by their magic bytes, not their names."""
    import bz2
    import lzma

    data = (bec_dir / "vasprun.xml").read_bytes()
    packed = {"xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ), "bz2": bz2.compress,
              "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)}[compression](data)
    path = tmp_path / "vasprun.xml-born"
    path.write_bytes(packed)
    record = read_born_charges(path)
    np.testing.assert_array_equal(record.born_charges, read_born_charges(bec_dir / "vasprun.xml").born_charges)
    assert record.source["sha256"] == hashlib.sha256(packed).hexdigest()
    path.write_bytes(packed[: len(packed) // 2])
    error = _raises(path, None, f"complete {compression} stream")
    assert compression in error.found and "binary" not in str(error)


def test_zip_is_named_not_binary(bec_dir, tmp_path):
    import zipfile

    path = tmp_path / "run.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(bec_dir / "OUTCAR", "OUTCAR")
    error = _raises(path, None, "plain, gzip, xz, bz2 or lzma")
    assert "zip-compressed" in error.found


def test_declared_iso_8859_1_encoding(bec_dir, tmp_path):
    """VASP declares encoding="ISO-8859-1": a degree sign (byte 0xb0) in SYSTEM is read, in vasprun.xml and
    in the OUTCAR alike."""
    data = (bec_dir / "vasprun.xml").read_bytes()
    assert b'encoding="ISO-8859-1"' in data[:100]
    system = re.search(rb'<i type="string" name="SYSTEM">[^<]*</i>', data).group()
    marked = data.replace(system, b'<i type="string" name="SYSTEM">ZrO2 at 300 \xb0C</i>', 1)
    path = tmp_path / "vasprun.xml"
    path.write_bytes(marked)
    np.testing.assert_array_equal(read_born_charges(path).born_charges,
                                  read_born_charges(bec_dir / "vasprun.xml").born_charges)
    outcar = (bec_dir / "OUTCAR").read_bytes().replace(b"SYSTEM =", b"SYSTEM = 300 \xb0C", 1)
    (tmp_path / "OUTCAR").write_bytes(outcar)
    assert read_born_charges(tmp_path / "OUTCAR").born_charges.shape == (26, 3, 3)


# ---------------------------------------------------------------------------------------------------------
# MD trajectories: every real file in ../shared/data/vasp-md (README there), read as the file says

MD = {  # folder/file: atoms, frames, first and last step, step spacing, POTIM (None: the file states none)
    "pmg-vasprun.ml_md.xml/vasprun.ml_md.xml.gz": (80, 100, 1, 100, 1, 1.0),
    "dpdata-OUTCAR.ch4.ml/OUTCAR.ch4.ml": (5, 10, 1, 10, 1, 1.0),
    "vaspi-OUTCAR.istart1/OUTCAR.istart1": (2, 12, 1, 12, 1, None),
    "pmg-vasprun.md.xml/vasprun.md.xml.gz": (64, 10, 1, 10, 1, 3.0),
    "dpdata-Ti-aimd-nwrite0_vasprun.xml/vasprun.xml": (32, 10, 1, 10, 1, 2.0),
    "dpdata-Ti-aimd-nwrite0_OUTCAR/OUTCAR": (32, 2, 1, 10, 9, 2.0),
    "pmg-XDATCAR.MD/XDATCAR.MD": (80, 5, 1, 5, 1, None),
    "quach-XDATCAR/XDATCAR": (166, 100, 50, 5000, 50, None),
    "crs2-relax_XDATCAR/XDATCAR": (27, 8, 1, 8, 1, None),
}


@pytest.fixture(scope="module")
def md_dir(shared_data):
    return shared_data / "vasp-md"


@pytest.mark.parametrize("name", sorted(MD))
def test_every_real_md_file(md_dir, name):
    """Frame count, step numbers, times and cells as each file states them; positions unwrapped."""
    from aiida_irspec.io.vasp import read_trajectory

    atoms, frames, first, last, spacing, potim = MD[name]
    trajectory = read_trajectory(md_dir / name)
    assert trajectory.positions.shape == (frames, atoms, 3) and trajectory.cells.shape == (frames, 3, 3)
    assert trajectory.steps[0] == first and trajectory.steps[-1] == last
    assert set(np.diff(trajectory.steps)) <= {spacing}
    assert trajectory.timestep == potim
    if potim is None:
        assert trajectory.times is None and trajectory.velocity_problem().endswith("give timestep")
        with_dt = read_trajectory(md_dir / name, timestep=0.5)
        np.testing.assert_allclose(with_dt.times, (trajectory.steps - 1) * 0.5, rtol=0, atol=1e-12)
    else:
        np.testing.assert_allclose(trajectory.times, (trajectory.steps - 1) * potim, rtol=0, atol=1e-12)
        with pytest.raises(InputError, match="disagrees with the file's POTIM"):
            read_trajectory(md_dir / name, timestep=potim * 2)
    fractional_steps = np.einsum("fnk,fkj->fnj", np.diff(trajectory.positions, axis=0),
                                 np.linalg.inv(trajectory.cells[1:]))
    assert np.abs(fractional_steps).max() < 0.5  # unwrapped: no jump by a lattice vector
    assert len(trajectory.numbers) == atoms and trajectory.source["path"] == str(md_dir / name)


def test_xdatcar_and_vasprun_frames_equal_ase(md_dir):
    """Positions (up to lattice vectors) and cells equal ASE's reading wherever ASE reads the frames: every
    XDATCAR configuration, the <calculation> steps of vasprun.xml (ASE reads only those)."""
    from aiida_irspec.io.vasp import read_trajectory

    for name in sorted(MD):
        if "OUTCAR" in name:
            continue  # ASE 3.29 fails on these three OUTCARs (README)
        kind = "vasp-xdatcar" if "XDATCAR" in name else "vasp-xml"
        reference = ase.io.read(md_dir / name, index=":", format=kind)
        trajectory = read_trajectory(md_dir / name, timestep=1.0 if kind == "vasp-xdatcar" else None)
        frames = np.flatnonzero(trajectory.origin != "ml")
        assert len(frames) == len(reference), name
        for frame, atoms in zip(frames, reference):
            np.testing.assert_allclose(trajectory.cells[frame], atoms.cell.array, rtol=0, atol=1e-12)
            delta = (trajectory.positions[frame] - atoms.positions) @ np.linalg.inv(atoms.cell.array)
            np.testing.assert_allclose(delta, np.round(delta), rtol=0, atol=1e-9)


def test_mlff_training_vasprun_every_step(md_dir):
    """VASP 6.3 on-the-fly training: 20 DFT steps in <calculation>, 80 ML steps outside, all 100 in order.
    The frames are consecutive POTIM = 1 fs steps: the kinetic energy of the finite-difference velocities
    equals VASP's own 'kinetic' of each step to 1% (a reader that kept the 20 DFT steps 1 fs apart gives
    velocities ~100 times too large)."""
    from aiida_irspec.io.vasp import kinetic_energy_of, read_trajectory

    trajectory = read_trajectory(md_dir / "pmg-vasprun.ml_md.xml/vasprun.ml_md.xml.gz")
    dft = trajectory.steps[trajectory.origin == "dft"]
    assert dft.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 18, 25, 35, 42, 52, 62, 72, 82, 92]
    assert set(trajectory.origin) == {"dft", "ml"} and trajectory.source["complete"]
    assert trajectory.source["compression"] == "gzip" and "bare <structure>" in trajectory.source["layout"]
    assert trajectory.energy[0] == -525.07195568 and trajectory.energy[-1] == -524.69015916  # first, last in file
    ratio = kinetic_energy_of(trajectory.velocities(), trajectory.masses)[1:-1] / trajectory.kinetic_energy[1:-1]
    assert np.all(np.abs(ratio - 1) < 0.01)
    assert np.abs(trajectory.velocities()).max() < 0.1  # A/fs: thermal speeds at 300 K, H included


def test_mlff_production_layout_without_calculation(md_dir, tmp_path):
    """A production run with a trained force field writes no <calculation> block (pymatgen issue 4200): made
    here from the real training file by dropping its <calculation> blocks, which leaves the real bare
    <structure>/<energy> layout of its 80 ML steps."""
    from aiida_irspec.io.vasp import read_trajectory

    text = gzip.decompress((md_dir / "pmg-vasprun.ml_md.xml/vasprun.ml_md.xml.gz").read_bytes()).decode("latin-1")
    production = re.sub(r"\n <calculation>.*?\n </calculation>", "", text, flags=re.S)
    assert "<calculation>" not in production
    path = tmp_path / "vasprun.xml"
    path.write_bytes(production.encode("latin-1"))
    trajectory = read_trajectory(path)
    full = read_trajectory(md_dir / "pmg-vasprun.ml_md.xml/vasprun.ml_md.xml.gz")
    assert len(trajectory.steps) == 80 and set(trajectory.origin) == {"ml"}
    assert trajectory.source["layout"].startswith("machine-learned steps")
    np.testing.assert_array_equal(trajectory.energy, full.energy[full.origin == "ml"])
    np.testing.assert_allclose(trajectory.cells, full.cells[full.origin == "ml"])


def test_mlff_outcar_dft_and_ml_steps(md_dir):
    """VASP 6.3 training OUTCAR (NpT): each step has an ML block, 4 also a DFT block; the frame takes the DFT
    positions and 'free energy TOTEN' where there are some, else the ML ones; the cell follows the run."""
    from aiida_irspec.io.vasp import read_trajectory

    trajectory = read_trajectory(md_dir / "dpdata-OUTCAR.ch4.ml/OUTCAR.ch4.ml")
    assert trajectory.origin.tolist().count("dft") == 4 and trajectory.source["complete"]
    assert trajectory.energy[:4].tolist() == [-24.12709802, -24.12724275, -24.12737148, -24.12729692]
    assert trajectory.origin[:4].tolist() == ["dft", "dft", "dft", "ml"]
    volumes = np.abs(np.linalg.det(trajectory.cells))
    assert volumes[0] == pytest.approx(1000.0, abs=1e-6) and volumes[-1] == pytest.approx(1000.58, abs=0.01)
    assert trajectory.kinetic_energy[0] == 0.000027


@pytest.mark.parametrize("line", ["free  energy ML TOTEN", "free  energy   TOTEN", "kinetic energy EKIN"])
def test_md_outcar_energy_line_without_its_value(md_dir, tmp_path, line):
    """An energy line of an MD OUTCAR cut before its '=' (found by the long fuzz): MalformedFileError naming
    the file, the line and what was expected, not an IndexError."""
    from aiida_irspec.io.vasp import read_trajectory

    text = (md_dir / "dpdata-OUTCAR.ch4.ml/OUTCAR.ch4.ml").read_text()
    start = text.index(line, text.index("POSITION"))
    damaged = tmp_path / "OUTCAR"
    damaged.write_text(text[:start] + line + text[text.index("\n", start):])
    with pytest.raises(MalformedFileError, match=f"{damaged}.*line {text[:start].count(chr(10)) + 1}"):
        read_trajectory(damaged)


def test_outcar_nwrite0_gaps_reported(md_dir):
    """NWRITE = 0 prints positions for steps 1 and 10 only: two frames, steps 2-9 listed as missing, no
    velocities; the two frames equal the same run's vasprun.xml."""
    from aiida_irspec.io.vasp import read_trajectory

    outcar = read_trajectory(md_dir / "dpdata-Ti-aimd-nwrite0_OUTCAR/OUTCAR")
    assert outcar.missing_steps.tolist() == list(range(2, 10))
    assert "steps 2-9 have no positions" in outcar.source["notes"][0]
    with pytest.raises(InputError, match="steps 2-9 have no positions"):
        outcar.velocities()
    vasprun = read_trajectory(md_dir / "dpdata-Ti-aimd-nwrite0_vasprun.xml/vasprun.xml")
    np.testing.assert_allclose(outcar.positions, vasprun.positions[[0, 9]], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(outcar.energy, vasprun.energy[[0, 9]])
    np.testing.assert_allclose(outcar.cells, vasprun.cells[[0, 9]], rtol=0, atol=1e-8)


def test_outcar_cut_off_and_interactive(md_dir, tmp_path):
    """The interactive-mode OUTCAR ends right after 'Ionic step 13': steps 1-12 are kept, the cut is said;
    a vasprun.xml cut mid-run keeps its complete steps."""
    from aiida_irspec.io.vasp import read_trajectory

    interactive = read_trajectory(md_dir / "vaspi-OUTCAR.istart1/OUTCAR.istart1")
    assert not interactive.source["complete"] and "step 13" in interactive.source["notes"][0]
    text = gzip.decompress((md_dir / "pmg-vasprun.ml_md.xml/vasprun.ml_md.xml.gz").read_bytes())
    cut = tmp_path / "vasprun.xml"
    cut.write_bytes(text[: len(text) // 2])
    trajectory = read_trajectory(cut)
    assert 20 < len(trajectory.steps) < 80 and not trajectory.source["complete"]
    assert trajectory.steps.tolist() == list(range(1, len(trajectory.steps) + 1))


def test_uneven_frames_are_never_differenced(md_dir):
    """XDATCAR numbered 50, 100, ...: velocities over the stored spacing; frames at uneven steps: refused."""
    from aiida_irspec.io.vasp import VaspTrajectory, read_trajectory

    trajectory = read_trajectory(md_dir / "quach-XDATCAR/XDATCAR", timestep=0.5)
    assert trajectory.velocities().shape == (100, 166, 3)
    uneven = VaspTrajectory(**{**trajectory.__dict__, "steps": trajectory.steps ** 2 // 50,
                               "times": (trajectory.steps ** 2 // 50 - 1) * 0.5})
    with pytest.raises(InputError, match="not evenly spaced"):
        uneven.velocities()


def test_pdot_reads_every_step_of_vasp_files(md_dir):
    """The trajectory reader of `aiida-irspec pdot` takes VASP files through read_trajectory: all 100 steps of
    the MLFF training run with the file's times; an OUTCAR with gaps is refused."""
    from aiida_irspec.campaign.pdot import read_trajectory

    trajectory = read_trajectory(md_dir / "pmg-vasprun.ml_md.xml/vasprun.ml_md.xml.gz")
    assert trajectory["positions"].shape == (100, 80, 3) and trajectory["times"][-1] == 99.0
    with pytest.raises(InputError, match="evenly sampled"):
        read_trajectory(md_dir / "dpdata-Ti-aimd-nwrite0_OUTCAR/OUTCAR")
    with pytest.raises(InputError, match="states no time step"):
        read_trajectory(md_dir / "pmg-XDATCAR.MD/XDATCAR.MD")


# ---------------------------------------------------------------------------------------------------------
# unwrapping, velocities, temperature (synthetic trajectories with exact answers)


def triclinic_cell():
    return np.array([[5.0, 0.0, 0.0], [1.2, 4.5, 0.0], [0.7, -0.9, 6.0]])


def oscillating_trajectory(times):
    """Positions (F, 3, 3) of three atoms drifting through the cell faces and oscillating; exact velocities."""
    rng = np.random.default_rng(3)
    start, drift = rng.uniform(0, 5, (3, 3)), rng.normal(0, 0.08, (3, 3))
    amplitude, omega = rng.uniform(0.1, 0.3, (3, 3)), 2 * np.pi / 60.0
    t = times[:, None, None]
    positions = start + drift * t + amplitude * np.sin(omega * t)
    velocities = drift + amplitude * omega * np.cos(omega * t)
    return positions, velocities


def test_unwrap_positions_undoes_folding():
    """Folded positions come back continuous, the same with one cell (vectorised) and per-frame cells."""
    from aiida_irspec.io.vasp import unwrap_positions

    times = np.arange(200) * 1.0
    positions, _ = oscillating_trajectory(times)
    cell = triclinic_cell()
    fractional = positions @ np.linalg.inv(cell)
    assert np.ptp(np.floor(fractional)) > 0  # the atoms do cross cell faces
    cells = np.repeat(cell[None], len(times), axis=0)
    unwrapped = unwrap_positions((fractional % 1.0) @ cell, cells)
    shift = positions[0] - unwrapped[0]
    np.testing.assert_allclose(unwrapped + shift, positions, atol=1e-10)
    breathing = cells * (1 + 1e-3 * np.sin(times / 30))[:, None, None]  # a cell that changes every frame
    unwrapped = unwrap_positions(np.einsum("fnj,fjk->fnk", fractional % 1.0, breathing), breathing)
    np.testing.assert_allclose(np.einsum("fnk,fkj->fnj", unwrapped, np.linalg.inv(breathing)),
                               fractional - np.floor(fractional[0]), atol=1e-9)
    molecule = np.zeros((len(times), 3, 3))  # no cell: left as it is
    np.testing.assert_array_equal(unwrap_positions(positions, molecule), positions)


def test_velocities_central_differences_second_order():
    from aiida_irspec.io.vasp import velocities_from_positions

    errors = []
    for dt in (1.0, 0.5):
        times = np.arange(0, 120, dt)
        positions, exact = oscillating_trajectory(times)
        estimate = velocities_from_positions(positions, times)
        errors.append(np.abs(estimate - exact)[1:-1].max())
    assert errors[0] < 1e-3
    assert 3.5 < errors[0] / errors[1] < 4.5  # O(dt^2)
    with pytest.raises(InputError):
        velocities_from_positions(positions[:1], times[:1])
    with pytest.raises(InputError, match="evenly spaced"):
        velocities_from_positions(positions[:3], np.array([0.0, 1.0, 3.0]))


def test_temperature_from_kinetic_uses_3n_minus_3():
    from aiida_irspec import units
    from aiida_irspec.io.vasp import temperature_from_kinetic

    n_atoms, temperature = 10, 300.0
    kinetic = 0.5 * (3 * n_atoms - 3) * units.BOLTZMANN_EV * temperature
    assert temperature_from_kinetic(kinetic, n_atoms) == pytest.approx(temperature, rel=1e-14)


def test_xdatcar_written_by_ase_roundtrip(tmp_path):
    """A synthetic trajectory written by ASE's XDATCAR writer (folded into the cell, 8 decimals) comes back
    unwrapped, with velocities from central differences."""
    from ase import Atoms
    from ase.io import write

    from aiida_irspec.io.vasp import read_trajectory

    timestep = 0.5
    times = np.arange(100) * timestep
    positions, exact = oscillating_trajectory(times)
    frames = [Atoms("OH2", positions=p, cell=triclinic_cell(), pbc=True) for p in positions]
    for frame in frames:
        frame.wrap()
    write(tmp_path / "XDATCAR", frames, format="vasp-xdatcar")
    trajectory = read_trajectory(tmp_path / "XDATCAR", timestep=timestep)
    assert trajectory.symbols == ["O", "H", "H"] and trajectory.source["format"] == "xdatcar"
    np.testing.assert_allclose(trajectory.times, times, rtol=0, atol=1e-12)
    shift = positions[0] - trajectory.positions[0]
    np.testing.assert_allclose(trajectory.positions + shift, positions, atol=1e-7)
    assert trajectory.energy is None and trajectory.kinetic_energy is None
    np.testing.assert_allclose(trajectory.velocities()[1:-1], exact[1:-1], atol=2e-3)


def test_relaxation_vasprun_and_contcar(shared_data):
    """A real relaxation (not MD): its steps are read, without times (POTIM is no time step there); CONTCAR's
    velocity block is read when VASP wrote one."""
    from aiida_irspec.io.vasp import read_final_velocities, read_trajectory

    path = shared_data / "aiida-vasp" / "exit_codes" / "ionic-unconverged" / "out" / "vasprun.xml"
    trajectory = read_trajectory(path)
    assert len(trajectory.steps) == 5 and trajectory.times is None
    reference = ase.io.read(path, index=":", format="vasp-xml")
    np.testing.assert_allclose(trajectory.energy, [atoms.calc.results["free_energy"] for atoms in reference],
                               rtol=0, atol=1e-8)
    run = shared_data / "aiida-vasp" / "born_effective_charge"
    velocities = read_final_velocities(run / "CONTCAR")  # VASP writes a (zero) velocity block
    assert velocities.shape == (26, 3) and not velocities.any()
    assert read_final_velocities(run / "POSCAR") is None

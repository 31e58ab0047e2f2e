"""Importing VASP files into AiiDA: provenance, idempotency by content, the import-vasp CLI and verdi data irspec."""

import gzip
import hashlib
import shutil

import ase.io
import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.shared


@pytest.fixture
def vasp_tree(tmp_path, zro2_outcars, shared_data):
    """A folder like a user's: two ZrO2 runs, the VASP 5.4 run (OUTCAR + vasprun.xml) and a cut-off OUTCAR."""
    bec = shared_data / "aiida-vasp" / "born_effective_charge"
    for k, outcar in enumerate(zro2_outcars[:2]):
        (tmp_path / f"zro2-{k}").mkdir()
        shutil.copy(outcar, tmp_path / f"zro2-{k}" / "OUTCAR.gz")
    (tmp_path / "pszn" / "run").mkdir(parents=True)
    for name in ("OUTCAR", "vasprun.xml", "INCAR", "POSCAR"):
        shutil.copy(bec / name, tmp_path / "pszn" / "run" / name)
    (tmp_path / "pszn" / "run" / "vasprun.xml.gz").write_bytes(gzip.compress((bec / "vasprun.xml").read_bytes()))
    broken = gzip.decompress(zro2_outcars[2].read_bytes()).splitlines(keepends=True)[:11400]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "OUTCAR").write_bytes(b"".join(broken))
    return tmp_path


def all_nodes_count():
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()


def test_import_provenance_and_idempotency(aiida_profile_clean, vasp_tree):
    from aiida import orm

    from aiida_irspec.calculations.import_vasp import find_files, import_vasp_files
    from aiida_irspec.data.born_charges import BornChargesData

    files = [f for f in find_files([vasp_tree]) if f.name not in ("INCAR", "POSCAR")]
    assert [f.relative_to(vasp_tree).as_posix() for f in files] == [
        "broken/OUTCAR", "pszn/run/OUTCAR", "pszn/run/vasprun.xml", "pszn/run/vasprun.xml.gz", "zro2-0/OUTCAR.gz",
        "zro2-1/OUTCAR.gz"]
    group = orm.Group(label="first").store()
    results = import_vasp_files(files, group=group)
    assert [r.status for r in results] == ["error"] + ["imported"] * 5
    assert "broken/OUTCAR" in results[0].message and "ion" in results[0].message
    assert group.count() == 5

    for result in results[1:]:
        node = result.born_charges
        assert isinstance(node, BornChargesData)
        creator = node.creator
        assert creator.process_type == "aiida.calculations:irspec.import_vasp_file" and creator.is_finished_ok
        file = creator.inputs.file
        assert isinstance(file, orm.SinglefileData)
        sha256 = hashlib.sha256(result.path.read_bytes()).hexdigest()
        assert file.base.attributes.get("sha256") == sha256 == node.source["sha256"]
        assert file.get_content(mode="rb") == result.path.read_bytes()
        structure = creator.outputs.structure
        assert len(structure.sites) == len(node.symbols)
        assert [site.kind_name for site in structure.sites] == node.symbols

    outcar, vasprun, vasprun_gz = (result.born_charges for result in results[1:4])
    np.testing.assert_array_equal(vasprun.born_charges, vasprun_gz.born_charges)
    np.testing.assert_allclose(outcar.born_charges, vasprun.born_charges, atol=5.01e-6)

    before = all_nodes_count()
    again = import_vasp_files(files, group=orm.Group(label="second").store())
    assert [r.status for r in again] == ["error"] + ["already imported"] * 5
    assert [r.born_charges.pk for r in again[1:]] == [r.born_charges.pk for r in results[1:]]
    assert all_nodes_count() == before
    assert orm.load_group("second").count() == 5

    renamed = vasp_tree / "copy" / "OUTCAR.renamed.gz"
    renamed.parent.mkdir()
    shutil.copy(files[4], renamed)
    (copy,) = import_vasp_files([renamed])
    assert copy.status == "already imported" and copy.born_charges.pk == results[4].born_charges.pk
    assert all_nodes_count() == before


def test_cli_import_vasp(aiida_profile_clean, vasp_tree):
    from aiida import orm

    from aiida_irspec.cli import cli

    runner = CliRunner()
    name = aiida_profile_clean.name
    first = runner.invoke(cli, ["--profile", name, "import-vasp", str(vasp_tree), "--group", "runs"])
    assert first.exit_code == 1, first.output
    lines = first.output.splitlines()
    assert lines[0].split() == ["file", "atoms", "species", "|sum", "rule|", "(|e|)", "status"]
    table = {line.split()[0]: line for line in lines[2:-1]}
    assert "error:" in table[str(vasp_tree / "broken" / "OUTCAR")]
    zro2_row = table[str(vasp_tree / "zro2-0" / "OUTCAR.gz")].split()
    assert zro2_row[1:4] == ["96", "Zr", "O"] and float(zro2_row[4]) < 1e-3 and zro2_row[5] == "imported"
    assert table[str(vasp_tree / "pszn" / "run" / "vasprun.xml")].split()[1:5] == ["26", "P", "S", "Zn"]
    assert "skipped: not a VASP OUTCAR or vasprun.xml" in table[str(vasp_tree / "pszn" / "run" / "POSCAR")]
    assert lines[-1] == "8 files: 1 error, 5 imported, 2 skipped; group 'runs' holds 5 nodes"

    good = [str(vasp_tree / d) for d in ("zro2-0", "zro2-1", "pszn")]
    second = runner.invoke(cli, ["--profile", name, "import-vasp", *good, "--group", "runs"])
    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[-1] == "7 files: 5 already imported, 2 skipped; group 'runs' holds 5 nodes"
    assert orm.QueryBuilder().append(orm.SinglefileData).count() == 5

    (vasp_tree / "empty").mkdir()
    none = runner.invoke(cli, ["--profile", name, "import-vasp", str(vasp_tree / "empty"), "--group", "runs"])
    assert none.exit_code == 2 and "no files under" in none.output
    only_inputs = runner.invoke(cli, ["-p", name, "import-vasp", str(vasp_tree / "pszn" / "run" / "INCAR"),
                                      str(vasp_tree / "pszn" / "run" / "POSCAR"), "-g", "runs"])
    assert only_inputs.exit_code == 2 and only_inputs.output.count("skipped: not a VASP") == 2
    assert only_inputs.output.splitlines()[-1].startswith("Error: no VASP OUTCAR or vasprun.xml with Born charges")


def test_files_recognised_by_content(aiida_profile_clean, shared_data, tmp_path):
    """Real names of DFPT outputs (phonopy, pymatgen, custodian: vasprun.xml-born, vasprun_epsilon.xml,
    vasprun-born.xml, vasprun.dfpt.unconverged.xml.gz, vasprun.xml.<id>, OUTCAR.<id>) in every compression are
    imported; an MD vasprun.xml, an XDATCAR, inputs and binary files are skipped with the reason."""
    import bz2
    import lzma

    from aiida import orm

    from aiida_irspec.calculations.import_vasp import find_files, import_vasp_files

    bec = shared_data / "aiida-vasp" / "born_effective_charge"
    vasprun, outcar = (bec / "vasprun.xml").read_bytes(), (bec / "OUTCAR").read_bytes()
    written = {
        "phonopy/vasprun.xml-born.xz": lzma.compress(vasprun),
        "mp/vasprun_epsilon.xml": vasprun.replace(b"<modeling>", b"<modeling> ", 1),
        "a/vasprun-born.xml.bz2": bz2.compress(vasprun.replace(b"<modeling>", b"<modeling>  ", 1)),
        "pmg/vasprun.dfpt.unconverged.xml.gz": gzip.compress(vasprun.replace(b"<modeling>", b"<modeling>   ", 1)),
        "c/vasprun.xml.123456": lzma.compress(vasprun, format=lzma.FORMAT_ALONE),
        "c/OUTCAR.123456": outcar,
        "md/vasprun.xml": gzip.decompress((shared_data / "vasp-md" / "pmg-vasprun.md.xml" /
                                           "vasprun.md.xml.gz").read_bytes()),
        "md/XDATCAR": (shared_data / "vasp-md" / "pmg-XDATCAR.MD" / "XDATCAR.MD").read_bytes(),
        "c/INCAR": (bec / "INCAR").read_bytes(),
        "c/WAVECAR": b"\x00\x01" * 100,
        "c/empty": b"",
    }
    for name, data in written.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    results = {r.path.relative_to(tmp_path).as_posix(): r
               for r in import_vasp_files(find_files([tmp_path]), group=orm.Group(label="real-names").store())}
    imported = [name for name, r in results.items() if r.status == "imported"]
    assert sorted(imported) == sorted(list(written)[:6]), {n: r.message for n, r in results.items()}
    assert "without Born effective charges" in results["md/vasprun.xml"].message
    assert "XDATCAR" in results["md/XDATCAR"].message
    assert "not a VASP OUTCAR or vasprun.xml" in results["c/INCAR"].message
    assert "binary" in results["c/WAVECAR"].message and "empty" in results["c/empty"].message
    assert {r.status for name, r in results.items() if name not in imported} == {"skipped"}
    first = results["phonopy/vasprun.xml-born.xz"].born_charges.born_charges
    for name in imported[1:]:
        np.testing.assert_allclose(results[name].born_charges.born_charges, first, atol=5.01e-6)


def test_verdi_data_irspec(aiida_profile_clean, vasp_tree, tmp_path):
    from aiida import orm

    from aiida_irspec.calculations.import_vasp import import_vasp_files
    from aiida_irspec.cli.data import data_irspec
    from aiida_irspec.data.born_charges import BornChargesData

    results = import_vasp_files([vasp_tree / "zro2-0" / "OUTCAR.gz", vasp_tree / "pszn" / "run" / "OUTCAR"],
                                group=orm.Group(label="g").store())
    zro2 = results[0].born_charges
    runner = CliRunner()
    listing = runner.invoke(data_irspec, ["list", "-g", "g"])
    assert listing.exit_code == 0, listing.output
    rows = listing.output.splitlines()[2:]
    assert len(rows) == 2 and rows[0].split()[:3] == [str(zro2.pk), "O64Zr32", "96"]
    assert rows[1].split()[1:3] == ["P4S16Zn6", "26"]

    show = runner.invoke(data_irspec, ["show", str(zro2.pk)])
    assert show.exit_code == 0, show.output
    ion1 = show.output.splitlines().index("ion 1 Zr")
    printed = np.array([[float(x) for x in show.output.splitlines()[ion1 + 1 + r].split()] for r in range(3)])
    np.testing.assert_allclose(printed, zro2.born_charges[0], atol=5e-6)
    assert "dielectric tensor (epsilon_infinity):" in show.output

    path = tmp_path / "zro2.extxyz"
    export = runner.invoke(data_irspec, ["export", str(zro2.pk), "-o", str(path)])
    assert export.exit_code == 0, export.output
    atoms = ase.io.read(path)
    np.testing.assert_allclose(atoms.arrays["born_charges"].reshape(-1, 3, 3), zro2.born_charges, atol=1e-12)
    np.testing.assert_allclose(atoms.positions, zro2.creator.outputs.structure.get_ase().positions, atol=1e-10)

    orphan = BornChargesData(zro2.born_charges, symbols=zro2.symbols).store()
    refused = runner.invoke(data_irspec, ["export", str(orphan.pk), "-o", str(path)])
    assert refused.exit_code == 2 and "give one with --structure" in refused.output
    structure = zro2.creator.outputs.structure
    given = runner.invoke(data_irspec, ["export", str(orphan.pk), "-o", str(path), "-s", str(structure.pk)])
    assert given.exit_code == 0, given.output
    np.testing.assert_allclose(ase.io.read(path).arrays["born_charges"].reshape(-1, 3, 3), zro2.born_charges)


def test_import_runs_its_calcfunction_without_aiida_interrupt_handler(aiida_profile):
    """aiida-core's call of a calcfunction installs a SIGINT handler that kills the process from inside the signal,
    with database queries on the connection the signal interrupted (a Ctrl-C hung import-vasp about once in ten on
    PostgreSQL); the import runs its calcfunction with the command's own handler in place, same outputs."""
    import signal

    from aiida import orm
    from aiida.engine import calcfunction

    from aiida_irspec.calculations.import_vasp import run_without_interrupt_handler

    seen = []

    @calcfunction
    def probe(x):
        seen.append(signal.getsignal(signal.SIGINT))
        return orm.Int(x.value + 1)

    def commands_handler(number, frame):
        pass

    previous = signal.signal(signal.SIGINT, commands_handler)
    try:
        ours = run_without_interrupt_handler(probe, orm.Int(1))
        theirs = probe(orm.Int(1))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ours.value == theirs.value == 2
    assert seen[0] is commands_handler and seen[1] is not commands_handler

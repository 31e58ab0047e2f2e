"""aiida_irspec.io.vasp against pymatgen on real VASP files of public test suites.

Reads every VASP file it finds in

* the ASE wheel from PyPI (its test data ships real VASP outputs), downloaded at run time with
  ``pip download ase==<installed version> --no-deps --only-binary :all:`` into a temporary folder (the files of
  the installed ``ase`` package when the download fails; the table says which);
* the real files of other projects' test suites in ``../shared/data`` (pymatgen, dpdata, aiida-vasp,
  vasp-interactive, ...: ``vasp-md``, ``aiida-vasp`` and the first ``--zro2`` OUTCARs of ``zro2``);

and compares, file by file, what ``read_trajectory`` and ``read_born_charges`` give with pymatgen's readings:
the frames (count; positions up to lattice vectors; cells) of vasprun.xml (``Vasprun``: its ``md_data`` for
machine-learned runs, else its ionic steps) and XDATCAR (``Xdatcar``), and the Born charges of OUTCARs
(``Outcar.read_lepsilon``). pymatgen reads no steps of an OUTCAR, so OUTCAR trajectories are only counted.
pymatgen is not a dependency of the package: ``pip install 'aiida-irspec[bench]'``.

Usage::

    python benchmarks/vasp_readers.py [--shared ../shared/data] [--zro2 10] [--out table.md]
"""

import argparse
import contextlib
import importlib.metadata
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile

import numpy as np

from aiida_irspec.exceptions import IrspecError
from aiida_irspec.io.vasp import detect_format, open_vasp_file, read_born_charges, read_trajectory

ASE_TEST_DATA = "ase/test/testdata/vasp/"


def ase_wheel_files(folder):
    """(source label, [paths]) of the VASP files in the ASE wheel of the installed version, downloaded now."""
    version = importlib.metadata.version("ase")
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", f"ase=={version}", "--no-deps", "--only-binary",
                        ":all:", "-d", str(folder), "-q"], check=True, capture_output=True, timeout=600)
        (wheel,) = pathlib.Path(folder).glob("ase-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if name.startswith(ASE_TEST_DATA) and not name.endswith("/")]
            archive.extractall(folder, members=names)
        return (f"ASE {version} wheel (PyPI, downloaded)", pathlib.Path(folder, ASE_TEST_DATA),
                sorted(pathlib.Path(folder, name) for name in names))
    except (subprocess.SubprocessError, ValueError, OSError):
        import ase

        installed = pathlib.Path(ase.__file__).parent / "test" / "testdata" / "vasp"
        return f"ASE {version} (installed package)", installed, sorted(p for p in installed.iterdir() if p.is_file())


def shared_files(shared, zro2):
    """(source label, [paths]) of the real files in ../shared/data."""
    paths = [p for p in sorted((shared / "vasp-md").rglob("*")) if p.is_file() and p.name != "SOURCE.txt"]
    paths += [p for p in sorted((shared / "aiida-vasp").rglob("*")) if p.is_file() and p.name != "README.md"]
    paths += sorted((shared / "zro2").glob("OUTCAR.*.gz"), key=lambda p: int(p.name.split(".")[1]))[:zro2]
    return "shared/data", shared, paths


def kind_of(path):
    try:
        with open_vasp_file(path) as handle:
            return detect_format(handle.read(4096))
    except (OSError, IrspecError):
        return None


def pymatgen_frames(path, kind):
    """(fractional positions (F, N, 3), cells (F, 3, 3)) as pymatgen reads them, or None."""
    from pymatgen.io.vasp.outputs import Vasprun, Xdatcar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "vasprun":
            run = Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_projected_eigen=False,
                          parse_potcar_file=False, exception_on_bad_xml=False)
            structures = [step["structure"] for step in run.md_data] if run.md_data else run.structures
        elif kind == "xdatcar":
            structures = Xdatcar(str(path)).structures
        else:
            return None
    return (np.array([s.frac_coords for s in structures]), np.array([s.lattice.matrix for s in structures]))


def pymatgen_born(path):
    from pymatgen.io.vasp.outputs import Outcar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcar = Outcar(str(path))
        outcar.read_lepsilon()
    return np.array(outcar.born) if getattr(outcar, "born", None) is not None and len(outcar.born) else None


def compare(path, kind, name):
    """One row of the table: what both read of the file (shown as ``name``) and how far apart they are."""
    row = {"file": name, "kind": kind}
    try:
        start = time.perf_counter()
        trajectory = read_trajectory(path, timestep=1.0 if kind == "xdatcar" else None)
        row["ours_s"] = time.perf_counter() - start
        row["frames"] = len(trajectory.steps)
        row["origin"] = "/".join(f"{(trajectory.origin == o).sum()} {o}" for o in ("dft", "ml")
                                 if (trajectory.origin == o).any()) or "-"
    except IrspecError as error:
        row["frames"], row["note"] = 0, f"ours: {str(error)[-70:]}"
        trajectory = None
    try:
        start = time.perf_counter()
        reference = pymatgen_frames(path, kind)
        if reference is not None:
            row["pmg_s"] = time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - pymatgen raises many kinds on files it cannot read
        reference, row["pmg_frames"] = None, f"error: {type(error).__name__}"
    if reference is not None:
        row["pmg_frames"] = len(reference[0])
        if trajectory is not None and len(reference[0]) == len(trajectory.steps):
            fractional = np.einsum("fnk,fkj->fnj", trajectory.positions, np.linalg.inv(trajectory.cells))
            delta = fractional - reference[0]
            delta -= np.round(delta)
            row["max_dpos"] = float(np.abs(np.einsum("fnj,fjk->fnk", delta, trajectory.cells)).max())
            row["max_dcell"] = float(np.abs(trajectory.cells - reference[1]).max())
    if kind == "outcar":
        try:
            ours = read_born_charges(path).born_charges
        except IrspecError:
            ours = None
        try:
            theirs = pymatgen_born(path)
        except Exception:  # noqa: BLE001
            theirs = None
        if ours is not None or theirs is not None:
            row["born"] = ("ours only" if theirs is None else "pymatgen only" if ours is None
                           else f"{np.abs(ours - theirs).max():.0e}" if ours.shape == theirs.shape else "shapes differ")
    return row


def table(rows):
    head = ("source", "file", "format", "frames (ours)", "DFT/ML", "frames (pymatgen)", "max dpos (A)",
            "max dcell (A)", "Born max dZ (e)", "ours (s)", "pymatgen (s)", "note")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.get("source", ""), row["file"], row["kind"], row.get("frames", ""), row.get("origin", ""),
                 row.get("pmg_frames", "-"), f"{row['max_dpos']:.0e}" if "max_dpos" in row else "-",
                 f"{row['max_dcell']:.0e}" if "max_dcell" in row else "-", row.get("born", "-"),
                 f"{row['ours_s']:.3f}" if "ours_s" in row else "-",
                 f"{row['pmg_s']:.3f}" if "pmg_s" in row else "-", row.get("note", "")]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = pathlib.Path(__file__).resolve().parent
    parser.add_argument("--shared", type=pathlib.Path, default=here.parent.parent / "shared" / "data")
    parser.add_argument("--zro2", type=int, default=10, help="how many ZrO2 OUTCARs of shared/data to read")
    parser.add_argument("--out", type=pathlib.Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        sources = [ase_wheel_files(folder)]
        if args.shared.is_dir():
            sources.append(shared_files(args.shared, args.zro2))
        for label, root, paths in sources:
            for path in paths:
                kind = kind_of(path)
                if kind is None:
                    continue
                row = compare(path, kind, path.relative_to(root).as_posix())
                row["source"] = label
                rows.append(row)
    with contextlib.suppress(OSError):
        load = os.getloadavg()[0]
    report = (f"{platform.node()}: {os.cpu_count()} cores, load average {load:.1f}; "
              f"pymatgen-core {importlib.metadata.version('pymatgen-core')}, ASE {importlib.metadata.version('ase')}; "
              f"command: python benchmarks/vasp_readers.py --zro2 {args.zro2}\n\n" + table(rows))
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()

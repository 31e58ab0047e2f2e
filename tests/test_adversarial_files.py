"""The file-based commands (``fit``, ``predict``, ``pdot``, ``spectrum``, ``engine born-charges``, ``engine
md``) under ordinary mistakes, hostile files, full or read-only disks and signals.

Three classes (docs/reliability.md): outputs (checked before any work, written atomically, a previous file
never destroyed), silent wrong results (refused instead of written with exit code 0), resources (memory
estimated before allocating, documented limits, FIFOs and devices refused instead of hanging).

Every refused case asserts: the documented exit code, exactly one ``Error`` line naming the problem, no
traceback, every file that existed before unchanged (inputs and previous outputs, by SHA-256), no new file
but the engine's summary, and no temporary file left. Most cases run in-process through click's runner;
the signals, the console script and the write-while-killed cases run real subprocesses.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import ase
import ase.io
import numpy as np
import pytest
from ase.build import molecule
from click.testing import CliRunner
from model_structures import fluorite

from aiida_irspec.cli import cli

pytestmark = pytest.mark.adversarial

SMALL = ["--cutoff", "3.6", "--n-radial", "2", "--l-max", "2"]
SPECTRUM = ["spectrum", "--temperature", "300"]
EXECUTABLE = pathlib.Path(sys.executable).parent / "aiida-irspec"


# ---- the workspace ------------------------------------------------------------------------------------------

def fluorite_frames(seeds):
    frames = []
    for seed in seeds:
        atoms = fluorite(seed)
        formal = np.array([4.0 if z == 40 else -2.0 for z in atoms.numbers])
        noise = 0.01 * np.random.default_rng(seed).normal(size=(len(atoms), 9))
        atoms.arrays["born_charges"] = formal[:, None] * np.eye(3).ravel() + noise
        frames.append(atoms)
    return frames


def water_dimer():
    first, second = molecule("H2O"), molecule("H2O")
    second.translate([2.9, 0.2, 0.1])
    return first + second


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """Small valid inputs of every command, and a previous output of each kind, in one folder."""
    from aiida_irspec.model import DescriptorSettings, PolarizationModel

    folder = tmp_path_factory.mktemp("adversarial-template")
    frames = fluorite_frames(range(6))
    ase.io.write(folder / "train.extxyz", frames)
    ase.io.write(folder / "val.extxyz", fluorite_frames([100, 101]))
    charges = [atoms.arrays["born_charges"].reshape(-1, 3, 3) for atoms in frames]
    model = PolarizationModel(DescriptorSettings(cutoff=3.6, n_radial=2, l_max=2)).fit(frames, charges)
    model.save(folder / "model.npz")
    ase.io.write(folder / "structure.extxyz", fluorite(50))
    rng = np.random.default_rng(0)
    crystal = fluorite(60)
    np.savez(folder / "traj.npz", times=np.arange(8) * 2.0,
             positions=crystal.positions + 0.01 * rng.normal(size=(8, 12, 3)).cumsum(axis=0),
             velocities=0.005 * rng.normal(size=(8, 12, 3)), cells=np.repeat(crystal.cell.array[None], 8, axis=0),
             numbers=crystal.numbers, pbc=np.ones(3, dtype=bool))
    np.savez(folder / "run_molecule.npz", pdot=rng.normal(size=(256, 3)), times=np.arange(256) * 0.5,
             numbers=water_dimer().numbers)
    np.savez(folder / "run_periodic.npz", pdot=rng.normal(size=(256, 3)), times=np.arange(256) * 0.5,
             numbers=crystal.numbers, volume=np.array(100.0))
    ase.io.write(folder / "water.extxyz", water_dimer(), format="extxyz")
    (folder / "md.json").write_text(json.dumps({"steps": 4, "stride": 2}))
    (folder / "exp.csv").write_text("wavenumber,intensity\n500,0.1\n1000,1.0\n2000,0.3\n")
    (folder / "previous_model.npz").write_bytes((folder / "model.npz").read_bytes())
    (folder / "previous.npz").write_bytes(b"previous result, to be kept")
    (folder / "previous.csv").write_text("# previous spectrum, to be kept\n")
    (folder / "previous.png").write_bytes(b"\x89PNG previous figure, to be kept")
    (folder / "adir").mkdir()
    return folder


@pytest.fixture
def workspace(template, tmp_path, monkeypatch):
    """A fresh copy of the template, the current directory of the test."""
    folder = tmp_path / "work"
    shutil.copytree(template, folder)
    monkeypatch.chdir(folder)
    return folder


def snapshot(folder):
    """{relative path: SHA-256} of every regular file under ``folder``."""
    folder = pathlib.Path(folder)
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()}


def leftovers(*folders):
    """Temporary files of the atomic writer or the output probe left in ``folders``."""
    return [path for folder in folders for path in pathlib.Path(folder).glob(".*")
            if path.name.endswith((".tmp", ".probe"))]


def invoke(arguments, env=None):
    """Run ``aiida-irspec ARGUMENTS`` in-process; returns (exit code, output). No exception but SystemExit."""
    result = CliRunner(env=env).invoke(cli, [str(argument) for argument in arguments])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def refused(arguments, exit_code, says, folders=(".",), new=(), env=None):
    """Assert a clean refusal: ``exit_code``, one ``Error`` line containing ``says``, every file in ``folders``
    unchanged, no new file there but those named in ``new``, no temporary file. Returns the output."""
    before = {folder: snapshot(folder) for folder in folders}
    code, output = invoke(arguments, env)
    assert code == exit_code, output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, output
    assert says in output, output
    for folder in folders:
        after = snapshot(folder)
        assert {name: after.get(name) for name in before[folder]} == before[folder], "a file changed"
        assert set(after) - set(before[folder]) <= set(new), f"new files {set(after) - set(before[folder])}"
    assert not leftovers(*folders)
    return output


def accepted(arguments, env=None):
    code, output = invoke(arguments, env)
    assert code == 0, output
    assert not leftovers(".")
    return output


# The commands, each with the placeholder OUT for the output under test, and the inputs it reads.
COMMANDS = {
    "fit": (["fit", "train.extxyz", *SMALL, "-o", "OUT"], "train.extxyz", "m.npz"),
    "predict": (["predict", "model.npz", "structure.extxyz", "--born-charges", "-o", "OUT"], "structure.extxyz",
                "p.npz"),
    "pdot": (["pdot", "model.npz", "traj.npz", "-o", "OUT"], "traj.npz", "pdot.npz"),
    "spectrum": (["spectrum", "run_molecule.npz", "--dt", "0.5", "--temperature", "300", "--molecules", "2", "-o",
                  "OUT"], "run_molecule.npz", "s.csv"),
    "spectrum-plot": (["spectrum", "run_molecule.npz", "--dt", "0.5", "--temperature", "300", "--molecules", "2",
                       "--experiment", "exp.csv", "-o", "s.csv", "--plot", "OUT"], "exp.csv", "s.png"),
    "engine-born-charges": (["engine", "born-charges", "water.extxyz", "-o", "OUT"], "water.extxyz", "b.npz"),
    "engine-md": (["engine", "md", "water.extxyz", "-s", "md.json", "-o", "OUT"], "md.json", "t.npz"),
    "engine-summary": (["engine", "born-charges", "water.extxyz", "--summary", "OUT"], "water.extxyz", "s.json"),
}
ENGINE_WRITES_SUMMARY = {"engine-born-charges", "engine-md"}


def command(name, output):
    arguments, _, _ = COMMANDS[name]
    return [output if argument == "OUT" else argument for argument in arguments]


# ==== class 1: outputs ==========================================================================================

OUTPUT_MISTAKES = {  # name -> (output path (INPUT: an input of the command), exit code, words of the message)
    "missing-folder": ("missing/out", 14, "does not exist"),
    "under-a-file": ("train.extxyz/out", 14, "is a file, not a folder"),
    "is-an-input": ("INPUT", 14, "one of the command's inputs"),
    "link-to-an-input": ("link", 14, "one of the command's inputs"),
    "a-device": ("/dev/null", 14, "not a regular file (a character device)"),
    "a-directory": ("adir", 2, "is a directory"),
    "a-folder-name": ("new/", 14, "names a folder"),
    "empty": ("", 14, "the output path is empty"),
}


@pytest.mark.parametrize("mistake", list(OUTPUT_MISTAKES))
@pytest.mark.parametrize("name", list(COMMANDS))
def test_output_mistakes_are_refused_before_any_work(workspace, name, mistake):
    """An output that cannot or must not be written: one line, the documented code, nothing changed."""
    path, exit_code, says = OUTPUT_MISTAKES[mistake]
    _, an_input, _ = COMMANDS[name]
    if path == "INPUT":
        path = an_input
    if mistake == "link-to-an-input":
        os.symlink(an_input, "link")
    new = {"summary.json"} if name in ENGINE_WRITES_SUMMARY and exit_code == 14 else set()
    refused(command(name, path), exit_code, says, new=new)
    if new:  # the engine's summary says why
        summary = json.loads(pathlib.Path("summary.json").read_text())
        assert summary["error"] == "output" and summary["exit_code"] == 14


def test_output_folder_checked_before_the_inputs_are_read(workspace):
    """A damaged input and a missing output folder: the output is refused first (nothing was read or fitted)."""
    pathlib.Path("broken.extxyz").write_text("12\nnot an extxyz header\n")
    started = time.perf_counter()
    refused(["fit", "broken.extxyz", *SMALL, "-o", "missing/m.npz"], 14, "does not exist")
    refused(["spectrum", "broken.extxyz", "--dt", "1", "--temperature", "300", "--volume", "10", "-o", "no/s.csv"],
            14, "does not exist")
    assert time.perf_counter() - started < 10


def test_a_bad_experimental_curve_is_found_before_the_spectrum_is_written(workspace):
    pathlib.Path("bad.csv").write_text("wavenumber,intensity\n500,0.1\n1000,nan\n")
    refused([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--experiment", "bad.csv", "-o",
             "s.csv", "--plot", "s.png"], 2, "bad.csv, line 3")


def test_outputs_must_differ(workspace):
    refused(["spectrum", "run_molecule.npz", "--dt", "0.5", "--temperature", "300", "--molecules", "2", "-o", "x.csv",
             "--plot", "x.csv"], 14, "are the same file")
    refused(["engine", "born-charges", "water.extxyz", "-o", "b.npz", "--summary", "b.npz"], 14, "the same file")


@pytest.fixture
def mounted(tmp_path):
    """mount(options) -> a folder with a tmpfs mounted with those options (skip when mounting is refused);
    unmounted at the end."""
    points = []

    def mount(options, name="disk"):
        point = tmp_path / f"{name}{len(points)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        points.append(point)
        return point

    yield mount
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def previous_output(folder, name):
    """A previous file at the output path, kept by every failed write."""
    path = folder / name
    path.write_bytes(b"a previous good output " * 8)
    return path


@pytest.mark.parametrize("name", list(COMMANDS))
def test_read_only_folder(workspace, mounted, name):
    """A read-only file system (a real read-only mount; root ignores permission bits): refused before any
    work, the previous file there untouched."""
    folder = mounted("size=256k", "ro")
    _, _, output_name = COMMANDS[name]
    previous_output(folder, output_name)
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    new = {"summary.json"} if name in ENGINE_WRITES_SUMMARY else set()
    refused(command(name, folder / output_name), 14, "Read-only file system", folders=(".", folder), new=new)


@pytest.mark.parametrize("name", ["fit", "spectrum", "engine-md"])
def test_immutable_folder(workspace, tmp_path, name):
    """chattr +i: a folder even root cannot write in."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    _, _, output_name = COMMANDS[name]
    previous_output(folder, output_name)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        new = {"summary.json"} if name in ENGINE_WRITES_SUMMARY else set()
        refused(command(name, folder / output_name), 14, "cannot write in", folders=(".", folder), new=new)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def fill(folder):
    """Fill the file system of ``folder`` to the last byte."""
    descriptor = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (4096, 1):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * size):
                    pass
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_full_disk(workspace, mounted, name):
    """A disk that fills while the output is written: one line, exit code 14, the previous file intact, no
    half-written or temporary file (the work is done, the write fails)."""
    folder = mounted("size=64k", "full")
    _, _, output_name = COMMANDS[name]
    previous_output(folder, output_name)
    fill(folder)
    # outputs are written one after the other: those written before the one that failed are complete and kept
    new = {"summary.json"} if name in ENGINE_WRITES_SUMMARY else {"s.csv"} if name == "spectrum-plot" else {
        "born_charges.npz"} if name == "engine-summary" else set()
    refused(command(name, folder / output_name), 14, "No space left on device", folders=(".", folder), new=new)


@pytest.mark.parametrize(("name", "arguments", "says"), [
    ("fit", ["fit", "nan.extxyz", *SMALL, "-o", "previous_model.npz"], "finite"),
    ("predict", ["predict", "model.npz", "water.extxyz", "-o", "previous.npz"], "knows species"),
    ("pdot", ["pdot", "model.npz", "water.extxyz", "--timestep", "1", "--route", "polarization", "-o",
              "previous.npz"], "knows species"),
    ("spectrum", ["spectrum", "run_molecule.npz", "--dt", "1", "--temperature", "300", "--molecules", "2", "-o",
                  "previous.csv"], "fs apart"),
    ("spectrum-plot", ["spectrum", "run_molecule.npz", "--dt", "0.5", "--temperature", "300", "--molecules", "3",
                       "-o", "s.csv", "--plot", "previous.png"], "equal molecules"),
    ("engine-born-charges", ["engine", "born-charges", "close.extxyz", "-o", "previous.npz"], "overlapping atoms"),
    ("engine-md", ["engine", "md", "water.extxyz", "-s", "bad.json", "-o", "previous.npz"], "seed"),
], ids=lambda value: value if isinstance(value, str) and " " not in value and len(value) < 25 else "")
def test_a_failed_command_keeps_the_previous_output(workspace, name, arguments, says):
    crystal = fluorite_frames([7])[0]
    crystal.arrays["born_charges"][0, 0] = np.nan
    ase.io.write("nan.extxyz", crystal)
    close = water_dimer()
    close.positions[1] = close.positions[0] + [0.01, 0, 0]
    ase.io.write("close.extxyz", close, format="extxyz")
    pathlib.Path("bad.json").write_text(json.dumps({"steps": 4, "seed": -3}))
    exit_code = 12 if name == "engine-born-charges" else 2
    refused(arguments, exit_code, says, new={"summary.json"} if name.startswith("engine") else set())


# ---- signals, with real subprocesses and real signals ----------------------------------------------------------

def environment():
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def needs_console_script():
    if not EXECUTABLE.exists():
        pytest.skip("the aiida-irspec console script is not installed next to this Python")


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_fit_keeps_the_previous_model(workspace, number):
    """Ctrl-C (or SIGTERM) while ``fit -o m.npz`` runs: the previous good m.npz is kept byte for byte, no
    temporary file is left, one Error line, exit code 130 (143) and no traceback."""
    needs_console_script()
    ase.io.write("many.extxyz", fluorite_frames(range(200, 400)))
    shutil.copy("model.npz", "m.npz")
    before = pathlib.Path("m.npz").read_bytes()
    process = subprocess.Popen([str(EXECUTABLE), "fit", "many.extxyz", "-o", "m.npz", "--progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    seen = b""
    deadline = time.monotonic() + 120
    while b"fit:" not in seen and time.monotonic() < deadline:  # the fit loop has started
        seen += os.read(process.stderr.fileno(), 256)
    assert b"fit:" in seen, seen
    time.sleep(0.3)
    process.send_signal(number)
    stdout, stderr = process.communicate(timeout=120)
    stderr = (seen + stderr).decode()
    assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[number], stderr
    assert "Traceback" not in stderr + stdout.decode()
    assert [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("Error")] == [
        f"Error: stopped by {number.name}; files written before are unchanged"]
    assert pathlib.Path("m.npz").read_bytes() == before
    assert not leftovers(".")


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_engine_md_writes_its_summary(workspace, number):
    """A signal while ``engine md`` runs: exit 130 / 143, one Error line, the summary says why, no trajectory
    and no temporary file (a previous trajectory at the path is kept)."""
    needs_console_script()
    pathlib.Path("long.json").write_text(json.dumps({"steps": 200000, "stride": 10}))
    pathlib.Path("t.npz").write_bytes(b"previous trajectory")
    process = subprocess.Popen([str(EXECUTABLE), "engine", "md", "water.extxyz", "-s", "long.json", "-o", "t.npz",
                                "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    first = process.stderr.readline()  # the first progress line: the MD runs
    assert first.startswith(b"step"), first
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    stderr = stderr.decode()
    assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[number], stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("Error")] == [
        f"Error: stopped by {number.name}; files written before are unchanged"]
    summary = json.loads(pathlib.Path("summary.json").read_text())
    assert summary["error"] == {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}[number]
    assert summary["exit_code"] == process.returncode
    assert pathlib.Path("t.npz").read_bytes() == b"previous trajectory" and not leftovers(".")


WRITER = """
import sys, numpy as np
from aiida_irspec.files import savez
value = 0
while True:
    value += 1
    savez(sys.argv[1], data=np.full(2_000_000, value, dtype=np.float64))
    print(value, flush=True)
"""


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_writer_killed_at_random_moments_leaves_a_whole_file(tmp_path, number):
    """A process writing a 16 MB npz again and again through files.savez, killed at random moments 8 times:
    the file is always complete and readable (the old or the new version). After SIGINT no temporary file is
    left; after SIGKILL one may be (nothing can run on SIGKILL), beside an intact target."""
    target = tmp_path / "data.npz"
    rng = random.Random(3)
    for attempt in range(8):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=environment())
        process.stdout.readline()  # one complete write exists
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(number)
        _, stderr = process.communicate(timeout=60)
        with np.load(target) as data:
            values = data["data"]
        assert values.shape == (2_000_000,) and np.all(values == values[0]) and values[0] >= 1
        if number == signal.SIGINT:
            assert not leftovers(tmp_path), (attempt, stderr)
        for stale in leftovers(tmp_path):
            stale.unlink()


def test_atomic_write_cleans_up_on_interrupt(tmp_path):
    from aiida_irspec.files import atomic_write, write_bytes

    target = tmp_path / "m.npz"
    write_bytes(target, b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as handle:
            handle.write(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and not leftovers(tmp_path)


# ---- through the console script: what a shell sees ------------------------------------------------------------

@pytest.mark.parametrize(("arguments", "exit_code", "says"), [
    (["fit", "train.extxyz", "-o", "missing/m.npz"], 14, "does not exist"),
    (["spectrum", "run_molecule.npz", "--dt", "2", "--temperature", "300", "--molecules", "2", "-o", "s.csv"], 2,
     "fs apart"),
    (["engine", "born-charges", "close.extxyz"], 12, "overlapping atoms"),
    (["predict", "model.npz", "fifo", "-o", "p.npz"], 2, "is a FIFO"),
], ids=["fit-missing-folder", "spectrum-wrong-dt", "engine-overlap", "predict-fifo"])
def test_console_script_stderr(workspace, arguments, exit_code, says):
    needs_console_script()
    close = water_dimer()
    close.positions[1] = close.positions[0] + [0.01, 0, 0]
    ase.io.write("close.extxyz", close, format="extxyz")
    os.mkfifo("fifo")
    before = snapshot(".")
    done = subprocess.run([str(EXECUTABLE), *arguments], capture_output=True, text=True, timeout=120,
                          env=environment())
    assert done.returncode == exit_code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len([line for line in done.stderr.splitlines() if line.startswith("Error")]) == 1 and says in done.stderr
    after = snapshot(".")
    assert {name: after.get(name) for name in before} == before and not leftovers(".")


# ==== class 4: silent wrong results ============================================================================

@pytest.mark.parametrize(("dt", "stride", "fine"), [
    ("1", "1", False), ("0.5", "2", False), ("0.25", "1", False), ("2", "1", False),
    ("0.5", "1", True), ("0.25", "2", True),
], ids=["dt-1", "dt-0.5-stride-2", "dt-0.25", "dt-2", "matching", "matching-with-stride"])
def test_spectrum_times_must_match_dt_and_stride(workspace, dt, stride, fine):
    """A run stores its times 0.5 fs apart: a --dt x --stride of anything else would put every line at a
    wrong wavenumber with exit code 0."""
    arguments = [*SPECTRUM, "run_molecule.npz", "--molecules", "2", "--dt", dt, "--stride", stride, "-o", "s.csv"]
    if fine:
        accepted(arguments)
    else:
        refused(arguments, 2, "fs apart (stored 'times'), but --dt x --stride gives")


def test_runs_of_different_spacing_are_not_averaged(workspace):
    np.savez("coarse.npz", pdot=np.random.default_rng(1).normal(size=(256, 3)), times=np.arange(256) * 1.0)
    refused([*SPECTRUM, "run_molecule.npz", "coarse.npz", "--molecules", "2", "--dt", "0.5", "-o", "s.csv"], 2,
            "coarse.npz: its samples are 1 fs apart")


def test_uneven_times_are_refused(workspace):
    times = np.arange(256) * 0.5
    times[128:] += 3.0  # two runs joined with a gap
    np.savez("joined.npz", pdot=np.random.default_rng(2).normal(size=(256, 3)), times=times)
    refused([*SPECTRUM, "joined.npz", "--molecules", "2", "--dt", "0.5", "-o", "s.csv"], 2, "not evenly spaced")


@pytest.mark.parametrize(("molecules", "fine"), [("3", False), ("4", False), ("5", False), ("6", False),
                                                 ("1", True), ("2", True)])
def test_molecules_must_divide_the_stored_atoms(workspace, molecules, fine):
    """The run of a water dimer (H4O2) cannot hold 3, 4, 5 or 6 equal molecules."""
    arguments = [*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", molecules, "-o", "s.csv"]
    if fine:
        accepted(arguments)
    else:
        refused(arguments, 2, f"do not split into {molecules} equal molecules")


@pytest.mark.parametrize(("volume", "fine"), [("200", False), ("50", False), ("102", False), ("100.5", True),
                                              ("100", True)])
def test_volume_must_match_the_stored_cell(workspace, volume, fine):
    arguments = [*SPECTRUM, "run_periodic.npz", "--dt", "0.5", "--volume", volume, "-o", "s.csv"]
    if fine:
        accepted(arguments)
    else:
        refused(arguments, 2, "its cell volume is 100 A^3")


def test_pdot_output_carries_what_spectrum_checks(workspace):
    accepted(["pdot", "model.npz", "traj.npz", "-o", "pdot.npz"])
    with np.load("pdot.npz") as data:
        assert {"times", "pdot", "numbers", "volume"} <= set(data.files)
        volume = float(data["volume"])
    assert volume == pytest.approx(abs(np.linalg.det(fluorite(60).cell.array)))


DUPLICATES = {  # name -> (training files, validation files, words)
    "same-file-twice": (["train.extxyz", "train.extxyz"], [], "is the file train.extxyz (training) again"),
    "symbolic-link": (["train.extxyz", "link.extxyz"], [], "is the file train.extxyz (training) again"),
    "hard-link": (["train.extxyz", "hard.extxyz"], [], "is the file train.extxyz (training) again"),
    "repeated-frame": (["repeated.extxyz"], [], "repeated.extxyz (frame 2) and repeated.extxyz (frame 6) hold the "
                       "same structure"),
    "copy-of-a-file": (["train.extxyz", "copy.extxyz"], [], "hold the same structure"),
    "validation-is-training": (["train.extxyz"], ["train.extxyz"], "(--validation) is the file train.extxyz"),
    "validation-frame-in-training": (["train.extxyz"], ["leak.extxyz"], "hold the same structure"),
    "rounding-only": (["train.extxyz", "rounded.extxyz"], [], "hold the same structure"),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_fit_refuses_a_structure_given_twice(workspace, case):
    """A structure given twice would sit in two cross-validation folds (or in training and validation) and
    make the errors look smaller than they are: refused, naming both."""
    frames = ase.io.read("train.extxyz", index=":")
    os.symlink("train.extxyz", "link.extxyz")
    os.link("train.extxyz", "hard.extxyz")
    shutil.copy("train.extxyz", "copy.extxyz")
    ase.io.write("repeated.extxyz", frames + [frames[2]])
    ase.io.write("leak.extxyz", [fluorite_frames([100])[0], frames[4]])
    nudged = frames[3].copy()
    nudged.positions += 1e-9  # what a reader rounding the last digit changes
    ase.io.write("rounded.extxyz", [nudged])
    training, validation, says = DUPLICATES[case]
    refused(["fit", *training, *[x for path in validation for x in ("--validation", path)], *SMALL, "-o", "m.npz"],
            2, says)


@pytest.mark.shared
def test_fit_refuses_an_outcar_given_twice(workspace, zro2_outcars):
    refused(["fit", zro2_outcars[0], zro2_outcars[1], zro2_outcars[0], *SMALL, "-o", "m.npz"], 2, "again")


def test_fit_accepts_different_structures(workspace):
    accepted(["fit", "train.extxyz", "--validation", "val.extxyz", *SMALL, "-o", "m.npz"])


@pytest.fixture
def nan_model(workspace):
    """The template model with one NaN weight: its predictions are NaN."""
    with np.load("model.npz") as data:
        arrays = {name: data[name] for name in data.files}
    arrays["weights"] = arrays["weights"].copy()
    arrays["weights"][arrays["weights"] != 0] = np.nan
    np.savez("nan_model.npz", **arrays)
    return "nan_model.npz"


@pytest.mark.parametrize("arguments", [
    ["predict", "nan_model.npz", "structure.extxyz", "-o", "p.npz"],
    ["predict", "nan_model.npz", "structure.extxyz", "--born-charges", "-o", "p.npz"],
    ["pdot", "nan_model.npz", "traj.npz", "-o", "p.npz"],
    ["pdot", "nan_model.npz", "traj.npz", "--route", "polarization", "-o", "p.npz"],
], ids=["predict-P", "predict-Z", "pdot-velocity", "pdot-polarization"])
def test_a_nan_in_a_result_is_an_error_not_a_file(nan_model, arguments):
    refused(arguments, 2, "holds NaN or infinite values")


@pytest.mark.parametrize("scale", [1e200, 1e160], ids=["1e200", "1e160"])
def test_a_spectrum_that_overflows_is_not_written(workspace, scale):
    np.savez("huge.npz", pdot=np.random.default_rng(5).normal(size=(256, 3)) * scale)
    refused([*SPECTRUM, "huge.npz", "--dt", "0.5", "--volume", "100", "-o", "s.csv"], 2, "NaN or infinite")


@pytest.mark.parametrize("distance", [0.0, 1e-5, 0.01, 0.3], ids=["0", "1e-5", "0.01", "0.3"])
def test_overlapping_atoms_are_an_engine_failure(workspace, distance):
    """tblite fails for exactly overlapping atoms and gives finite nonsense (exit 0 before) for nearly
    overlapping ones: both are refused (exit 12) before the engine runs, summary error 'engine'."""
    close = water_dimer()
    close.positions[4] = close.positions[0] + [distance, 0, 0]
    ase.io.write("close.extxyz", close, format="extxyz")
    refused(["engine", "born-charges", "close.extxyz"], 12, "overlapping atoms", new={"summary.json"})
    assert json.loads(pathlib.Path("summary.json").read_text())["error"] == "engine"
    assert not pathlib.Path("born_charges.npz").exists()


COUNTS = [  # (command line, words); every count where a positive one is meant
    (["fit", "train.extxyz", "-o", "m.npz", "--basis", "sparse", "--n-sparse", "0"], "--n-sparse"),
    (["fit", "train.extxyz", "-o", "m.npz", "--basis", "sparse", "--n-sparse", "-4"], "--n-sparse"),
    (["fit", "train.extxyz", "-o", "m.npz", "--n-radial", "0"], "--n-radial"),
    (["fit", "train.extxyz", "-o", "m.npz", "--n-radial", "-1"], "--n-radial"),
    (["fit", "train.extxyz", "-o", "m.npz", "--l-max", "0"], "--l-max"),
    (["fit", "train.extxyz", "-o", "m.npz", "--l-max", "-2"], "--l-max"),
    (["predict", "model.npz", "structure.extxyz", "-o", "p.npz", "--batch-size", "0"], "--batch-size"),
    (["predict", "model.npz", "structure.extxyz", "-o", "p.npz", "--batch-size", "-1"], "--batch-size"),
    (["pdot", "model.npz", "traj.npz", "-o", "p.npz", "--batch-size", "0"], "--batch-size"),
    (["pdot", "model.npz", "traj.npz", "-o", "p.npz", "--batch-size", "-3"], "--batch-size"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--stride", "0", "-o", "s.csv"], "--stride"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--stride", "-2", "-o", "s.csv"], "--stride"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "0", "-o", "s.csv"], "molecules"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "-2", "-o", "s.csv"], "molecules"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--bootstrap", "-1", "-o", "s.csv"],
     "--bootstrap"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--bootstrap", "9", "--seed", "-1", "-o",
      "s.csv"], "--seed"),
]
ENGINE_COUNTS = [  # (engine job, settings, words)
    ("md", {"steps": 0}, "number of steps must be a positive integer"),
    ("md", {"steps": -5}, "number of steps must be a positive integer"),
    ("md", {"steps": 4, "stride": 0}, "stride must be a positive integer"),
    ("md", {"steps": 4, "stride": -2}, "stride must be a positive integer"),
    ("md", {"steps": 4, "seed": -1}, "'seed' must be >= 0"),
    ("md", {"steps": 4, "multiplicity": 0}, "multiplicity must be a positive integer"),
    ("born-charges", {"multiplicity": 0}, "multiplicity must be a positive integer"),
    ("born-charges", {"multiplicity": -1}, "multiplicity must be a positive integer"),
]


@pytest.mark.parametrize(("arguments", "says"), COUNTS, ids=lambda value: "" if isinstance(value, list) else value)
def test_counts_must_be_positive(workspace, arguments, says):
    refused(arguments, 2, says)


@pytest.mark.parametrize(("job", "settings", "says"), ENGINE_COUNTS,
                         ids=[f"{job}-{'-'.join(f'{k}={v}' for k, v in s.items())}" for job, s, _ in ENGINE_COUNTS])
def test_engine_counts_must_be_positive(workspace, job, settings, says):
    pathlib.Path("s.json").write_text(json.dumps(settings))
    refused(["engine", job, "water.extxyz", "-s", "s.json"], 2, says, new={"summary.json"})
    assert json.loads(pathlib.Path("summary.json").read_text())["error"] == "input"


def test_born_charges_charge_bounded(workspace):
    pathlib.Path("s.json").write_text(json.dumps({"charge": 1000}))
    refused(["engine", "born-charges", "water.extxyz", "-s", "s.json"], 2, "has 20 electrons", new={"summary.json"})


@pytest.mark.parametrize("value", ["Zr=nan,O=-2", "Zr=inf,O=-2"], ids=["nan", "inf"])
def test_fit_baseline_charges_must_be_finite(workspace, value):
    """A NaN baseline charge gave a numpy traceback in the fit."""
    refused(["fit", "train.extxyz", *SMALL, "-o", "m.npz", "--charges", value], 2, "must be a finite number")


NUMBERS = [  # (option, value, words): real numbers that must be finite and in range
    ("--cutoff", "nan", "not a finite number"), ("--cutoff", "inf", "not a finite number"),
    ("--cutoff", "-1", "not in the range"), ("--cutoff", "0", "not in the range"),
    ("--gaussian-width", "nan", "not a finite number"), ("--gaussian-width", "0", "not in the range"),
    ("--transfer-cutoff", "-1", "not in the range"), ("--polarization-weight", "-1", "not in the range"),
    ("--polarization-weight", "nan", "not a finite number"),
    ("--regularization", "nan", "positive number"), ("--regularization", "-1", "positive number"),
    ("--regularization", "0", "positive number"), ("--regularization", "inf", "positive number"),
    ("--regularization", "lots", "positive number"),
]


@pytest.mark.parametrize(("option", "value", "says"), NUMBERS, ids=[f"{o}={v}" for o, v, _ in NUMBERS])
def test_fit_numbers_must_be_finite_and_in_range(workspace, option, value, says):
    refused(["fit", "train.extxyz", "-o", "m.npz", option, value], 2, says)


# ---- YAML, as the campaign spec and the protocols read it -------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + k)}: &{chr(98 + k)} [{', '.join(['*' + chr(97 + k)] * 10)}]\n" for k in range(8))
YAML_CASES = {  # name -> (text or bytes, words)
    "duplicate-top-level-key": ("name: a\ntemperature: 300\nname: b\n", "duplicate key 'name' (first at line 1)"),
    "duplicate-nested-key": ("spectrum:\n  runs: 4\n  steps: 10\n  runs: 8\n", "line 4"),
    "alias-bomb": (BOMB, "expands to more than 100000 values"),
    "recursive-alias": ("a: &a [1, *a]\n", "refers to a node that contains it"),
    "deep-nesting": ("[" * 5000 + "]" * 5000, "YAML"),
    "python-tag": ("a: !!python/object/apply:os.system [echo]\n", "could not determine a constructor"),
    "not-text": (b"\x80\x81\xfe binary", "not a text (UTF-8) file"),
    "cut-off": ("spectrum:\n  runs: [1, 2\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_yaml_reader_refuses(tmp_path, case):
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.files import load_yaml

    content, says = YAML_CASES[case]
    path = tmp_path / "spec.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    started = time.perf_counter()
    with pytest.raises(InputError, match=None) as raised:
        load_yaml(path)
    assert says in str(raised.value) and str(path) in str(raised.value)
    assert time.perf_counter() - started < 5


def test_yaml_reader_keeps_what_is_valid(tmp_path):
    """Anchors within the bound and merge keys still work; a merged key overridden once is not a duplicate."""
    from aiida_irspec.files import load_yaml

    path = tmp_path / "spec.yaml"
    path.write_text("base: &base {runs: 4, steps: 10}\nspectrum:\n  <<: *base\n  runs: 8\nlist: [*base, *base]\n")
    assert load_yaml(path) == {"base": {"runs": 4, "steps": 10}, "spectrum": {"runs": 8, "steps": 10},
                               "list": [{"runs": 4, "steps": 10}] * 2}


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "too-large"])
def test_yaml_reader_refuses_files_that_are_not_yaml_files(tmp_path, kind):
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.files import load_yaml

    path = {"device": pathlib.Path("/dev/zero"), "directory": tmp_path}.get(kind, tmp_path / "spec.yaml")
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "too-large":
        path.write_text("# padding\n" * 1_000_000)
    with pytest.raises(InputError, match="not a regular file|larger than"):
        load_yaml(path, max_bytes=1_000_000)


# ==== class 5: resources =======================================================================================

@pytest.mark.parametrize(("arguments", "env", "says"), [
    (["fit", "train.extxyz", *SMALL, "-o", "m.npz"], {"IRSPEC_MEMORY_LIMIT": "1M"}, "a fit of {small_columns} columns"),
    (["fit", "five.extxyz", "--baseline", "zero", "-o", "m.npz"], {"IRSPEC_MEMORY_LIMIT": "16G"},
     "a fit of {default_columns} columns (5 species)"),
    (["fit", "five.extxyz", "--baseline", "zero", "--kind", "auto", "-o", "m.npz"], {"IRSPEC_MEMORY_LIMIT": "16G"},
     "(5 species) would need about"),
    (["predict", "model.npz", "structure.extxyz", "--born-charges", "-o", "p.npz"], {"IRSPEC_MEMORY_LIMIT": "100"},
     "the predicted arrays of 1 frames"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--bootstrap", "100000", "-o", "s.csv"],
     {"IRSPEC_MEMORY_LIMIT": "10M"}, "with 100000 bootstrap resamples would need about"),
    ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "-o", "s.csv"], {"IRSPEC_MEMORY_LIMIT": "1K"},
     "the spectrum of 1 runs"),
], ids=["fit-limit", "fit-five-species", "fit-auto-five-species", "predict", "spectrum-bootstrap", "spectrum"])
def test_memory_estimated_and_refused_before_allocating(workspace, arguments, env, says):
    """The estimate is compared with the limit (80% of the memory, or IRSPEC_MEMORY_LIMIT) before the big
    arrays exist: exit 15, the estimate in the message, in well under a second of work."""
    atoms = ase.Atoms("HCNOS", positions=np.arange(15).reshape(5, 3) * 0.9)
    atoms.arrays["born_charges"] = np.zeros((5, 9))
    stretched = atoms.copy()
    stretched.positions *= 1.1
    ase.io.write("five.extxyz", [atoms, stretched])
    from aiida_irspec.model.descriptors import DescriptorSettings
    from aiida_irspec.model.kinds import ModelSpace
    from aiida_irspec.model.settings import ModelSettings

    kind = ModelSettings().kind
    default_columns = ModelSpace(kind, DescriptorSettings(), [1, 6, 7, 8, 16]).n_columns
    small_columns = ModelSpace(kind, DescriptorSettings(cutoff=3.6, n_radial=2, l_max=2), [8, 40]).n_columns
    started = time.perf_counter()
    output = refused(arguments, 15, says.format(default_columns=default_columns, small_columns=small_columns), env=env)
    assert "would need about" in output and "more than the limit" in output
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize(("option", "value"), [("--l-max", "40"), ("--l-max", "17"), ("--n-radial", "24"),
                                               ("--n-radial", "30"), ("--cutoff", "1000"), ("--cutoff", "25"),
                                               ("--transfer-cutoff", "50"), ("--gaussian-width", "10")])
def test_fit_limits_at_option_parsing(workspace, option, value):
    """Documented limits, refused before anything is read (l_max 40 took 22 s to set up and asked for 28 GB;
    featomic's radial basis is singular from 24 functions on)."""
    started = time.perf_counter()
    refused(["fit", "train.extxyz", "-o", "m.npz", option, value], 2, "is not in the range")
    assert time.perf_counter() - started < 5


SPECTRUM_LIMITS = [  # (option, value, words): the spectrum settings' documented ranges
    ("--bootstrap", "1000000000", "--bootstrap: 1000000000 is out of range"),
    ("--volume", "1e300", "--volume: 1e+300 is out of range"), ("--volume", "nan", "--volume: nan is not allowed"),
    ("--width", "1e9", "--width: 1000000000.0 is out of range"), ("--width-fs", "inf", "--width-fs: inf"),
    ("--max-correlation", "1e300", "--max-correlation: 1e+300 is out of range"),
    ("--max-frequency", "nan", "--max-frequency: nan is not allowed"),
]


@pytest.mark.parametrize(("option", "value", "says"), SPECTRUM_LIMITS, ids=[f"{o}={v}" for o, v, _ in SPECTRUM_LIMITS])
def test_spectrum_limits_before_any_work(workspace, option, value, says):
    arguments = {"--dt": "0.5", "--volume": "100", option: value}
    refused([*SPECTRUM, "run_periodic.npz", *[x for pair in arguments.items() for x in pair], "-o", "s.csv"], 2, says)


@pytest.mark.parametrize("xlim", [("nan", "100"), ("500", "100"), ("100", "inf")], ids=["nan", "reversed", "inf"])
def test_spectrum_plot_range_checked_before_any_work(workspace, xlim):
    """A plot range matplotlib refuses (NaN: a traceback after the CSV was written, before) or a reversed one."""
    refused([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "-o", "s.csv", "--plot", "s.png",
             "--xlim", *xlim], 2, "--xlim: expected two finite wavenumbers LO < HI")


@pytest.mark.parametrize(("settings", "exit_code", "says"), [
    ({"steps": 10**15}, 2, "at most 1000000000 steps"),
    ({"steps": 10**8}, 15, "100000001 stored MD frames of 6 atoms would need about"),
    ({"steps": 10**8, "stride": 10**7}, 0, None),
    ({"steps": 4, "temperature": 1e300}, 2, "at most 100000 K"),
    ({"steps": 4, "temperature": float("inf")}, 2, "at most 100000 K"),
    ({"steps": 4, "timestep": 1e300}, 2, "at most 100 fs"),
    ({"steps": 4, "charge": 1000}, 2, "has 20 electrons when neutral"),
    ({"steps": 4, "charge": -21}, 2, "has 20 electrons when neutral"),
], ids=["steps-1e15", "frames-1e8", "frames-few", "temperature-1e300", "temperature-inf", "timestep-1e300",
        "charge-1000", "charge--21"])
def test_engine_md_limits(workspace, settings, exit_code, says):
    pathlib.Path("s.json").write_text(json.dumps(settings))
    if exit_code == 0:  # few frames: accepted, but stopped right away here (no need to run 1e8 steps)
        from aiida_irspec.engines.jobs import MD_SETTINGS, md_memory, read_settings
        from aiida_irspec.resources import check_memory

        options = read_settings("s.json", MD_SETTINGS)
        check_memory(md_memory(options["steps"] // options["stride"] + 1, 6), "test")
        return
    refused(["engine", "md", "water.extxyz", "-s", "s.json"], exit_code, says, new={"summary.json"})
    summary = json.loads(pathlib.Path("summary.json").read_text())
    assert summary["exit_code"] == exit_code and summary["error"] == ("resources" if exit_code == 15 else "input")


def test_memory_limit_variable_is_checked(workspace):
    refused(["fit", "train.extxyz", *SMALL, "-o", "m.npz"], 2, "IRSPEC_MEMORY_LIMIT='lots'",
            env={"IRSPEC_MEMORY_LIMIT": "lots"})


@pytest.fixture
def fifo(workspace):
    """A FIFO in the workspace, and a watchdog that opens its writing end after 20 s: a command that wrongly
    reads it then gets an end of file instead of hanging the test run (the test then fails on time)."""
    os.mkfifo("pipe")
    stop = threading.Event()

    def unblock():
        if stop.wait(20):
            return
        with contextlib.suppress(OSError):
            os.close(os.open("pipe", os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()
    yield "pipe"
    stop.set()


FIFO_CASES = {  # name -> (command line with PIPE where the FIFO goes, exit code, words, engine summary?)
    "fit-training": (["fit", "PIPE", "-o", "m.npz"], 2, "is a FIFO", False),
    "fit-validation": (["fit", "train.extxyz", "--validation", "PIPE", "-o", "m.npz"], 2, "is a FIFO", False),
    "predict-model": (["predict", "PIPE", "structure.extxyz", "-o", "p.npz"], 2, "is a FIFO", False),
    "predict-structures": (["predict", "model.npz", "PIPE", "-o", "p.npz"], 2, "is a FIFO", False),
    "pdot-model": (["pdot", "PIPE", "traj.npz", "-o", "p.npz"], 2, "is a FIFO", False),
    "pdot-trajectory": (["pdot", "model.npz", "PIPE", "-o", "p.npz"], 2, "is a FIFO", False),
    "spectrum-run": ([*SPECTRUM, "PIPE", "--dt", "1", "--volume", "9", "-o", "s.csv"], 2, "is a FIFO", False),
    "spectrum-experiment": ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--experiment", "PIPE",
                             "-o", "s.csv", "--plot", "s.png"], 2, "is a FIFO", False),
    "engine-structure": (["engine", "born-charges", "PIPE"], 2, "is a FIFO", True),
    "engine-settings": (["engine", "md", "water.extxyz", "-s", "PIPE"], 2, "is a FIFO", True),
    "engine-velocities": (["engine", "md", "water.extxyz", "-s", "md.json", "-v", "PIPE"], 2, "is a FIFO", True),
    "fit-output": (["fit", "train.extxyz", *SMALL, "-o", "PIPE"], 14, "not a regular file (a FIFO)", False),
    "spectrum-output": ([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "-o", "PIPE"], 14,
                        "not a regular file (a FIFO)", False),
}


@pytest.mark.parametrize("case", list(FIFO_CASES))
def test_fifos_are_refused_not_read(fifo, case):
    arguments, exit_code, says, summary = FIFO_CASES[case]
    started = time.perf_counter()
    refused([fifo if argument == "PIPE" else argument for argument in arguments], exit_code, says,
            new={"summary.json"} if summary else set())
    assert time.perf_counter() - started < 15


DEVICES = {
    "fit-training": (["fit", "/dev/zero", "-o", "m.npz"], "character device", False),
    "predict-structures": (["predict", "model.npz", "/dev/zero", "-o", "p.npz"], "character device", False),
    "pdot-trajectory": (["pdot", "model.npz", "/dev/urandom", "-o", "p.npz"], "character device", False),
    "spectrum-run": ([*SPECTRUM, "/dev/zero", "--dt", "1", "--volume", "9", "-o", "s.csv"], "character device", False),
    "engine-structure": (["engine", "born-charges", "/dev/zero"], "character device", True),
    "fit-directory": (["fit", "adir", "-o", "m.npz"], "is a directory", False),
    "spectrum-directory": ([*SPECTRUM, "adir", "--dt", "1", "--volume", "9", "-o", "s.csv"], "is a directory", False),
}


@pytest.mark.parametrize("case", list(DEVICES))
def test_devices_and_directories_are_refused_as_inputs(workspace, case):
    arguments, says, summary = DEVICES[case]
    refused(arguments, 2, says, new={"summary.json"} if summary else set())


# ---- the happy path still works, with every output written once -----------------------------------------------

def test_every_command_still_writes_its_outputs(workspace):
    accepted(["fit", "train.extxyz", *SMALL, "-o", "previous_model.npz"])
    accepted(["predict", "previous_model.npz", "structure.extxyz", "--born-charges", "-o", "p.npz"])
    accepted(["pdot", "model.npz", "traj.npz", "-o", "d.npz"])
    accepted([*SPECTRUM, "run_molecule.npz", "--dt", "0.5", "--molecules", "2", "--experiment", "exp.csv", "-o",
              "previous.csv", "--plot", "previous.png"])
    accepted(["engine", "born-charges", "water.extxyz", "-o", "b.npz"])
    accepted(["engine", "md", "water.extxyz", "-s", "md.json", "-o", "t.npz"])
    assert pathlib.Path("previous.png").read_bytes()[:4] == b"\x89PNG"
    assert pathlib.Path("previous.csv").read_text().startswith("# aiida-irspec IR spectrum")
    with np.load("t.npz") as data:
        assert data["positions"].shape == (3, 6, 3)

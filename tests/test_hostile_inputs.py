"""Hostile inputs at the command line: each one is refused with one ``Error:`` line that names the problem,
a non-zero exit code and no traceback; a trajectory whose atoms jump across the cell gives the same
result as the continuous one.

Cases already covered elsewhere are not repeated here (docs/reliability.md lists them): malformed
OUTCAR / vasprun.xml at the reader (test_io_vasp.py), a model asked about a species it never saw
(``predict``, test_model_cli.py), bad spectrum runs and NaN in ``pdot`` series (test_cli_spectrum.py),
spec values out of range (test_campaign_spec.py), a time step too large for the dynamics
(test_engines_tblite.py, test_tblite_calcjobs.py).
"""

import json
import pathlib
import subprocess
import sys

import ase
import ase.io
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from aiida_irspec.cli import cli
from campaign_helpers import SMALL_DESCRIPTOR, WATER_DIMER, dimer_model, dimer_references, tiny_campaign_spec, \
    water_dimer_md


def refused(*arguments, says, exit_code=2):
    """Run ``aiida-irspec ARGUMENTS`` in-process: exit ``exit_code``, one ``Error:`` line containing ``says``,
    no traceback. Returns the output."""
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == exit_code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert says in result.output, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A fitted water-dimer model, its MD trajectory (npz) and a valid campaign spec, in one folder."""
    folder = tmp_path_factory.mktemp("hostile")
    dimer_model().save(folder / "model.npz")
    water_dimer_md().save_npz(folder / "trajectory.npz")
    return folder


def npz_like(files, path, **changes):
    """A copy at ``path`` of the engine trajectory npz of ``files`` with some arrays replaced (None: left out)."""
    with np.load(files / "trajectory.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def with_nan(array, index=(0, 0, 0)):
    array = np.array(array, dtype=float)
    array[index] = np.nan
    return array


# ---- structures and trajectories -----------------------------------------------------------------------

def test_predict_refuses_nan_and_infinite_positions(files, tmp_path):
    for bad in (np.nan, np.inf):
        atoms = ase.io.read(WATER_DIMER)
        atoms.positions[2, 1] = bad
        ase.io.write(tmp_path / "bad.extxyz", atoms)
        refused("predict", files / "model.npz", tmp_path / "bad.extxyz", "-o", tmp_path / "o.npz",
                says="positions and cell must be finite")
    assert not (tmp_path / "o.npz").exists()


def test_empty_structure_and_trajectory_files(files, tmp_path):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    refused("predict", files / "model.npz", empty, "-o", tmp_path / "o.npz", says="Empty file")
    refused("pdot", files / "model.npz", empty, "--timestep", "5", "-o", tmp_path / "o.npz", says="Empty file")
    frames = npz_like(files, tmp_path / "none.npz", times=np.zeros(0), positions=np.zeros((0, 6, 3)),
                      cells=np.zeros((0, 3, 3)), velocities=np.zeros((0, 6, 3)))
    refused("pdot", files / "model.npz", frames, "-o", tmp_path / "o.npz", says="at least one frame")


@pytest.mark.parametrize(("changes", "says"), [
    ({"positions": "nan"}, "finite numbers in 'positions'"),
    ({"velocities": "nan"}, "finite numbers in 'velocities'"),
    ({"cells": "inf"}, "finite numbers in 'cells'"),
    ({"positions": "three atoms"}, "'positions' of shape (61, 6, 3)"),
    ({"times": "reversed"}, "increasing 'times'"),
    ({"numbers": None}, "missing numbers"),
], ids=["nan-positions", "nan-velocities", "inf-cell", "wrong-shape", "times-backwards", "no-numbers"])
def test_pdot_refuses_damaged_npz_trajectories(files, tmp_path, changes, says):
    with np.load(files / "trajectory.npz") as data:
        made = {"nan": lambda key: with_nan(data[key]), "inf": lambda key: data[key] * np.inf,
                "three atoms": lambda key: data[key][:, :3], "reversed": lambda key: data[key][::-1]}
        arrays = {key: None if how is None else made[how](key) for key, how in changes.items()}
    path = npz_like(files, tmp_path / "bad.npz", **arrays)
    refused("pdot", files / "model.npz", path, "-o", tmp_path / "o.npz", says=says)


@pytest.mark.parametrize("timestep", ["0", "-2", "nan", "inf"])
def test_pdot_refuses_a_time_step_that_is_not_positive(files, tmp_path, timestep):
    ase.io.write(tmp_path / "t.extxyz", [ase.io.read(WATER_DIMER)] * 3)
    refused("pdot", files / "model.npz", tmp_path / "t.extxyz", "--timestep", timestep, "--route", "polarization",
            "-o", tmp_path / "o.npz", says="give the time between frames")


def test_pdot_refuses_frames_with_other_atoms_and_unknown_species(files, tmp_path):
    dimer = ase.io.read(WATER_DIMER)
    ase.io.write(tmp_path / "mixed.extxyz", [dimer, dimer[:3]])
    refused("pdot", files / "model.npz", tmp_path / "mixed.extxyz", "--timestep", "5", "--route", "polarization",
            "-o", tmp_path / "o.npz", says="the same atoms in every frame")
    salt = ase.Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]])
    ase.io.write(tmp_path / "salt.extxyz", [salt, salt])
    refused("pdot", files / "model.npz", tmp_path / "salt.extxyz", "--timestep", "5", "--route", "polarization",
            "-o", tmp_path / "o.npz", says="the model knows species ['H', 'O'], not ['Na', 'Cl']")


@pytest.mark.parametrize("size", ["0", "-4"])
def test_batch_size_must_be_positive(files, tmp_path, size):
    refused("pdot", files / "model.npz", files / "trajectory.npz", "--batch-size", size, "-o", tmp_path / "o.npz",
            says="--batch-size")
    refused("predict", files / "model.npz", WATER_DIMER, "--batch-size", size, "-o", tmp_path / "o.npz",
            says="--batch-size")


def test_truncated_model_file(files, tmp_path):
    truncated = tmp_path / "model.npz"
    truncated.write_bytes((files / "model.npz").read_bytes()[:2000])
    refused("pdot", truncated, files / "trajectory.npz", "-o", tmp_path / "o.npz",
            says="not an aiida-irspec polarization model file")


def test_archives_cut_at_their_front_are_refused(files, tmp_path):
    """An .npz archive that lost the bytes before its first member reads as a bare .npy array to numpy: the
    model and trajectory readers refuse it with a message instead of a TypeError."""
    with np.load(files / "trajectory.npz") as trajectory:  # stored compressed: an uncompressed copy to cut
        np.savez(tmp_path / "trajectory.npz", **trajectory)
    for source, arguments in ((files / "model.npz", lambda cut: (cut, files / "trajectory.npz")),
                              (tmp_path / "trajectory.npz", lambda cut: (files / "model.npz", cut))):
        data = source.read_bytes()
        cut = tmp_path / f"cut-{source.name}"
        cut.write_bytes(data[data.index(b"\x93NUMPY"):])
        assert isinstance(np.load(cut), np.ndarray)  # what numpy makes of it
        refused("pdot", *arguments(cut), "-o", tmp_path / "o.npz", says="a single .npy array")


# ---- a trajectory whose atoms jump across the cell ----------------------------------------------------

@pytest.fixture(scope="module")
def charged_model(files):
    """A water-dimer model with baseline charges O -0.8, H +0.4: its P = sum q x + learned part changes by
    q L when an atom is folded back by a lattice vector L."""
    from aiida_irspec.model import DescriptorSettings, PolarizationModel

    model = PolarizationModel(DescriptorSettings(**SMALL_DESCRIPTOR), baseline={8: -0.8, 1: 0.4})
    model.fit(*dimer_references())
    model.save(files / "charged.npz")
    return model


@pytest.mark.parametrize("form", ["npz", "extxyz"])
def test_atoms_jumping_across_the_cell_give_the_continuous_result(files, charged_model, tmp_path, form):
    """The water dimer drifting through a periodic 7 A box: folded back into the cell at every frame (atoms
    jump by a lattice vector), ``pdot`` gives the P(t) - P(0) of the continuous trajectory, which differs
    from that of the folded frames taken as they are."""
    result = water_dimer_md()
    cell = np.eye(3) * 7.0
    drift = result.times[:, None, None] * np.array([0.031, -0.017, 0.023])  # Angstrom/fs, crosses the box
    continuous = result.positions + drift
    folded = continuous - np.floor(continuous / 7.0) * 7.0
    jumps = np.abs(np.diff(folded, axis=0)).max()
    assert jumps > 3.5  # atoms did jump across the cell
    outputs = {}
    for name, positions in (("continuous", continuous), ("folded", folded)):
        frames = [ase.Atoms(numbers=result.numbers, positions=p, cell=cell, pbc=True) for p in positions]
        if form == "npz":
            path = npz_like(files, tmp_path / f"{name}.npz", positions=positions,
                            cells=np.repeat(cell[None], len(frames), 0), pbc=np.ones(3, bool),
                            velocities=result.velocities + drift[1] / result.times[1])
            extra = []
        else:
            path = tmp_path / f"{name}.extxyz"
            ase.io.write(path, frames)
            extra = ["--timestep", str(result.times[1])]
        out = tmp_path / f"{name}-{form}.npz"
        done = CliRunner().invoke(cli, ["pdot", str(files / "charged.npz"), str(path), "--route", "polarization",
                                        "-o", str(out), *extra])
        assert done.exit_code == 0, done.output
        outputs[name] = np.load(out)["polarization"]
    change = {name: value - value[0] for name, value in outputs.items()}  # P is defined up to q L: compare changes
    np.testing.assert_allclose(change["folded"], change["continuous"], rtol=0, atol=1e-8)
    raw = charged_model.predict_polarization(
        [ase.Atoms(numbers=result.numbers, positions=p, cell=cell, pbc=True) for p in folded])
    assert np.abs(raw - raw[0] - change["continuous"]).max() > 1.0  # the check above can fail: jumps of q L


# ---- spectrum: temperatures, volumes, time steps ---------------------------------------------------------

@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "run.npz"
    np.savez(path, pdot=np.random.default_rng(0).normal(size=(256, 3)))
    return path


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--temperature", "0", "temperature (K) must be a positive number"),
    ("--temperature", "-5", "temperature (K) must be a positive number"),
    ("--temperature", "nan", "temperature (K) must be a positive number"),
    ("--volume", "0", "--volume: 0.0 is out of range; expected a finite number > 0"),
    ("--volume", "-3", "--volume: -3.0 is out of range; expected a finite number > 0"),
    ("--volume", "inf", "--volume: inf is not allowed; expected a finite number > 0"),
    ("--molecules", "0", "--molecules: 0 is out of range; expected an integer >= 1"),
    ("--dt", "0", "--dt must be a positive number of fs"),
    ("--dt", "-1", "--dt must be a positive number of fs"),
    ("--dt", "nan", "--dt must be a positive number of fs"),
    ("--dt", "inf", "--dt must be a positive number of fs"),
    ("--stride", "0", "--stride at least 1"),
])
def test_spectrum_refuses_non_physical_numbers(run_file, tmp_path, option, value, says):
    arguments = {"--dt": "1", "--temperature": "300", "--volume": "100", "--stride": "1"}
    if option == "--molecules":
        del arguments["--volume"]
    arguments[option] = value
    refused("spectrum", run_file, *[x for pair in arguments.items() for x in pair], "-o", tmp_path / "s.csv",
            says=says)
    assert not (tmp_path / "s.csv").exists()


# ---- the engine command ------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "says"), [
    ({"temperature": -1.0}, "temperature must be >= 0 K"),
    ({"temperature": 0.0}, "NVT run needs a temperature above 0 K"),
    ({"temperature": float("nan")}, "temperature must be >= 0 K"),
    ({"timestep": 0.0}, "time step must be positive"),
    ({"timestep": -0.5}, "time step must be positive"),
    ({"timestep": float("inf")}, "at most 100 fs"),
    ({"steps": "10"}, "setting 'steps' must be of type int"),
    ({"thermostat": "nose"}, "thermostat"),
])
def test_engine_md_refuses_bad_settings(tmp_path, monkeypatch, settings, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps({"steps": 5, **settings}))
    output = refused("engine", "md", WATER_DIMER, "-s", "settings.json", says=says)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["error"] == "input" and summary["exit_code"] == 2 and says in output


def test_engine_refuses_nan_positions_as_input_not_as_engine_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atoms = ase.io.read(WATER_DIMER)
    atoms.positions[1, 1] = np.nan
    ase.io.write("nan.extxyz", atoms)
    refused("engine", "born-charges", "nan.extxyz", says="finite positions and cell")
    (tmp_path / "settings.json").write_bytes(b"\x80\x81 not text")
    refused("engine", "md", WATER_DIMER, "-s", "settings.json", says="a JSON object (UTF-8 text)")


# ---- the campaign spec -------------------------------------------------------------------------------------

def spec_file(folder, **changes):
    """The tiny campaign spec with some values changed (``section__key=value``), as a YAML file."""
    spec = tiny_campaign_spec("tblite@localhost", "irspec@localhost")
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = spec
        for parent in parents:
            target = target[parent]
        target[key] = value
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


WRONG_VALUES = [
    ({"temperature": float("nan")}, "temperature: nan is not allowed"),
    ({"temperature": float("inf")}, "temperature: inf is not allowed"),
    ({"temperature": -5}, "temperature: -5 is out of range"),
    ({"temperature": "hot"}, "temperature: 'hot' is not allowed; expected a finite number > 0"),
    ({"sampling__timestep": float("nan")}, "sampling.timestep: nan is not allowed"),
    ({"sampling__timestep": 0}, "sampling.timestep: 0 is out of range"),
    ({"sampling__steps": [1, 2]}, "sampling.steps: [1, 2] is not allowed; expected an integer"),
    ({"spectrum__runs__number": 1.5}, "spectrum.runs.number: 1.5 is not allowed; expected an integer"),
    ({"spectrum__analysis__molecules": True}, "spectrum.analysis.molecules: True is not allowed"),
    ({"structure": "water.xyz"}, "structure: expected a mapping, found 'water.xyz'"),
]


@pytest.mark.parametrize(("changes", "says"), WRONG_VALUES,
                         ids=["-".join(f"{k}={v}" for k, v in changes.items()) for changes, _ in WRONG_VALUES])
def test_campaign_spec_with_wrong_values(tmp_path, changes, says):
    refused("campaign", "validate", spec_file(tmp_path, **changes), says=says)


@pytest.mark.parametrize(("content", "says"), [
    (b"\xff\xfe\x00 binary", "spec.yaml"),
    (b"", "the campaign file is empty"),
    (b"- a\n- b\n", "expected a mapping of keys, found list"),
    (b"name: [1, 2\n", "line 2"),
    (b"temperature: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
], ids=["binary", "empty", "list", "cut-off", "python-tag"])
def test_campaign_spec_that_is_not_a_spec(tmp_path, content, says):
    (tmp_path / "spec.yaml").write_bytes(content)
    refused("campaign", "validate", tmp_path / "spec.yaml", says=says)


# ---- VASP files given to fit (the readers' own cases are in test_io_vasp.py) ---------------------------------

@pytest.fixture(scope="module")
def bec_dir(shared_data):
    return shared_data / "aiida-vasp" / "born_effective_charge"


@pytest.mark.shared
@pytest.mark.parametrize(("name", "cut", "says"), [
    ("OUTCAR", 0.9, "BORN EFFECTIVE CHARGES (...)' block, found 'none (not a linear-response run, or cut off)"),
    ("vasprun.xml", 0.95, "vasprun.xml, line"),
    ("OUTCAR", 0.0, "an empty file"),
], ids=["truncated-outcar", "truncated-vasprun", "empty-outcar"])
def test_fit_refuses_truncated_vasp_files(bec_dir, tmp_path, name, cut, says):
    data = (bec_dir / name).read_bytes()
    (tmp_path / name).write_bytes(data[:int(cut * len(data))])
    refused("fit", tmp_path / name, "-o", tmp_path / "m.npz", says=says)
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.shared
def test_fit_refuses_nan_in_an_outcar(bec_dir, tmp_path):
    lines = (bec_dir / "OUTCAR").read_text().splitlines(keepends=True)
    start = max(k for k, line in enumerate(lines) if line.lstrip().startswith("BORN EFFECTIVE CHARGES ("))
    lines[start + 3] = lines[start + 3].replace(lines[start + 3].split()[1], "NaN", 1)
    (tmp_path / "OUTCAR").write_text("".join(lines))
    refused("fit", tmp_path / "OUTCAR", "-o", tmp_path / "m.npz", says=f"OUTCAR, line {start + 4}")


# ---- through the console script (stderr, exit code of the process) -------------------------------------------

def test_console_script_reports_on_stderr_without_traceback(files, tmp_path):
    executable = pathlib.Path(sys.executable).parent / "aiida-irspec"
    if not executable.exists():
        pytest.skip("the aiida-irspec console script is not installed next to this Python")
    bad = npz_like(files, tmp_path / "nan.npz", positions=with_nan(water_dimer_md().positions))
    cases = [(["pdot", files / "model.npz", bad, "-o", tmp_path / "o.npz"], "finite numbers in 'positions'"),
             (["campaign", "validate", spec_file(tmp_path, temperature=float("nan"))], "temperature: nan")]
    for arguments, says in cases:
        done = subprocess.run([str(executable), *map(str, arguments)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr + done.stdout


def test_npz_reads_survive_cpythons_ast_race(tmp_path, monkeypatch):
    """CPython before 3.11.8 / 3.12.1 raises SystemError 'AST constructor recursion depth mismatch' now and then
    when two threads build AST objects at once (numpy parses .npy headers with ast): twice in CI, in the middle of
    a pdot run. The readers read again; any other SystemError is not swallowed."""
    import ast

    import numpy as np

    from aiida_irspec.exceptions import AST_RACE, numpy_load, open_npz

    np.savez(tmp_path / "a.npz", x=np.arange(3.0))
    np.save(tmp_path / "b.npy", np.arange(4.0))
    real, calls = ast.literal_eval, []

    def racing(text, message=AST_RACE):
        calls.append(text)
        if len(calls) % 2:  # every other header parse meets the race
            raise SystemError(f"{message} (before=165, after=185)")
        return real(text)

    monkeypatch.setattr(ast, "literal_eval", racing)
    with open_npz(tmp_path / "a.npz") as data:
        assert data["x"].tolist() == [0.0, 1.0, 2.0]
    assert numpy_load(tmp_path / "b.npy").tolist() == [0.0, 1.0, 2.0, 3.0]
    with open(tmp_path / "b.npy", "rb") as handle:  # a handle is rewound before the second read
        assert numpy_load(handle).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert len(calls) == 6
    monkeypatch.setattr(ast, "literal_eval", lambda text: racing(text, "something else"))
    calls.clear()
    with pytest.raises(SystemError, match="something else"):
        numpy_load(tmp_path / "b.npy")

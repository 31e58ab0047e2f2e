"""File-based tblite jobs: what ``aiida-irspec engine born-charges`` and ``engine md`` run on a compute node.

A job reads a structure (extxyz) and a JSON settings file, writes its arrays to an ``.npz`` file and a
JSON summary. The summary is written whatever happens, with ``status`` ``"ok"`` or ``"error"`` and, on
error, the ``error`` kind whose exit code the command returns (``EXIT_CODES``); the AiiDA parsers read it.
An NVE run whose energy drifts too much still writes its trajectory, and its summary says ``"error":
"drift"``. Outputs are written atomically (:mod:`aiida_irspec.files`): a killed job leaves no half-written
file. An output that cannot be written (folder missing or read-only, one of the inputs) is found before
the engine starts (``"error": "output"``, exit code 14); a job stopped by SIGINT / SIGTERM writes a summary
with ``"error": "interrupted"`` and exit code 130 / 143.

Limits (documented, checked before the engine starts): atoms closer than ``MIN_DISTANCE`` (0.5 Angstrom)
are refused as an engine failure (tblite's own "too close interatomic distances", which it raises only
for exactly overlapping atoms: nearly overlapping ones gave finite nonsense); at most ``MAX_MD_STEPS``
(1e9) MD steps, a temperature of at most ``MAX_TEMPERATURE`` (1e5 K) and a time step of at most
``MAX_TIMESTEP`` (100 fs); a total charge of at most as many electrons as the neutral structure has; a
trajectory whose frames would need more memory than :func:`aiida_irspec.resources.memory_limit` is
refused with the estimate (exit code 15). Any NaN or infinite value in a result is an engine failure
(exit code 12), never a file.
"""

import json
import pathlib
import time

import numpy as np

from aiida_irspec.engines.md import DEFAULT_DRIFT_THRESHOLD, DEFAULT_FLUCTUATION_THRESHOLD
from aiida_irspec.exceptions import (DAMAGED_NPZ_ERRORS, EngineError, InputError, MalformedFileError, OutputError,
                                     PeriodicCellError, ResourceError, Terminated, numpy_load, require_finite)
from aiida_irspec.files import check_input_file, check_outputs, savez, write_json
from aiida_irspec.resources import check_memory
from aiida_irspec.settings import unknown_settings

# Default file names (the CalcJobs use them).
STRUCTURE_FILE = "structure.extxyz"
SETTINGS_FILE = "settings.json"
VELOCITIES_FILE = "velocities.npy"
BORN_CHARGES_FILE = "born_charges.npz"
TRAJECTORY_FILE = "trajectory.npz"
SUMMARY_FILE = "summary.json"

# Exit codes of the engine commands, by error kind.
EXIT_CODES = {"ok": 0, "input": 2, "periodic": 11, "engine": 12, "drift": 13, "output": 14, "resources": 15,
              "interrupted": 130, "terminated": 143}

#: Closest two atoms may be in an engine's input structure (Angstrom).
MIN_DISTANCE = 0.5
#: Most MD steps one job runs, its highest temperature (K) and longest time step (fs).
MAX_MD_STEPS = 10**9
MAX_TEMPERATURE = 1e5
MAX_TIMESTEP = 100.0

CALCULATOR_SETTINGS = {"method": "GFN2-xTB", "charge": 0, "multiplicity": 1, "accuracy": 1.0}
BORN_CHARGES_SETTINGS = {**CALCULATOR_SETTINGS, "route": "displacement", "displacement": 1e-3, "field": 1e-3}
MD_SETTINGS = {**CALCULATOR_SETTINGS, "ensemble": "nvt", "temperature": 300.0, "steps": 1000, "timestep": 0.5,
               "stride": 1, "seed": 0, "friction": 10.0, "record_dipoles": False,
               "drift_threshold": DEFAULT_DRIFT_THRESHOLD, "fluctuation_threshold": DEFAULT_FLUCTUATION_THRESHOLD}


def read_structure(path):
    """The single structure of an extxyz file as ``ase.Atoms``; velocities in the file are ignored."""
    import ase.io

    path = pathlib.Path(check_input_file(path, "structure file"))
    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as error:  # ASE raises many kinds of errors on malformed extxyz
        raise MalformedFileError(path, None, "an extended XYZ structure", str(error)) from error
    if len(frames) != 1:
        raise MalformedFileError(path, None, "exactly one structure", f"{len(frames)} structures")
    if not (np.all(np.isfinite(frames[0].positions)) and np.all(np.isfinite(frames[0].cell.array))):
        raise MalformedFileError(path, None, "finite positions and cell", "NaN or infinite values")
    return frames[0]


def check_distances(atoms):
    """EngineError when two atoms (or an atom and a periodic image) are closer than ``MIN_DISTANCE``."""
    from ase.neighborlist import neighbor_list

    first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE)
    if len(distance):
        k = int(np.argmin(distance))
        raise EngineError(f"atoms {first[k]} and {second[k]} are {distance[k]:.3g} Angstrom apart, closer than "
                          f"{MIN_DISTANCE} Angstrom: overlapping atoms (tblite gives no meaningful result)")


def read_settings(path, defaults):
    """Settings from a JSON object file merged over ``defaults``; unknown keys are an error."""
    settings = dict(defaults)
    if path is None:
        return settings
    path = pathlib.Path(check_input_file(path, "settings file"))
    try:
        given = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InputError(f"settings file not found: {path}") from error
    except json.JSONDecodeError as error:
        raise MalformedFileError(path, error.lineno, "a JSON object", error.msg) from error
    except UnicodeDecodeError as error:
        raise MalformedFileError(path, None, "a JSON object (UTF-8 text)",
                                 f"byte {error.object[error.start]:#04x}") from error
    if not isinstance(given, dict):
        raise MalformedFileError(path, None, "a JSON object", type(given).__name__)
    message = unknown_settings(given, defaults)
    if message:
        raise InputError(f"{path}: {message}")
    for key, value in given.items():
        settings[key] = _typed(path, key, value, defaults[key])
    if settings.get("seed", 0) < 0:
        raise InputError(f"{path}: setting 'seed' must be >= 0, got {settings['seed']}")
    if settings.get("steps", 1) > MAX_MD_STEPS:
        raise InputError(f"{path}: setting 'steps' is {settings['steps']}; at most {MAX_MD_STEPS} steps in one job")
    if settings.get("temperature", 0.0) > MAX_TEMPERATURE:  # NaN: refused by the MD checks
        raise InputError(f"{path}: setting 'temperature' is {settings['temperature']} K; at most {MAX_TEMPERATURE:g} K")
    if settings.get("timestep", 0.0) > MAX_TIMESTEP:  # (a time step of 1e300 fs overflowed in ASE)
        raise InputError(f"{path}: setting 'timestep' is {settings['timestep']} fs; at most {MAX_TIMESTEP:g} fs")
    return settings


def check_charge(atoms, charge):
    """InputError when the total ``charge`` (|e|) would remove more electrons than ``atoms`` have, or add
    more than they have (tblite returned numbers for a water dimer of charge +1000, with exit code 0)."""
    electrons = int(np.sum(atoms.numbers))
    if abs(charge) > electrons:
        raise InputError(f"setting 'charge' is {charge}: the structure {atoms.get_chemical_formula()} has "
                         f"{electrons} electrons when neutral")


def _typed(path, key, value, default):
    """``value`` checked against the type of its default (an int is accepted for a float)."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise InputError(f"{path}: setting {key!r} must be of type {expected.__name__}, got {value!r}")
    return value


def run_born_charges_job(structure, settings=None, output=BORN_CHARGES_FILE, summary=SUMMARY_FILE):
    """Born charges of the molecule in ``structure`` -> ``output`` (npz) and ``summary`` (JSON).

    The npz holds ``born_charges`` (N, 3, 3) |e|, ``dipole`` (3,) |e| Angstrom, ``numbers`` (N,) and
    ``positions`` (N, 3) Angstrom. Returns the error kind (a key of ``EXIT_CODES``).
    """
    from aiida_irspec.engines import tblite

    def job():
        check_outputs([("--output", output)], inputs=[structure, settings])
        atoms = read_structure(structure)
        options = read_settings(settings, BORN_CHARGES_SETTINGS)
        check_charge(atoms, options["charge"])
        check_distances(atoms)
        calculator = {key: options[key] for key in CALCULATOR_SETTINGS}
        started = time.perf_counter()
        charges = tblite.born_charges(atoms, displacement=options["displacement"], route=options["route"],
                                      field=options["field"], **calculator)
        elapsed = time.perf_counter() - started
        moment = tblite.dipole(atoms, **calculator)
        require_finite({"born_charges": charges, "dipole": moment}, "tblite", EngineError)
        savez(output, compressed=True, born_charges=charges, dipole=moment, numbers=atoms.numbers,
              positions=atoms.positions)
        return {"settings": options, "natoms": len(atoms), "wall_time": elapsed,
                "sum_rule_max": float(np.abs(charges.sum(axis=0) - options["charge"] * np.eye(3)).max())}, "ok"

    return _run_job(job, summary, "born_charges")


def run_md_job(structure, settings=None, velocities=None, output=TRAJECTORY_FILE, summary=SUMMARY_FILE,
               progress=False):
    """MD of ``structure`` -> ``output`` (npz of :class:`~aiida_irspec.engines.md.MDResult`) and ``summary``.

    ``velocities`` is an optional ``.npy`` file (N, 3) of initial velocities in Angstrom/fs. Returns the
    error kind (a key of ``EXIT_CODES``); ``"drift"`` when an NVE run's energy drift is too large.
    """
    from aiida_irspec.engines import md, tblite

    def job():
        check_outputs([("--output", output)], inputs=[structure, settings, velocities])
        atoms = read_structure(structure)
        options = read_settings(settings, MD_SETTINGS)
        frames = max(options["steps"], 0) // max(options["stride"], 1) + 1
        check_memory(md_memory(frames, len(atoms)), f"{frames} stored MD frames of {len(atoms)} atoms",
                     "a larger stride or fewer steps per job")
        check_charge(atoms, options["charge"])
        check_distances(atoms)
        initial = None
        if velocities is not None:
            check_input_file(velocities, "velocities file")
            try:
                initial = numpy_load(velocities)
            except DAMAGED_NPZ_ERRORS as error:  # numpy reads .npy headers like .npz members
                raise MalformedFileError(velocities, None, "a .npy array (N, 3) in Angstrom/fs", str(error)) from error
        calculator = tblite.make_calculator(**{key: options[key] for key in CALCULATOR_SETTINGS})
        result = md.run_md(atoms, calculator, ensemble=options["ensemble"], temperature=options["temperature"],
                           steps=options["steps"], timestep=options["timestep"], stride=options["stride"],
                           seed=options["seed"], friction=options["friction"], initial_velocities=initial,
                           record_dipoles=options["record_dipoles"], progress=progress,
                           drift_threshold=options["drift_threshold"],
                           fluctuation_threshold=options["fluctuation_threshold"])
        require_finite({name: getattr(result, name) for name in (*result.ARRAYS, "dipoles")
                        if getattr(result, name) is not None}, "the MD", EngineError)
        result.save_npz(output)
        record = {"settings": options, "natoms": len(atoms), "frames": len(result.times), **result.info,
                  "mean_temperature": float(result.temperature.mean())}
        if result.info["drift_too_large"]:
            info = result.info
            record["message"] = (
                f"the NVE total energy is not conserved (drift {info['relative_energy_drift_per_ps']:.3g} <K>/ps, "
                f"limit {info['drift_threshold']}; scatter {info['relative_energy_scatter']:.3g} <K>, limit "
                f"{info['fluctuation_threshold']}): reduce the time step")
            return record, "drift"
        return record, "ok"

    return _run_job(job, summary, "md")


def md_memory(frames, n_atoms):
    """Bytes an MD job holds for ``frames`` stored frames of ``n_atoms`` atoms, estimated: positions and
    velocities (6 numbers per atom) and the frame's other values, once in the list of frames and once
    stacked into arrays, plus about 3 kB of Python objects per frame."""
    return frames * (2 * 8 * (6 * n_atoms + 25) + 3000)


def _run_job(job, summary, kind):
    """Run ``job() -> (record, error kind)``, write the summary JSON whatever happens, return the error kind."""
    from importlib.metadata import version

    record = {"engine": "tblite", "engine_version": version("tblite"), "job": kind}
    interrupted = None
    try:
        result, error = job()
        record.update(result)
    except PeriodicCellError as exception:
        error, record["message"] = "periodic", str(exception)
    except ResourceError as exception:
        error, record["message"] = "resources", str(exception)
    except (InputError, MalformedFileError) as exception:
        error, record["message"] = "input", str(exception)
    except EngineError as exception:
        error, record["message"] = "engine", str(exception)
    except OutputError as exception:
        error, record["message"] = "output", str(exception)
    except KeyboardInterrupt as exception:  # the summary says so, then the command stops
        interrupted = exception
        error = "terminated" if isinstance(exception, Terminated) else "interrupted"
        record["message"] = f"stopped by {'SIGTERM' if error == 'terminated' else 'SIGINT'}"
    record.update(status="ok" if error == "ok" else "error", error=None if error == "ok" else error,
                  exit_code=EXIT_CODES[error])
    write_json(summary, record, indent=2, default=_json_default)
    if interrupted is not None:
        raise interrupted
    return error


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

"""Molecular dynamics through ASE with any ASE calculator: Langevin NVT or velocity-Verlet NVE.

Units: time in fs, positions in Angstrom (unwrapped: atoms are never folded back into the cell), velocities
in Angstrom/fs, energies in eV, temperatures in K, friction in 1/ps, dipoles in |e| Angstrom.

The centre of mass is held fixed (``ase.constraints.FixCom``), so the temperature counts 3N - 3 degrees
of freedom. Runs are reproducible bit for bit for a given seed (the same random generator draws the
initial velocities and the Langevin noise) on the same machine and installation, provided the calculator is
deterministic; the tblite calculator of :func:`aiida_irspec.engines.tblite.make_calculator` is, whatever
the thread variables say (it calculates on one OpenMP thread).

NVE runs check energy conservation (:func:`energy_drift`): when the total energy drifts (relative to the
mean kinetic energy, per ps) or scatters more than a threshold, the result carries
``info["drift_too_large"] = True``: a sign that the time step is too large.
"""

import dataclasses
import json
import sys
import time

import numpy as np

from aiida_irspec import units
from aiida_irspec.exceptions import EngineError, InputError, numpy_load
from aiida_irspec.files import savez

ENSEMBLES = ("nvt", "nve")
DEFAULT_DRIFT_THRESHOLD = 0.02  # drift of the total energy per ps, in units of the mean kinetic energy
DEFAULT_FLUCTUATION_THRESHOLD = 0.03  # scatter of the total energy, in units of the mean kinetic energy
MINIMUM_DRIFT_CHANGE = 0.01  # a drift must change the total energy by this much (units of <K>) over a run


@dataclasses.dataclass
class MDResult:
    """A trajectory of F stored frames of N atoms (frame 0 is the initial state).

    times (F,) fs; positions (F, N, 3) Angstrom, unwrapped; velocities (F, N, 3) Angstrom/fs;
    cells (F, 3, 3) Angstrom; potential_energy, kinetic_energy (F,) eV; temperature (F,) K (3N - 3
    degrees of freedom); dipoles (F, 3) |e| Angstrom or None; numbers (N,); masses (N,) amu; pbc (3,) bool;
    info: the run's settings and its energy-drift check (JSON-serialisable dict).
    """

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    cells: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    temperature: np.ndarray
    dipoles: np.ndarray | None
    numbers: np.ndarray
    masses: np.ndarray
    pbc: np.ndarray
    info: dict

    ARRAYS = ("times", "positions", "velocities", "cells", "potential_energy", "kinetic_energy", "temperature",
              "numbers", "masses", "pbc")

    @property
    def total_energy(self):
        """Potential plus kinetic energy (F,) in eV."""
        return self.potential_energy + self.kinetic_energy

    def final_atoms(self):
        """The last stored frame as ``ase.Atoms`` with its velocities (set in ASE units)."""
        import ase

        atoms = ase.Atoms(numbers=self.numbers, positions=self.positions[-1], cell=self.cells[-1], pbc=self.pbc,
                          masses=self.masses)
        atoms.set_velocities(self.velocities[-1] / units.ASE_VELOCITY_TO_ANGSTROM_PER_FS)
        return atoms

    def save_npz(self, path):
        """Write every array and the info (as JSON) to one compressed ``.npz`` file at exactly ``path``, atomically
        (a kill or a full disk leaves the previous file, never half of the new one)."""
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        if self.dipoles is not None:
            arrays["dipoles"] = self.dipoles
        savez(path, compressed=True, info=np.array(json.dumps(self.info)), **arrays)

    @classmethod
    def load_npz(cls, path):
        """Read a file written by :meth:`save_npz`."""
        with numpy_load(path) as data:
            fields = {name: data[name] for name in cls.ARRAYS}
            dipoles = data["dipoles"] if "dipoles" in data.files else None
            info = json.loads(str(data["info"]))
        return cls(dipoles=dipoles, info=info, **fields)


def run_md(atoms, calculator, *, ensemble, temperature, steps, timestep, stride=1, seed=0, friction=10.0,
           initial_velocities=None, record_dipoles=False, progress=False, drift_threshold=DEFAULT_DRIFT_THRESHOLD,
           fluctuation_threshold=DEFAULT_FLUCTUATION_THRESHOLD):
    """Run MD of ``atoms`` with ``calculator`` and return the stored frames as :class:`MDResult`.

    :param atoms: ``ase.Atoms`` (not modified).
    :param calculator: an ASE calculator (e.g. :func:`aiida_irspec.engines.tblite.make_calculator`).
    :param ensemble: ``"nvt"`` (Langevin thermostat) or ``"nve"`` (velocity Verlet).
    :param temperature: K; the thermostat target in NVT and, without ``initial_velocities``, the
        temperature of the Maxwell-Boltzmann velocities drawn at the start.
    :param steps: number of MD steps, a multiple of ``stride``.
    :param timestep: fs.
    :param stride: store every ``stride``-th step (frame 0 is the initial state): F = steps / stride + 1.
    :param seed: integer seed of the velocities and of the Langevin noise.
    :param friction: Langevin friction in 1/ps (NVT only).
    :param initial_velocities: (N, 3) Angstrom/fs, or None to draw them; their centre-of-mass part is removed.
    :param record_dipoles: store the calculator's dipole at each stored frame (molecules and clusters only).
    :param progress: print progress lines to stderr.
    :param drift_threshold: NVE relative energy drift per ps above which ``info["drift_too_large"]`` is set.
    :param fluctuation_threshold: NVE relative energy scatter above which it is set (see :func:`energy_drift`).
    :raises InputError: for bad settings; :raises EngineError: when the calculator fails or energies diverge.
    """
    from ase.calculators.calculator import CalculationFailed
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    _check_settings(atoms, ensemble, temperature, steps, timestep, stride, friction, initial_velocities)
    if record_dipoles:
        from aiida_irspec.engines.tblite import check_molecular

        check_molecular(atoms)
    atoms = atoms.copy()
    atoms.set_constraint(FixCom())
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    if initial_velocities is None:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    else:
        atoms.set_velocities(np.asarray(initial_velocities, dtype=float) / units.ASE_VELOCITY_TO_ANGSTROM_PER_FS)
    Stationary(atoms)

    timestep_ase = timestep / units.ASE_TIME_UNIT_FS
    if ensemble == "nvt":
        friction_ase = friction * 1e-3 * units.ASE_TIME_UNIT_FS  # 1/ps -> 1/fs -> 1/(ASE time unit)
        dynamics = Langevin(atoms, timestep_ase, temperature_K=temperature, friction=friction_ase, fixcm=False,
                            rng=rng)
    else:
        dynamics = VelocityVerlet(atoms, timestep_ase)

    n_dof = 3 * len(atoms) - 3
    frames = []
    started = time.perf_counter()

    def record():
        kinetic = atoms.get_kinetic_energy()
        frame = {
            "positions": atoms.get_positions(),
            "velocities": atoms.get_velocities() * units.ASE_VELOCITY_TO_ANGSTROM_PER_FS,
            "cells": atoms.cell.array.copy(),
            "potential_energy": atoms.get_potential_energy(),
            "kinetic_energy": kinetic,
            "temperature": 2 * kinetic / (n_dof * units.BOLTZMANN_EV),
        }
        if record_dipoles:
            frame["dipoles"] = atoms.get_dipole_moment()
        if not np.isfinite(frame["potential_energy"]) or not np.all(np.isfinite(frame["positions"])):
            raise EngineError(f"the MD diverged at step {dynamics.nsteps} (non-finite energy or positions); "
                              "reduce the time step")
        frames.append(frame)
        if progress and (len(frames) - 1) % max(1, (steps // stride) // 10) == 0:
            elapsed = time.perf_counter() - started
            print(f"step {dynamics.nsteps}/{steps}  T = {frame['temperature']:.1f} K  "
                  f"Epot = {frame['potential_energy']:.6f} eV  ({elapsed:.1f} s)", file=sys.stderr, flush=True)

    dynamics.attach(record, interval=stride)
    try:
        dynamics.run(steps)
    except CalculationFailed as error:
        raise EngineError(f"the calculator failed at MD step {dynamics.nsteps}: {error}") from error

    stacked = {name: np.array([frame[name] for frame in frames]) for name in frames[0]}
    if len(frames) != steps // stride + 1:
        raise EngineError(f"expected {steps // stride + 1} stored frames, got {len(frames)}")
    info = {
        "ensemble": ensemble, "temperature": float(temperature), "steps": int(steps), "timestep": float(timestep),
        "stride": int(stride), "seed": int(seed), "friction": float(friction) if ensemble == "nvt" else None,
        "degrees_of_freedom": n_dof, "initial_velocities": initial_velocities is not None,
        "wall_time": time.perf_counter() - started,
    }
    result = MDResult(
        times=np.arange(len(frames)) * stride * float(timestep),
        dipoles=stacked.pop("dipoles", None),
        numbers=atoms.numbers.copy(), masses=atoms.get_masses(), pbc=atoms.pbc.copy(), info=info, **stacked)
    info.update(energy_drift(result, drift_threshold, fluctuation_threshold) if ensemble == "nve" else
                {"energy_drift_per_ps": None, "relative_energy_drift_per_ps": None, "energy_scatter": None,
                 "relative_energy_scatter": None, "drift_threshold": None, "fluctuation_threshold": None,
                 "drift_too_large": False})
    return result


def energy_drift(result, threshold=DEFAULT_DRIFT_THRESHOLD, fluctuation_threshold=DEFAULT_FLUCTUATION_THRESHOLD):
    """Energy-conservation check of an NVE trajectory (detects a time step that is too large).

    Two symptoms, both relative to the mean kinetic energy <K>:

    - drift: the slope of a straight-line fit of the total energy against time, per ps; it counts when it
      exceeds ``threshold`` and the change it makes over the run exceeds both three times the scatter about
      the line and ``MINIMUM_DRIFT_CHANGE`` <K> (so that the fluctuations of a short run, where a vibration
      period is not negligible against the run, are not taken for a drift);
    - fluctuation: the scatter (standard deviation) of the total energy about that line, above
      ``fluctuation_threshold`` (it grows as the square of the time step).

    Measured for a water dimer at 300 K with GFN2-xTB (1 ps NVE): relative drift 0.003-0.009/ps at every
    time step from 0.25 to 2 fs (the SCF tolerance, not the integrator); relative scatter 0.001 (0.25 fs),
    0.002-0.005 (0.5 fs), 0.01-0.02 (1 fs), 0.02-0.05 (1.5 fs), 0.04-0.16 (2 fs); 2.5 fs blows up.

    :returns: dict with ``energy_drift_per_ps`` (eV/ps), ``relative_energy_drift_per_ps`` (1/ps),
        ``energy_scatter`` (eV), ``relative_energy_scatter``, ``drift_threshold``, ``fluctuation_threshold``
        and ``drift_too_large`` (bool: either symptom).
    """
    checks = {"drift_threshold": float(threshold), "fluctuation_threshold": float(fluctuation_threshold)}
    if len(result.times) < 3:
        return {"energy_drift_per_ps": 0.0, "relative_energy_drift_per_ps": 0.0, "energy_scatter": 0.0,
                "relative_energy_scatter": 0.0, **checks, "drift_too_large": False}
    slope_per_fs, intercept = np.polyfit(result.times, result.total_energy, 1)
    scatter = float(np.std(result.total_energy - (slope_per_fs * result.times + intercept)))
    mean_kinetic = float(np.mean(result.kinetic_energy))
    relative = abs(slope_per_fs) * 1e3 / mean_kinetic if mean_kinetic > 0 else float("inf")
    relative_scatter = scatter / mean_kinetic if mean_kinetic > 0 else float("inf")
    change = abs(slope_per_fs) * (result.times[-1] - result.times[0])
    significant = change > max(3 * scatter, MINIMUM_DRIFT_CHANGE * mean_kinetic)
    too_large = (relative > threshold and significant) or relative_scatter > fluctuation_threshold
    return {"energy_drift_per_ps": float(slope_per_fs * 1e3), "relative_energy_drift_per_ps": float(relative),
            "energy_scatter": scatter, "relative_energy_scatter": float(relative_scatter), **checks,
            "drift_too_large": bool(too_large)}


def _check_settings(atoms, ensemble, temperature, steps, timestep, stride, friction, initial_velocities):
    if ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble {ensemble!r}; use one of {', '.join(ENSEMBLES)}")
    if len(atoms) < 2:
        raise InputError("MD needs at least two atoms (the centre of mass is held fixed)")
    if not (np.isfinite(temperature) and temperature >= 0):
        raise InputError(f"the temperature must be >= 0 K, got {temperature}")
    if ensemble == "nvt" and temperature == 0:
        raise InputError("an NVT run needs a temperature above 0 K")
    if int(steps) != steps or steps < 1:
        raise InputError(f"the number of steps must be a positive integer, got {steps}")
    if int(stride) != stride or stride < 1 or steps % stride:
        raise InputError(f"the stride must be a positive integer dividing the number of steps ({steps}), got {stride}")
    if not (np.isfinite(timestep) and timestep > 0):
        raise InputError(f"the time step must be positive (fs), got {timestep}")
    if ensemble == "nvt" and not (np.isfinite(friction) and friction > 0):
        raise InputError(f"the Langevin friction must be positive (1/ps), got {friction}")
    if initial_velocities is not None:
        velocities = np.asarray(initial_velocities, dtype=float)
        if velocities.shape != (len(atoms), 3) or not np.all(np.isfinite(velocities)):
            raise InputError(f"initial velocities must be a finite ({len(atoms)}, 3) array in Angstrom/fs, "
                             f"got shape {velocities.shape}")

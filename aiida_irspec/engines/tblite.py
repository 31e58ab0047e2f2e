"""GFN2-xTB through tblite: an ASE calculator for MD, and dipoles and Born charges of molecules and clusters.

Units: positions in Angstrom, energies in eV, forces in eV/Angstrom, dipoles in |e| Angstrom, Born
charges in |e| with ``Z[i, a, b] = dP_a / dx_{i,b}``, electric fields in V/Angstrom.

Dipoles (and hence Born charges) are computed for isolated molecules and clusters only: the dipole of a
periodic cell is not a well-defined quantity in tblite, so a cell with any periodic direction is refused
with :class:`~aiida_irspec.exceptions.PeriodicCellError`.

Every dipole (and every field-route force) comes from a fresh SCF started from the superposition of atomic
densities: restarting from the previous displacement's density leaves a hysteresis of the SCF tolerance in
the finite differences (measured on a water molecule: sum-rule violation 3e-3 |e| with restarts, 1e-6 |e|
without).

Every tblite calculation runs on one OpenMP thread, whatever ``OMP_NUM_THREADS`` says: tblite's OpenMP
reductions are summed in a different order on every run with two threads or more, so two MD runs from the
same seed diverge (measured with tblite 0.8.0, OMP_NUM_THREADS=2). On one thread every result is
bit-reproducible; for molecules and clusters of a few dozen atoms it is also the faster setting (water
dimer forces: 2 ms on one thread, 29 ms on two, on the 2-core development machine at load average 3).
"""

import functools

import numpy as np

from aiida_irspec import units
from aiida_irspec.exceptions import EngineError, InputError, PeriodicCellError, require_finite

METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")
ROUTES = ("displacement", "field")


def make_calculator(method="GFN2-xTB", charge=0, multiplicity=1, accuracy=1.0, electronic_temperature=300.0,
                    max_iterations=250):
    """A quiet tblite ASE calculator (``tblite.ase.TBLite``, verbosity 0) that calculates on one OpenMP thread.

    :param method: ``"GFN2-xTB"`` (default), ``"GFN1-xTB"`` or ``"IPEA1-xTB"``.
    :param charge: total charge in |e|.
    :param multiplicity: spin multiplicity 2S+1.
    :param accuracy: tblite's numerical accuracy (smaller is tighter; 1.0 is tblite's default).
    :param electronic_temperature: Fermi smearing temperature in K.
    :param max_iterations: SCF iteration limit; a run that does not converge raises from the calculator.
    """
    _check_settings(method, charge, multiplicity, accuracy)
    return _one_thread_calculator_class()(method=method, charge=charge, multiplicity=multiplicity,
                                          accuracy=accuracy, electronic_temperature=electronic_temperature,
                                          max_iterations=max_iterations, verbosity=0)


def one_openmp_thread():
    """Context manager: OpenMP libraries (tblite's) on one thread in the calling thread, restored on exit.

    Works whatever ``OMP_NUM_THREADS`` is and however many threads the caller set; costs about 10 us.
    """
    return _openmp_controller().limit(limits=1, user_api="openmp")


@functools.cache
def _openmp_controller():
    """threadpoolctl's view of the loaded thread pools, taken once tblite's library (and its OpenMP) is loaded."""
    import tblite.interface  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def _one_thread_calculator_class():
    """``tblite.ase.TBLite`` whose every calculation runs on one OpenMP thread (imported on first use)."""
    from tblite.ase import TBLite

    class OneThreadTBLite(TBLite):
        """tblite's ASE calculator, each calculation on one OpenMP thread (bit-reproducible)."""

        def calculate(self, *args, **kwargs):
            with one_openmp_thread():
                super().calculate(*args, **kwargs)

    return OneThreadTBLite


def dipole(atoms, method="GFN2-xTB", charge=0, multiplicity=1, accuracy=1.0):
    """Dipole moment (3,) in |e| Angstrom of a molecule or cluster, about the origin of the coordinates.

    :raises PeriodicCellError: when ``atoms`` has any periodic direction.
    :raises EngineError: when the SCF fails.
    """
    check_molecular(atoms)
    return _singlepoint(atoms.numbers, atoms.positions, method, charge, multiplicity, accuracy)["dipole"]


def born_charges(atoms, method="GFN2-xTB", displacement=1e-3, charge=0, multiplicity=1, accuracy=1.0,
                 route="displacement", field=1e-3):
    """Born effective charges (N, 3, 3) in |e| of a molecule or cluster, ``Z[i, a, b] = dP_a / dx_{i,b}``.

    Two routes, which agree to about 2e-3 |e| for water (tests/test_engines_tblite.py):

    - ``"displacement"`` (default): central differences of the dipole over atomic displacements of
      ``displacement`` Angstrom (6N fresh SCF runs).
    - ``"field"``: central differences of the forces over a uniform electric field of ``field`` V/Angstrom
      (``Z[i, a, b] = dF_{i,b} / dE_a``; 6 SCF runs). The sum rule holds exactly on this route.

    :raises PeriodicCellError: when ``atoms`` has any periodic direction.
    :raises InputError: for an unknown route or a non-positive step.
    :raises EngineError: when an SCF fails.
    """
    check_molecular(atoms)
    if route not in ROUTES:
        raise InputError(f"unknown Born-charge route {route!r}; use one of {', '.join(ROUTES)}")
    step = displacement if route == "displacement" else field
    if not (np.isfinite(step) and step > 0):
        raise InputError(f"the finite-difference step of the {route} route must be positive, got {step}")
    numbers, positions = atoms.numbers, np.asarray(atoms.positions, dtype=float)
    settings = (method, charge, multiplicity, accuracy)
    charges = np.zeros((len(atoms), 3, 3))
    if route == "displacement":
        for i in range(len(atoms)):
            for b in range(3):
                dipoles = []
                for sign in (1.0, -1.0):
                    shifted = positions.copy()
                    shifted[i, b] += sign * displacement
                    dipoles.append(_singlepoint(numbers, shifted, *settings)["dipole"])
                charges[i, :, b] = (dipoles[0] - dipoles[1]) / (2 * displacement)
    else:
        for a in range(3):
            forces = []
            for sign in (1.0, -1.0):
                vector = np.zeros(3)
                vector[a] = sign * field
                forces.append(_singlepoint(numbers, positions, *settings, field=vector)["forces"])
            charges[:, a, :] = (forces[0] - forces[1]) / (2 * field)
    return charges


def check_molecular(atoms):
    """Raise :class:`PeriodicCellError` when ``atoms`` is periodic in any direction."""
    if np.any(atoms.pbc):
        raise PeriodicCellError(
            f"tblite dipoles and Born charges are only defined here for molecules and clusters, but the "
            f"structure {atoms.get_chemical_formula()} is periodic (pbc={list(map(bool, atoms.pbc))}); "
            "use a non-periodic structure (pbc=False) or a periodic engine such as VASP")


def _check_settings(method, charge, multiplicity, accuracy):
    if method not in METHODS:
        raise InputError(f"unknown tblite method {method!r}; use one of {', '.join(METHODS)}")
    if int(multiplicity) != multiplicity or multiplicity < 1:
        raise InputError(f"the multiplicity must be a positive integer, got {multiplicity}")
    if int(charge) != charge:
        raise InputError(f"the total charge must be an integer, got {charge}")
    if not (np.isfinite(accuracy) and accuracy > 0):
        raise InputError(f"the tblite accuracy must be positive, got {accuracy}")


def _singlepoint(numbers, positions, method, charge, multiplicity, accuracy, field=None):
    """One fresh, quiet tblite SCF: energy (eV), forces (N, 3) eV/Angstrom and dipole (3,) |e| Angstrom.

    ``field`` is a uniform electric field (3,) in V/Angstrom, or None.
    """
    from tblite.interface import Calculator
    from tblite.library import ffi

    _check_settings(method, charge, multiplicity, accuracy)
    try:
        calculator = Calculator(method, np.asarray(numbers), np.asarray(positions) / units.BOHR_ANGSTROM,
                                int(charge), int(multiplicity) - 1)
        calculator.set("verbosity", 0)
        calculator.set("accuracy", float(accuracy))
        if field is not None:
            # tblite 0.8.0's binding passes the field to C without converting it (its ASE calculator fails
            # with a TypeError), so hand it a C view of a contiguous array; the array must outlive the call.
            field_au = np.ascontiguousarray(np.asarray(field, dtype=float) * units.BOHR_ANGSTROM / units.HARTREE_EV)
            calculator.add("electric-field", ffi.from_buffer("double[]", field_au))
        with one_openmp_thread():
            result = calculator.singlepoint()
    except RuntimeError as error:
        raise EngineError(f"tblite {method} failed: {error}") from error
    require_finite({name: result[name] for name in ("energy", "gradient", "dipole")}, f"tblite {method}",
                   EngineError)
    return {
        "energy": float(result["energy"]) * units.HARTREE_EV,
        "forces": -np.asarray(result["gradient"]) * units.HARTREE_EV / units.BOHR_ANGSTROM,
        "dipole": np.asarray(result["dipole"]) * units.BOHR_ANGSTROM,
    }

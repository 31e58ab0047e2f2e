"""Shared pieces of the campaign tests: a real tblite NVT run of the water dimer and its TrajectoryData."""

import functools
import pathlib

import numpy as np

WATER_DIMER = (pathlib.Path(__file__).resolve().parents[1] / "aiida_irspec" / "campaign" / "specs" / "structures"
               / "water_dimer.xyz")


@functools.lru_cache(maxsize=None)
def water_dimer_md(steps=600, stride=10, seed=3, temperature=300.0, record_dipoles=False):
    """A GFN2-xTB Langevin NVT run of (H2O)2 (MDResult; cached per argument set, about 1 s per 600 steps)."""
    import ase.io

    from aiida_irspec.engines.md import run_md
    from aiida_irspec.engines.tblite import make_calculator

    atoms = ase.io.read(WATER_DIMER)
    return run_md(atoms, make_calculator(), ensemble="nvt", temperature=temperature, steps=steps, timestep=0.5,
                  stride=stride, seed=seed, friction=10.0, record_dipoles=record_dipoles)


def trajectory_data(result):
    """An (unstored) TrajectoryData of an MDResult: positions, cells, times, velocities, pbc (as the tblite parser)."""
    from aiida import orm
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[z] for z in result.numbers]
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols, result.positions, stepids=np.arange(len(result.times)), cells=result.cells,
                              times=result.times, velocities=result.velocities, pbc=[bool(p) for p in result.pbc])
    return trajectory


SMALL_DESCRIPTOR = {"cutoff": 4.0, "n_radial": 4, "l_max": 2}


def tiny_campaign_spec(engine_code, predict_code):
    """The TINY water-dimer campaign file (dict) on tblite, with the full labels of its two codes."""
    return {
        "name": "tiny-water-dimer", "protocol": "fast",
        "structure": {"file": str(WATER_DIMER)},
        "codes": {"engine": engine_code, "predict": predict_code},
        "temperature": 300, "equilibration": 50,
        "sampling": {"steps": 400, "timestep": 0.5, "stride": 10},
        "learning": {"selection": {"strategy": "uncertainty", "initial": 3, "batch": 2, "budget": 7, "holdout": 2,
                                   "target_error": 1e-6, "error_estimate": "holdout"},
                     "model": {"descriptor": SMALL_DESCRIPTOR, "baseline": "zero"},
                     "failures": {"max_concurrent": 2}},
        "spectrum": {"runs": {"number": 2, "steps": 200, "decorrelation": 25.0},
                     "analysis": {"molecules": 2, "width_cm1": 80.0, "bands": {"stretch": [3000, 4000]}},
                     "failures": {"max_concurrent": 2}},
    }


@functools.lru_cache(maxsize=None)
def dimer_references(n_frames=12):
    """(frames, Born charges) of ``n_frames`` evenly spaced frames of :func:`water_dimer_md`, by tblite."""
    import ase

    from aiida_irspec.engines.tblite import born_charges

    result = water_dimer_md()
    picks = np.linspace(0, len(result.times) - 1, n_frames).astype(int)
    frames = [ase.Atoms(numbers=result.numbers, positions=result.positions[k]) for k in picks]
    return frames, [born_charges(atoms) for atoms in frames]


def reference_nodes(frames, charges, keys=None):
    """Unstored (StructureData, BornChargesData) namespaces for fit_polarization_model."""
    from aiida import orm

    from aiida_irspec.data.born_charges import BornChargesData

    keys = keys or [f"frame_{k}" for k in range(len(frames))]
    structures, born = {}, {}
    for key, atoms, z in zip(keys, frames, charges):
        boxed = atoms.copy()
        boxed.cell = np.eye(3) * 20.0
        structures[key] = orm.StructureData(ase=boxed)
        born[key] = BornChargesData(z, symbols=atoms.get_chemical_symbols(), source={"engine": "tblite"})
    return structures, born


@functools.lru_cache(maxsize=None)
def dimer_model():
    """A PolarizationModel fitted to :func:`dimer_references` with the small descriptor (about 1 s)."""
    from aiida_irspec.model import DescriptorSettings, PolarizationModel

    frames, charges = dimer_references()
    return PolarizationModel(DescriptorSettings(**SMALL_DESCRIPTOR), baseline="zero").fit(frames, charges)

"""Frames of an AiiDA ``TrajectoryData`` as ``ase.Atoms`` (for the numerical core) and as ``StructureData``.

A trajectory stores positions (F, N, 3) Angstrom, cells (F, 3, 3) Angstrom, the symbols and (AiiDA >= 2.8)
one periodicity flag per cell vector. A frame is periodic along the directions that the trajectory marks
periodic (all, when it has no flag) and whose cell vector in that frame is non-zero.
"""

import numpy as np

from aiida_irspec.exceptions import InputError


def _frame_indices(trajectory, indices):
    """Indices as a list of ints, checked against the number of frames."""
    n_frames = trajectory.numsteps
    indices = list(range(n_frames)) if indices is None else [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < n_frames]
    if bad:
        raise InputError(f"frame indices {bad[:5]} out of range: the trajectory has {n_frames} frames")
    return indices


def frame_pbc(trajectory, cell):
    """(3,) bool periodicity of a frame with ``cell`` (3, 3) of ``trajectory`` (see the module docstring)."""
    flags = np.ones(3, dtype=bool) if trajectory.pbc is None else np.array(trajectory.pbc, dtype=bool)
    return flags & (np.linalg.norm(cell, axis=1) > 0)


def trajectory_frames(trajectory, indices=None):
    """The frames ``indices`` (all by default) of a TrajectoryData as a list of ``ase.Atoms``."""
    import ase

    indices = _frame_indices(trajectory, indices)
    positions = trajectory.get_positions()
    cells = trajectory.get_cells()
    symbols = list(trajectory.symbols)
    frames = []
    for i in indices:
        cell = np.zeros((3, 3)) if cells is None else cells[i]
        frames.append(ase.Atoms(symbols=symbols, positions=positions[i], cell=cell, pbc=frame_pbc(trajectory, cell)))
    return frames


def structure_from_atoms(atoms):
    """An (unstored) StructureData of ``ase.Atoms``; a molecule (no periodic direction) gets a box that holds
    it (StructureData needs a cell), with periodicity left off."""
    from aiida import orm

    if not atoms.pbc.any():
        atoms = atoms.copy()
        atoms.cell = np.eye(3) * (np.ptp(atoms.positions, axis=0).max() + 10.0)
    return orm.StructureData(ase=atoms)


def frame_structure(trajectory, index):
    """Frame ``index`` of a TrajectoryData as an (unstored) StructureData, periodic as the frame is."""
    (atoms,) = trajectory_frames(trajectory, [index])
    return structure_from_atoms(atoms)

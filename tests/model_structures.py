"""Small structures for the model tests: a rattled fluorite ZrO2 cell (periodic) and water dimers."""

import numpy as np
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation


def fluorite(seed=0, rattle=0.12, a=5.1):
    """A 12-atom cubic fluorite ZrO2 cell (Zr +4 / O -2 formal), rattled and with a slightly skewed cell."""
    zr = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    o = np.array([[x, y, z] for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)])
    cell = a * np.eye(3) + np.array([[0, 0.1, 0], [0, 0, 0.15], [0.05, 0, 0]])
    atoms = Atoms("Zr4O8", scaled_positions=np.vstack([zr, o]), cell=cell, pbc=True)
    atoms.positions += np.random.default_rng(seed).normal(scale=rattle, size=atoms.positions.shape)
    return atoms


def water_dimer(seed=0, rattle=0.05):
    """A water dimer (6 atoms, no cell), rattled."""
    first, second = molecule("H2O"), molecule("H2O")
    second.rotate(104, "z")
    second.translate([2.9, 0.2, 0.1])
    atoms = first + second
    atoms.positions += np.random.default_rng(seed).normal(scale=rattle, size=atoms.positions.shape)
    return atoms


def rotated(atoms, seed):
    """``atoms`` with positions and cell rotated by a random rotation; returns (atoms, R)."""
    matrix = Rotation.random(random_state=seed).as_matrix()
    turned = atoms.copy()
    turned.set_cell(atoms.cell[:] @ matrix.T, scale_atoms=False)
    turned.positions = atoms.positions @ matrix.T
    return turned, matrix

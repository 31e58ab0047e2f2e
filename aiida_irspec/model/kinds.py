"""The model kinds behind one interface: dipole, monopole, combined and polynomial columns.

* ``dipole``: P is a sum of atomic vectors from lambda = 1 features (:mod:`.descriptors`), with the 4-body
  products of the default descriptor (the features times the centre's density of each species);
* ``monopole``: P is ``sum_j q_j x_j`` with environment-dependent, exactly conserved charges (:mod:`.monopole`);
* ``combined``: both, fitted jointly (dipole columns first, then monopole columns);
* ``polynomial``: the combined kind whose lambda = 1 features are multiplied by every monomial of degree
  <= ``polynomial_degree`` in the centre's densities of the ``polynomial_radial`` shortest-ranged radial
  functions of every species: the explicit feature map of the product kernel
  ``k(i, j) = (f(i) . f(j)) (1 + u(i) . u(j))^d`` (a polynomial kernel on the invariant part times the linear
  lambda = 1 kernel), which makes P a polynomial of higher order in the density coefficients.

All kinds are linear in their weights, so one set of normal equations serves every kind: the columns of
the dipole, monopole and combined kinds are subsets of the polynomial kind's (``--kind auto`` uses this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aiida_irspec.exceptions import InputError
from aiida_irspec.model.descriptors import FeatureSpace
from aiida_irspec.model.monopole import ChargeTransferSpace

if TYPE_CHECKING:
    from ase import Atoms

    from aiida_irspec.model.descriptors import DescriptorSettings

KINDS = ("dipole", "monopole", "combined", "polynomial")
#: The multipliers (radial channels, degree) of the dipole features of the dipole and combined kinds.
LINEAR_MULTIPLIERS = (1, 1)


def auto_kinds(settings: DescriptorSettings) -> tuple[str, ...]:
    """The kinds ``kind="auto"`` chooses from, the largest last (its columns hold every other kind's): all of
    :data:`KINDS`, without the polynomial kind unless ``settings.body_order`` is 4."""
    return KINDS if settings.body_order == 4 else tuple(kind for kind in KINDS if kind != "polynomial")


class ModelSpace:
    """Design blocks and contracted predictions of one kind; weights are flat (n_columns,)."""

    def __init__(self, kind: str, settings: DescriptorSettings, species: list[int]):
        if kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if kind == "polynomial" and settings.body_order != 4:
            raise InputError(f"the polynomial kind multiplies the 4-body products: it needs body_order 4, not "
                             f"{settings.body_order}")
        self.kind = kind
        multipliers = ((settings.polynomial_radial, settings.polynomial_degree) if kind == "polynomial"
                       else LINEAR_MULTIPLIERS)
        self.density = FeatureSpace(settings, species, multipliers)
        self.parts = {}
        if kind in ("dipole", "combined", "polynomial"):
            self.parts["dipole"] = self.density
        if kind in ("monopole", "combined", "polynomial"):
            self.parts["monopole"] = ChargeTransferSpace(self.density)
        self._slices, start = {}, 0
        for name, part in self.parts.items():
            self._slices[name] = slice(start, start + part.n_columns)
            start += part.n_columns
        self.n_columns = start

    # ------------------------------------------------------------------ delegation and layout
    @property
    def species(self):
        return self.density.species

    @property
    def n_species(self):
        return self.density.n_species

    def species_index(self, atoms):
        return self.density.species_index(atoms)

    def iter_expansions(self, frames, gradients=False, batch_size=16):
        return self.density.iter_expansions(frames, gradients, batch_size=batch_size)

    def expand_many(self, frames, gradients=False):
        return self.density.expand_many(frames, gradients)

    def columns_of(self, kind: str) -> np.ndarray:
        """Boolean (n_columns,): the columns that a model of ``kind`` uses (in the order of its own space)."""
        keep = np.zeros(self.n_columns, dtype=bool)
        for name in self.parts:
            if kind in ("combined", "polynomial", name):
                keep[self._slices[name]] = True
        if kind != "polynomial" and "dipole" in self.parts:
            keep[self._slices["dipole"]] &= self.density.columns_of_multipliers(*LINEAR_MULTIPLIERS)
        return keep

    def structural_zero_columns(self) -> np.ndarray:
        return np.concatenate([part.structural_zero_columns() for part in self.parts.values()])

    def column_groups(self) -> np.ndarray:
        """Integer label (n_columns,) of the prior block of every column (each part's blocks, kept apart)."""
        groups, offset = [], 0
        for part in self.parts.values():
            labels = part.column_groups()
            groups.append(labels + offset)
            offset += int(labels.max()) + 1
        return np.concatenate(groups)

    def _split(self, weights):
        weights = np.asarray(weights).ravel()
        return {name: weights[self._slices[name]].reshape(self.n_species, -1) for name in self.parts}

    # ------------------------------------------------------------------ designs
    def polarization_design(self, atoms: Atoms, coefficients: list) -> np.ndarray:
        """(3, n_columns) in Angstrom (per unit weight)."""
        return np.concatenate([part.polarization_design(atoms, coefficients) for part in self.parts.values()], axis=1)

    def born_charge_design(self, atoms: Atoms, expansion: tuple) -> np.ndarray:
        """(N, 3, 3, n_columns), dimensionless (per unit weight)."""
        return np.concatenate([part.born_charge_design(atoms, expansion) for part in self.parts.values()], axis=3)

    # ------------------------------------------------------------------ predictions (learned parts)
    def polarization(self, atoms: Atoms, weights: np.ndarray, coefficients: list) -> np.ndarray:
        """Learned P (3,) in |e| Angstrom."""
        split = self._split(weights)
        return sum(part.polarization(atoms, split[name], coefficients) for name, part in self.parts.items())

    def born_charges(self, atoms: Atoms, weights: np.ndarray, expansion: tuple) -> np.ndarray:
        """Learned Z (N, 3, 3) in |e|."""
        split = self._split(weights)
        return sum(part.born_charges(atoms, split[name], expansion) for name, part in self.parts.items())

    def polarization_derivative(self, atoms: Atoms, weights: np.ndarray, velocities: np.ndarray,
                                expansion: tuple) -> np.ndarray:
        """Learned dP/dt (3,) along ``velocities`` (N, 3): exact directional derivative ``sum_j Z_j v_j``."""
        return np.einsum("jab,jb->a", self.born_charges(atoms, weights, expansion), velocities)

    def charges(self, atoms: Atoms, weights: np.ndarray, coefficients: list) -> np.ndarray:
        """Learned (transferred) charges (N,) in |e|, zero for the dipole kind; they sum to zero."""
        if "monopole" not in self.parts:
            return np.zeros(len(atoms))
        return self.parts["monopole"].charges(atoms, self._split(weights)["monopole"], coefficients)

    def atomic_dipoles(self, atoms: Atoms, weights: np.ndarray, coefficients: list) -> np.ndarray:
        """Atomic dipoles (N, 3) in |e| Angstrom of the dipole part, zero for the monopole kind."""
        if "dipole" not in self.parts:
            return np.zeros((len(atoms), 3))
        w = self._split(weights)["dipole"][self.species_index(atoms)]
        return np.einsum("iaf,if->ia", self.density.atom_features(coefficients), w)


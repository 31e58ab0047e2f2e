"""Monopole features: environment-dependent charges that flow between neighbours (exactly conserved).

Every atom j carries scalars ``chi_j^t = sum_F g_F(j) w[s(j), t, F]`` (electronegativities), linear in
invariant (lambda = 0) descriptors ``g(j)``: a constant, the 2-body densities ``c[0]`` and the 3-body
power spectrum ``p_l[k1 <= k2] = sum_m c[l][j, m, k1] c[l][j, m, k2]`` (l = 0 .. l_max), from the same
featomic expansion as the dipole features (its ``invariant_radial`` shortest-ranged radial functions).
Charge flows between neighbours j, k closer than the transfer cutoff r_t, through channels
``t = (species of the partner, n)`` with radial weights ``f_n(r) = fc(r) (r / r_t)^n``
(``fc(r) = (1 + cos(pi r / r_t)) / 2``, n < ``transfer_radial``)::

    q_j = q0_j + sum_k sum_n f_n(r_jk) (chi_j^(s(k), n) - chi_k^(s(j), n))

so ``sum_j q_j = sum_j q0_j`` exactly, for any weights. The learned part of ``P = sum_j q_j x_j`` is then
``sum_j sum_t chi_j^t b_j^t`` with the bond sums ``b_j^(s, n) = sum_{k in s} f_n(r_jk) (x_j - x_k)``
(neighbour vectors, periodic images included): local, independent of the origin and of wrapping, and its
exact derivative is the monopole Born charge in bond-vector form::

    Z[i, a, b] = q_i delta_ab + sum_j (x_j - x_i)_a d q_j / d x_{i, b}

Units: features dimensionless, positions Angstrom, chi in |e| (weights absorb the scale), b in Angstrom.
"""

import numpy as np

from aiida_irspec.model.descriptors import reduction_matrix, segment_contract, species_segments


class ChargeTransferSpace:
    """Columns ``(centre species s, channel t, invariant F)`` of the monopole model.

    density: the :class:`~aiida_irspec.model.descriptors.FeatureSpace` whose featomic expansion is shared;
    its settings give ``transfer_cutoff`` (Angstrom), ``transfer_radial`` and ``invariant_radial``.
    """

    def __init__(self, density):
        self.density = density
        settings = density.settings
        self.transfer_cutoff = float(settings.transfer_cutoff)
        self.n_transfer = int(settings.transfer_radial)
        self.n_channels = density.n_species * self.n_transfer
        self._n_inv = min(settings.invariant_radial, settings.n_radial)
        self._keep = np.array([s * settings.n_radial + n for s in range(density.n_species) for n in range(self._n_inv)])
        n_k = len(self._keep)
        self._upper = np.triu_indices(n_k)
        self.n_power = len(self._upper[0])
        self.n_l = settings.l_max + 1 if settings.body_order >= 3 else 0
        self.n_invariants = 1 + n_k + self.n_l * self.n_power
        self.n_per_species = self.n_channels * self.n_invariants
        self.n_columns = density.n_species * self.n_per_species
        self._candidates = CandidatePairs(self.transfer_cutoff)

    def column_groups(self):
        """Integer label (n_columns,) of the block of every column, for the prior (:func:`.solver.column_scales`):
        one block per centre species and invariant family (the constant, the densities, the power spectrum of
        one l), all transfer channels together."""
        family = np.concatenate([[0], np.ones(self.n_invariants - 1 - self.n_l * self.n_power, dtype=int),
                                 np.repeat(2 + np.arange(self.n_l), self.n_power)])
        n_families = 2 + self.n_l
        species = np.repeat(np.arange(self.density.n_species), self.n_channels * self.n_invariants)
        return species * n_families + np.tile(family, self.density.n_species * self.n_channels)

    def structural_zero_columns(self):
        """No monopole column vanishes by construction: (n_columns,) all False."""
        return np.zeros(self.n_columns, dtype=bool)

    # ------------------------------------------------------------------ invariants and bonds
    def invariants(self, coefficients):
        """Invariant features g (N, n_invariants) from the expansion coefficients ``c[l]`` (N, 2l+1, K)."""
        c = [c_l[:, :, self._keep] for c_l in coefficients]
        blocks = [np.ones((len(c[0]), 1)), c[0][:, 0, :]]
        for l in range(self.n_l):
            power = np.einsum("imk,imq->ikq", c[l], c[l])
            blocks.append(power[:, self._upper[0], self._upper[1]])
        return np.concatenate(blocks, axis=1)

    def invariant_gradients(self, coefficients, gradients, index):
        """Gradients ``d g_F(i) / d x_{j, b}`` (per Angstrom) of the invariants of every centre i.

        gradients: the :class:`~aiida_irspec.model.descriptors.DensityGradients` of the frame; index (N,) the
        species index of every atom. Returns (by the neighbours j != i of ``gradients.pairs`` (P, 3, F), by
        the centre itself (N, 3, F)).
        """
        n_atoms, n_species, n_inv, n_k = len(index), self.density.n_species, self._n_inv, len(self._keep)
        centres, moved = gradients.pairs.T
        slot = (np.arange(len(centres)), slice(None), index[moved])  # a neighbour's own species' channels
        upper, lower = self._upper[0] * n_k + self._upper[1], self._upper[1] * n_k + self._upper[0]  # flat (k1, k2)
        by_neighbour = np.zeros((len(centres), 3, self.n_invariants))
        by_itself = np.zeros((n_atoms, 3, self.n_invariants))
        dense = np.zeros((len(centres), 3, n_species, n_inv))
        dense[slot] = gradients.neighbour[0][:, 0, :, :n_inv]
        by_neighbour[:, :, 1:1 + n_k] = dense.reshape(len(centres), 3, n_k)
        own = [g.reshape(n_atoms, 2 * l + 1, 3, n_species, -1)[..., :n_inv].reshape(n_atoms, 2 * l + 1, 3, n_k)
               for l, g in enumerate(gradients.own[:max(self.n_l, 1)])]
        by_itself[:, :, 1:1 + n_k] = own[0][:, 0]
        lo = 1 + n_k
        for l in range(self.n_l):
            # X[., b, k1, k2] = sum_m d c[l][i, m, k1] c[l][i, m, k2]; d p_l = X + X^T
            c = coefficients[l][:, :, self._keep]  # (N, m, K)
            near = gradients.neighbour[l][..., :n_inv].reshape(len(centres), 2 * l + 1, 3 * n_inv)
            dense = np.zeros((len(centres), 3, n_species, n_inv, n_k))
            dense[slot] = np.matmul(near.transpose(0, 2, 1), c[centres]).reshape(-1, 3, n_inv, n_k)
            x_near = dense.reshape(len(centres), 3, n_k**2)
            x_own = np.matmul(own[l].reshape(n_atoms, 2 * l + 1, -1).transpose(0, 2, 1), c).reshape(n_atoms, 3, -1)
            for out, x in ((by_neighbour, x_near), (by_itself, x_own)):
                out[:, :, lo:lo + self.n_power] = np.take(x, upper, axis=2) + np.take(x, lower, axis=2)
            lo += self.n_power
        return by_neighbour, by_itself

    def bonds(self, atoms):
        """Transfer pairs: centre, neighbour (P,), channel of each (P, n) radial term, f (P, n), r = x_c - x_n
        (P, 3) Angstrom, df/dr (P, n) per Angstrom. Pairs in the order of (centre, neighbour, periodic image)."""
        centre, neighbour, shift = self._candidates.pairs(atoms)
        positions = atoms.positions
        r = positions[centre] - positions[neighbour]
        if atoms.pbc.any():
            r -= shift @ atoms.cell.array
        distance = np.sqrt(np.einsum("pa,pa->p", r, r))
        inside = distance < self.transfer_cutoff
        centre, neighbour, r = centre[inside], neighbour[inside], r[inside]
        x = distance[inside] / self.transfer_cutoff
        cutoff, slope = 0.5 * (1 + np.cos(np.pi * x)), -0.5 * np.pi * np.sin(np.pi * x)
        n = np.arange(self.n_transfer)
        power = np.ones((len(x), self.n_transfer))  # x^n; its derivative n x^(n-1)
        lowered = np.zeros((len(x), self.n_transfer))
        for k in range(1, self.n_transfer):
            power[:, k] = power[:, k - 1] * x
            lowered[:, k] = k * power[:, k - 1]
        f = cutoff[:, None] * power
        df = (slope[:, None] * power + cutoff[:, None] * lowered) / self.transfer_cutoff
        channel = self.density.species_index(atoms)[neighbour][:, None] * self.n_transfer + n
        return centre, neighbour, channel, f, r, df

    def bond_sums(self, atoms, bonds=None):
        """``b_j^t`` (N, T, 3) in Angstrom."""
        centre, _, channel, f, r, _ = bonds if bonds is not None else self.bonds(atoms)
        slot = (centre[:, None] * self.n_channels + channel).ravel()  # (pair, n) -> (atom j, channel t)
        size = len(atoms) * self.n_channels
        terms = (f[:, :, None] * r[:, None, :]).reshape(-1, 3)
        return np.stack([np.bincount(slot, weights=terms[:, a], minlength=size) for a in range(3)],
                        axis=1).reshape(len(atoms), self.n_channels, 3)

    # ------------------------------------------------------------------ designs
    def polarization_design(self, atoms, coefficients):
        """Design block of P: (3, n_columns), ``A[a, (s, t, F)] = sum_{j in s} b^t_{j,a} g_F(j)``."""
        index = self.density.species_index(atoms)
        g, b = self.invariants(coefficients), self.bond_sums(atoms)
        design = np.zeros((3, self.density.n_species, self.n_channels, self.n_invariants))
        for s in range(self.density.n_species):
            design[:, s] = np.einsum("jta,jf->atf", b[index == s], g[index == s])
        return design.reshape(3, -1)

    def born_charge_design(self, atoms, expansion):
        """Design block of Z: (N, 3, 3, n_columns),
        ``A[i, a, b, (s, t, F)] = sum_{j in s} (b^t_{j,a} d g_F(j) / d x_{i,b} + g_F(j) d b^t_{j,a} / d x_{i,b})``."""
        index = self.density.species_index(atoms)
        c, gradients = expansion
        n_atoms, n_species, n_t, n_f = len(atoms), self.density.n_species, self.n_channels, self.n_invariants
        g, bonds = self.invariants(c), self.bonds(atoms)
        b = self.bond_sums(atoms, bonds)
        design = np.zeros((n_atoms, 3, 3, n_species, n_t, n_f))
        # (1) the electronegativities move: by the neighbours (pairs sorted by centre species, moved atom) ...
        by_neighbour, by_itself = self.invariant_gradients(c, gradients, index)  # (P, b, F), (N, b, F)
        pairs = gradients.pairs
        for s, rows, starts in species_segments(index[pairs[:, 0]], pairs[:, 1], n_species, n_atoms):
            centres = pairs[rows, 0]
            out = segment_contract(b.reshape(n_atoms, 1, -1), by_neighbour[rows].reshape(len(centres), 1, -1), starts,
                                   centres)  # (N, (t, a), (b, F))
            design[:, :, :, s] += out.reshape(n_atoms, n_t, 3, 3, n_f).transpose(0, 2, 3, 1, 4)
        # (2) the bonds move: d b_j / d x_j = sum_k M_jk, d b_j / d x_k = -M_jk, M = f I + f' r r^T / |r|
        centre, neighbour, channel, f, r, df = bonds
        m = f[:, :, None, None] * np.eye(3) + df[:, :, None, None] * _radial_outer(r)[:, None]  # (P, n, 3, 3)
        own = np.zeros((n_atoms, n_t, 3, 3))  # sum_k M_jk per channel t of j
        np.add.at(own, (centre[:, None], channel), m)
        # ... and atom j moves itself: its invariants (1) and its bonds (2), in its species' columns
        design[np.arange(n_atoms), :, :, index] += (np.einsum("ita,ibf->iabtf", b, by_itself)
                                                    + np.einsum("itab,if->iabtf", own, g))
        # -sum_j g_F(j) M_jk over the bonds of the moved atom k (channel (s(k), n) of j), per species s of j
        order = np.lexsort((neighbour, index[centre]))
        for s, rows, starts in species_segments(index[centre[order]], neighbour[order], n_species, n_atoms):
            bond = order[rows]
            out = segment_contract(m.reshape(len(m), 1, -1), g[centre[bond]][:, None], starts,
                                   bond)  # (N, (n, a, b), F)
            out = out.reshape(n_atoms, self.n_transfer, 3, 3, n_f).transpose(0, 2, 3, 1, 4)
            for partner in range(n_species):
                channels = slice(partner * self.n_transfer, (partner + 1) * self.n_transfer)
                design[index == partner, :, :, s, channels] -= out[index == partner]
        return design.reshape(n_atoms, 3, 3, -1)

    # ------------------------------------------------------------------ contracted predictions
    def electronegativities(self, atoms, weights, coefficients):
        """chi (N, T) in |e| for weights (n_species, n_per_species)."""
        index = self.density.species_index(atoms)
        w = weights.reshape(-1, self.n_channels, self.n_invariants)[index]
        return np.einsum("if,itf->it", self.invariants(coefficients), w)

    def polarization(self, atoms, weights, coefficients):
        """Learned P (3,) = ``sum_j sum_t chi_j^t b_j^t`` in |e| Angstrom, summed bond by bond:
        ``sum_(j,k) sum_n f_n(r_jk) chi_j^(s(k),n) r_jk``."""
        chi = self.electronegativities(atoms, weights, coefficients)
        centre, _, channel, f, r, _ = self.bonds(atoms)
        return np.einsum("pn,pn->p", f, chi[centre[:, None], channel]) @ r

    def charges(self, atoms, weights, coefficients):
        """Learned charges (N,) in |e|: ``sum_k sum_n f_n(r_jk) (chi_j^(s(k),n) - chi_k^(s(j),n))``; zero sum."""
        chi = self.electronegativities(atoms, weights, coefficients)
        centre, neighbour, channel, f, _, _ = self.bonds(atoms)
        index = self.density.species_index(atoms)
        reverse = index[centre][:, None] * self.n_transfer + np.arange(self.n_transfer)
        flow = np.sum(f * (chi[centre[:, None], channel] - chi[neighbour[:, None], reverse]), axis=1)
        return np.bincount(centre, weights=flow, minlength=len(atoms))

    def born_charges(self, atoms, weights, expansion):
        """Learned Z (N, 3, 3) in |e|: the two terms of :meth:`born_charge_design`, contracted with the
        weights per pair before summing (no design block is formed)."""
        index = self.density.species_index(atoms)
        c, gradients = expansion
        w = weights.reshape(-1, self.n_channels, self.n_invariants)
        chi = np.einsum("if,itf->it", self.invariants(c), w[index])
        bonds = self.bonds(atoms)
        b = self.bond_sums(atoms, bonds)
        by_neighbour, by_itself = self.invariant_gradients(c, gradients, index)
        centres, moved = gradients.pairs.T
        dchi = np.einsum("pbf,ptf->pbt", by_neighbour, w[index[centres]])
        per_pair = np.einsum("pta,pbt->pab", b[centres], dchi).reshape(len(centres), 9)
        z = reduction_matrix(moved, len(atoms)) @ per_pair
        z += np.einsum("ita,ibf,itf->iab", b, by_itself, w[index], optimize=True).reshape(len(atoms), 9)
        centre, neighbour, channel, f, r, df = bonds
        flow = chi[centre[:, None], channel]  # (bonds, n)
        per_bond = (np.sum(f * flow, axis=1)[:, None, None] * np.eye(3)
                    + np.sum(df * flow, axis=1)[:, None, None] * _radial_outer(r)).reshape(len(f), 9)
        z += (reduction_matrix(centre, len(atoms)) - reduction_matrix(neighbour, len(atoms))) @ per_bond
        return z.reshape(-1, 3, 3)


class CandidatePairs:
    """Pairs of atoms closer than ``cutoff + skin`` (Angstrom) in a reference frame, reused for the frames that
    follow while no atom has moved more than ``skin / 2`` from it (same atoms, cell and periodicity): every pair
    then closer than ``cutoff`` is among them, so the bonds are exactly those of a fresh neighbour list, at a
    fraction of its cost along a trajectory (ASE's list of 192 water atoms: 7.5 ms). Not thread-safe.
    """

    def __init__(self, cutoff, skin=1.0):
        self.cutoff, self.skin = float(cutoff), float(skin)
        self._reference = None  # (numbers, pbc, cell, positions) of the frame the pairs were found in
        self._pairs = None

    def pairs(self, atoms):
        """(centre (P,), neighbour (P,), integer cell shift (P, 3)) with ``x_neighbour + shift @ cell`` the image,
        sorted by (centre, neighbour, shift); a superset of the pairs closer than ``cutoff`` in ``atoms``."""
        from ase.neighborlist import neighbor_list

        if not self._still_valid(atoms):
            centre, neighbour, shift = neighbor_list("ijS", atoms, self.cutoff + self.skin, self_interaction=False)
            order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], neighbour, centre))
            self._pairs = centre[order], neighbour[order], shift[order]
            self._reference = (atoms.numbers.copy(), atoms.pbc.copy(), atoms.cell.array.copy(), atoms.positions.copy())
        return self._pairs

    def _still_valid(self, atoms):
        if self._reference is None:
            return False
        numbers, pbc, cell, positions = self._reference
        return (len(numbers) == len(atoms) and np.array_equal(numbers, atoms.numbers) and np.array_equal(pbc, atoms.pbc)
                and np.array_equal(cell, atoms.cell.array)
                and np.max(np.sum((atoms.positions - positions) ** 2, axis=1)) < (self.skin / 2) ** 2)


def _radial_outer(r):
    """``r r^T / |r|`` (P, 3, 3) of bond vectors r (P, 3): with df/dr, the non-isotropic part of d(f r)/dx."""
    distance = np.linalg.norm(r, axis=1)
    return r[:, :, None] * r[:, None, :] / np.where(distance > 0, distance, 1.0)[:, None, None]

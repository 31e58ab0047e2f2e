"""Lambda = 1 equivariant descriptors of atomic neighbourhoods, with exact position derivatives.

For every atom i (the centre) featomic expands the Gaussian-smeared density of each neighbour species
s on radial functions n and real spherical harmonics (l, m): ``c[l][i, m, k]`` with ``k = (s, n)``.
From it we build polar-vector (lambda = 1) features, Cartesian component ``a`` in (x, y, z):

* 2-body: ``f2[i, a, k] = c[1][i, m(a), k]``  (K = n_species * n_radial features);
* 3-body: ``f3_l[i, a, k1, k2] = sum_{m1 m2} C_l[m1, m2, a] c[l][i, m1, k1] c[l+1][i, m2, k2]`` for
  ``l = 0 .. l_max-1`` (K^2 features each; only ``|l1 - l2| = 1`` couples to a polar vector, and
  ``(l, l+1)`` covers each unordered pair once).

A frame's polarization is linear in the weights ``W[s_c, k]`` of the centre species s_c::

    P_a = sum_i sum_k f_k^a(i) W[s(i), k]          Z[j, a, b] = dP_a / dx_{j, b}

so a frame gives a design row block for P, ``A_P[a; s, k] = sum_{i in s} f_k^a(i)`` (3 rows), and for
Z, ``A_Z[j, a, b; s, k] = sum_{i in s} d f_k^a(i) / d x_{j, b}`` (9N rows). Derivatives are analytic:
featomic's position gradients of ``c`` and the product rule. Units: features are dimensionless
densities; positions in Angstrom; gradients per Angstrom.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse

from aiida_irspec.exceptions import InputError, ModelError
from aiida_irspec.model.coupling import XYZ_FROM_M, vector_coupling

if TYPE_CHECKING:
    from ase import Atoms


#: Smooth cutoffs of the density expansion: over the last ``cutoff_width`` only, or over the whole range.
CUTOFF_FUNCTIONS = ("shifted_cosine", "cosine")


@dataclasses.dataclass(frozen=True)
class DescriptorSettings:
    """Hyper-parameters of the descriptor (lengths in Angstrom).

    cutoff: radial cutoff; n_radial: number of GTO radial functions; l_max: largest angular channel
    (3-body couplings use l = 0..l_max); gaussian_width: width of the atomic Gaussians;
    cutoff_function: "shifted_cosine" (cosine switching over the last ``cutoff_width``) or "cosine"
    (Behler-Parrinello, switching over the whole range); body_order: 2 (2-body only), 3 (2+3-body) or 4
    (also every 2+3-body feature times the centre's 2-body density of each species, :class:`FeatureSpace`);
    monopole model (:mod:`.monopole`): transfer_cutoff, the range of the charge transfer between
    neighbours; transfer_radial, its number of radial channels per neighbour species; invariant_radial,
    how many of the radial functions (the shortest-ranged) enter its invariant descriptors; polynomial kind
    (:mod:`.kinds`): polynomial_radial, how many radial channels of the centre's densities modulate the
    features, and polynomial_degree, the largest degree of their products.
    """

    cutoff: float = 6.0
    n_radial: int = 4
    l_max: int = 5
    gaussian_width: float = 0.5
    cutoff_function: str = "cosine"
    cutoff_width: float = 0.5
    body_order: int = 4
    transfer_cutoff: float = 4.0
    transfer_radial: int = 3
    invariant_radial: int = 2
    polynomial_radial: int = 2
    polynomial_degree: int = 1

    def __post_init__(self):
        if (not self.cutoff > 0 or not self.gaussian_width > 0 or not 0 < self.cutoff_width <= self.cutoff
                or not self.transfer_cutoff > 0):
            raise InputError(f"descriptor lengths must be positive (cutoff_width <= cutoff): {self}")
        if (self.n_radial < 1 or self.l_max < 1 or self.transfer_radial < 1 or self.invariant_radial < 1
                or self.polynomial_radial < 1 or self.polynomial_degree < 1):
            raise InputError(f"n_radial, l_max, transfer_radial, invariant_radial, polynomial_radial and "
                             f"polynomial_degree must be >= 1: {self}")
        if self.cutoff_function not in CUTOFF_FUNCTIONS:
            raise InputError(f"cutoff_function must be 'shifted_cosine' or 'cosine', not {self.cutoff_function!r}")
        if self.body_order not in (2, 3, 4):
            raise InputError(f"body_order must be 2, 3 or 4, not {self.body_order}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DescriptorSettings:
        return cls(**data)


@dataclasses.dataclass
class DensityGradients:
    """Position gradients of one frame's density coefficients ``c[l][i, m, (s, n)]`` (per Angstrom).

    The density of species s around atom i moves with i and with its neighbours of species s only, so a
    neighbour j != i enters the channels of its own species alone:

    * ``pairs`` (P, 2): (centre i, neighbour j != i), sorted by (species of i, j, i);
    * ``neighbour[l]`` (P, 2l+1, 3, n): ``d c[l][i, m, (s(j), n)] / d x_{j, b}`` at ``[p, m, b, n]``;
    * ``own[l]`` (N, 2l+1, 3, K): ``d c[l][i, m, k] / d x_{i, b}`` at ``[i, m, b, k]``, every channel.
    """

    pairs: np.ndarray
    neighbour: list
    own: list


class FeatureSpace:
    """The lambda = 1 features of a fixed list of species (atomic numbers), and their design blocks.

    Base features ``f(i)`` (2-body k, then 3-body (l, k1, k2) for l = 0..l_max-1). With ``body_order=4``
    they also come multiplied by modulators ``u_s(i) = c[0][i, 0, (s, 0)]``, the centre's density of each
    species s in the shortest-ranged radial function (a smooth coordination number), which adds 4-body
    terms: ``[f(i), u_1(i) f(i), ..., u_S(i) f(i)]``. ``multipliers=(radial, degree)`` generalises this to every
    monomial ``m_t(i)`` of total degree <= degree in the modulators of the ``radial`` shortest-ranged radial
    functions of every species (``(1, 1)``: the modulators above): features ``m_t(i) f(i)``. Columns are ordered
    by centre species, then multiplier (the constant first), then base feature.
    """

    def __init__(self, settings: DescriptorSettings, species: Iterable[int], multipliers: tuple[int, int] = (1, 1)):
        from featomic import SphericalExpansion
        from featomic.basis import Gto, TensorProduct
        from featomic.cutoff import Cutoff, ShiftedCosine
        from featomic.density import Gaussian

        self.settings = settings
        self.species = [int(z) for z in sorted(set(species))]
        self.n_species = len(self.species)
        width = settings.cutoff if settings.cutoff_function == "cosine" else settings.cutoff_width
        self._calculator = SphericalExpansion(
            cutoff=Cutoff(radius=settings.cutoff, smoothing=ShiftedCosine(width=width)),
            density=Gaussian(width=settings.gaussian_width, center_atom_weight=0.0),
            basis=TensorProduct(max_angular=settings.l_max, radial=Gto(max_radial=settings.n_radial - 1)),
        )
        self.n_k = self.n_species * settings.n_radial
        self.n_l3 = settings.l_max if settings.body_order >= 3 else 0
        self.n_base = self.n_k + self.n_l3 * self.n_k**2
        radial, degree = multipliers if settings.body_order == 4 else (0, 0)
        radial = min(radial, settings.n_radial)
        # modulator channels k = (s, n < radial) of every species s, and the monomials of the multipliers
        self._modulator_channels = np.array([s * settings.n_radial + n for s in range(self.n_species)
                                             for n in range(radial)], dtype=int)
        self._monomials = _monomials(len(self._modulator_channels), degree)  # (U, M) exponents, the constant first
        self.n_modulators = len(self._monomials) - 1
        self.n_per_species = self.n_base * len(self._monomials)
        self.n_columns = self.n_species * self.n_per_species
        self._couplings = [vector_coupling(l, l + 1) for l in range(self.n_l3)]

    # ------------------------------------------------------------------ layout
    def column_labels(self) -> list[tuple]:
        """One tuple per column: (centre Z, multiplier, body, l, neighbour Z 1, n1, neighbour Z 2, n2), -1 when
        unused (no second neighbour). ``multiplier`` is the tuple of the modulator channels (Z, n) whose product
        multiplies the base feature, one entry per power (``()`` for none); ``body`` counts their neighbours."""
        n = self.settings.n_radial
        k_labels = [(z, r) for z in self.species for r in range(n)]
        channels = [(self.species[k // n], int(k % n)) for k in self._modulator_channels]
        labels = []
        for zc in self.species:
            for exponents in self._monomials:
                multiplier = tuple(channel for channel, e in zip(channels, exponents) for _ in range(e))
                extra = len(multiplier)
                labels += [(zc, multiplier, 2 + extra, 1, z, r, -1, -1) for z, r in k_labels]
                for l in range(self.n_l3):
                    labels += [(zc, multiplier, 3 + extra, l, z1, r1, z2, r2) for z1, r1 in k_labels
                               for z2, r2 in k_labels]
        return labels

    def column_groups(self) -> np.ndarray:
        """Integer label (n_columns,) of the block of every column, for the prior (:func:`.solver.column_scales`):
        one block per centre species, multiplier and body (2-body, or 3-body of one angular channel l)."""
        block = np.concatenate([np.zeros(self.n_k, dtype=int), np.repeat(1 + np.arange(self.n_l3), self.n_k**2)])
        n_blocks = 1 + self.n_l3
        return (np.arange(self.n_species * len(self._monomials))[:, None] * n_blocks + block).ravel()

    def columns_of_multipliers(self, radial: int, degree: int) -> np.ndarray:
        """Boolean (n_columns,): the columns whose multiplier uses only radial channels n < ``radial`` and has
        degree <= ``degree`` (the columns of a space with ``multipliers=(radial, degree)``, in the same order)."""
        n = self.settings.n_radial
        uses = (self._modulator_channels % n >= radial)[None, :] & (self._monomials > 0)
        keep = ~uses.any(axis=1) & (self._monomials.sum(axis=1) <= degree)
        return np.tile(np.repeat(keep, self.n_base), self.n_species)

    def structural_zero_columns(self) -> np.ndarray:
        """Boolean (n_columns,): unmodulated 2-body columns whose centre and neighbour species are equal.

        Each such pair enters P twice with opposite bond vectors, so the column vanishes identically.
        """
        return np.array([not multiplier and body == 2 and zc == z1
                         for zc, multiplier, body, _, z1, *_ in self.column_labels()])

    def species_index(self, atoms: Atoms) -> np.ndarray:
        """Index into ``self.species`` of every atom; ModelError for an unknown species."""
        unknown = sorted(set(atoms.numbers.tolist()) - set(self.species))
        if unknown:
            from ase.data import chemical_symbols

            raise ModelError(f"the model knows species {[chemical_symbols[z] for z in self.species]}, "
                             f"not {[chemical_symbols[z] for z in unknown]}")
        return np.searchsorted(self.species, atoms.numbers)

    # ------------------------------------------------------------------ expansion
    def expand(self, atoms: Atoms, gradients: bool = False):
        """Density coefficients of one frame.

        Returns ``c`` (list over l of (N, 2l+1, K)) and, with gradients, ``(c, DensityGradients)``.
        """
        return self.expand_many([atoms], gradients)[0]

    def expand_many(self, frames: list[Atoms], gradients: bool = False) -> list:
        """:meth:`expand` of several frames in one featomic call (faster for small frames)."""
        for atoms in frames:
            self.species_index(atoms)
        systems = [_featomic_system(atoms) for atoms in frames]
        tensor = self._calculator.compute(systems, gradients=["positions"] if gradients else None)
        n_radial, l_max, n_species = self.settings.n_radial, self.settings.l_max, self.n_species
        results = []
        blocks = _block_arrays(tensor, self.species, gradients)
        for f, atoms in enumerate(frames):
            n_atoms, index = len(atoms), self.species_index(atoms)
            coefficients = [np.zeros((n_atoms, 2 * l + 1, n_species, n_radial)) for l in range(l_max + 1)]
            own = [np.zeros((n_atoms, 2 * l + 1, 3, n_species, n_radial)) for l in range(l_max + 1)]
            pieces = []  # (l, pair code, values (rows, m, b, n)) of the neighbours j != i
            for block in blocks:
                l, neighbour = block.l, block.neighbour
                rows = _rows_of(block.systems, f)
                if rows.stop == rows.start:
                    continue
                coefficients[l][block.centres[rows], :, neighbour, :] = block.values[rows]
                if gradients:
                    select = _rows_of(block.gradient_systems, f)
                    centres = block.centres[block.gradient_samples[select]]
                    moved = block.gradient_atoms[select]
                    values = block.gradient_values[select].transpose(0, 2, 1, 3)  # (rows, b, m, n) -> (rows, m, b, n)
                    itself = centres == moved
                    own[l][centres[itself], :, :, neighbour] = values[itself]
                    # order pairs by (centre species, moved atom j, centre i): contiguous per (s, j); the centre's
                    # own rows get code -1 and land in a spare last row
                    code = np.where(itself, -1, (index[centres] * n_atoms + moved) * n_atoms + centres)
                    pieces.append((l, code, values))
            coefficients = [c.reshape(n_atoms, 2 * l + 1, self.n_k) for l, c in enumerate(coefficients)]
            if not gradients:
                results.append(coefficients)
                continue
            codes = np.concatenate([code for _, code, _ in pieces]) if pieces else np.zeros(0, dtype=int)
            is_pair = codes >= 0
            unique = np.unique(codes[is_pair])
            row = np.full(len(codes), len(unique))  # the row of every gradient: its pair's, or the spare one
            row[is_pair] = np.searchsorted(unique, codes[is_pair])
            neighbour = [np.zeros((len(unique) + 1, 2 * l + 1, 3, n_radial)) for l in range(l_max + 1)]
            offset = 0
            for l, code, values in pieces:  # each pair sits in the block of its neighbour's species only
                neighbour[l][row[offset:offset + len(code)]] = values
                offset += len(code)
            neighbour = [g[:len(unique)] for g in neighbour]
            pairs = np.stack([unique % n_atoms, (unique // n_atoms) % n_atoms], axis=1)
            own = [g.reshape(n_atoms, 2 * l + 1, 3, self.n_k) for l, g in enumerate(own)]
            results.append((coefficients, DensityGradients(pairs, neighbour, own)))
        return results

    def iter_expansions(self, frames: Iterable[Atoms], gradients: bool | Iterable[bool] = False, batch_size: int = 16,
                        max_gradient_atoms: int = 128) -> Iterator[tuple]:
        """Yield ``(atoms, expansion)`` in order while the next batch is expanded in a background thread.

        frames: any iterable of ``ase.Atoms``, consumed lazily (a batch ahead), so a generator streams a
        trajectory of any length through in bounded memory. gradients: one flag for all frames or an iterable
        of one per frame; consecutive frames with the same flag are expanded together, up to ``batch_size``
        frames (with gradients: up to ``max_gradient_atoms`` atoms in all, so that memory stays bounded for
        large frames).
        """
        from concurrent.futures import ThreadPoolExecutor

        flags = itertools.repeat(gradients) if isinstance(gradients, bool) else (bool(g) for g in gradients)
        batches = _batches(zip(frames, flags), batch_size, max_gradient_atoms)
        current = next(batches, None)
        if current is None:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(self.expand_many, *current)
            while current is not None:
                following = next(batches, None)
                results = future.result()
                if following is not None:
                    future = pool.submit(self.expand_many, *following)
                yield from zip(current[0], results)
                current = following

    # ------------------------------------------------------------------ features
    def atom_features(self, coefficients: list) -> np.ndarray:
        """Per-atom features (N, 3, n_per_species) from the coefficients of ``expand``."""
        base = self._base_features(coefficients)
        return (self._multipliers(coefficients)[:, None, :, None] * base[:, :, None, :]).reshape(len(base), 3, -1)

    def _base_features(self, c):
        """The unmodulated features f (N, 3, n_base)."""
        blocks = [c[1][:, XYZ_FROM_M, :]]
        for l, coupling in enumerate(self._couplings):
            t = np.einsum("mna,inq->imaq", coupling, c[l + 1])
            blocks.append(np.einsum("imk,imaq->iakq", c[l], t).reshape(len(c[0]), 3, -1))
        return np.concatenate(blocks, axis=2)

    def _multipliers(self, c):
        """(N, U): the monomials ``m_t(i) = prod_c u_c(i)^e[t, c]`` of the modulators ``u_c(i) = c[0][i, 0, c]``
        (the constant 1 first)."""
        u = c[0][:, 0, self._modulator_channels]
        return np.prod(u[:, None, :] ** self._monomials, axis=2)

    def _multiplier_gradients(self, c, gradients, index):
        """Position gradients of the multipliers (per Angstrom): ``d m_t(i) / d x_{j, b}`` by the neighbour j of
        every pair (P, 3, U) (a neighbour moves the modulators of its own species only) and by the centre itself
        (N, 3, U); chain rule through ``d m_t / d u_c`` (the constant's column is zero)."""
        channels, exponents = self._modulator_channels, self._monomials
        n_radial = self.settings.n_radial
        u = c[0][:, 0, channels]  # (N, M)
        lowered = np.maximum(exponents[:, None, :] - np.eye(len(channels), dtype=int), 0)  # (U, c, M)
        slope = exponents * np.prod(u[:, None, None, :] ** lowered, axis=3)  # (N, U, c) = d m_t / d u_c
        centres, moved = gradients.pairs.T
        own_species = (channels // n_radial)[None, :] == index[moved][:, None]  # (P, M)
        by_neighbour = gradients.neighbour[0][:, 0][:, :, channels % n_radial] * own_species[:, None, :]  # (P, 3, M)
        by_itself = gradients.own[0][:, 0][:, :, channels]  # (N, 3, M)
        return (np.einsum("ptc,pbc->pbt", slope[centres], by_neighbour),
                np.einsum("itc,ibc->ibt", slope, by_itself))

    def polarization_design(self, atoms: Atoms, coefficients: list | None = None) -> np.ndarray:
        """Design block of P: (3, n_columns), ``A[a, (s, k)] = sum_{i in s} f_k^a(i)``."""
        index = self.species_index(atoms)
        if coefficients is None:
            coefficients = self.expand(atoms)
        features = self.atom_features(coefficients)
        design = np.zeros((3, self.n_species, self.n_per_species))
        for s in range(self.n_species):
            design[:, s] = features[index == s].sum(axis=0)
        return design.reshape(3, -1)

    def born_charge_design(self, atoms: Atoms, expansion: tuple | None = None) -> np.ndarray:
        """Design block of Z: (N, 3, 3, n_columns), ``A[j, a, b, (s, k)] = sum_{i in s} d f_k^a(i) / d x_{j,b}``
        (for modulated columns, of ``u(i) f_k^a(i)``)."""
        index = self.species_index(atoms)
        c, gradients = expansion if expansion is not None else self.expand(atoms, gradients=True)
        n_atoms, n_species, n_radial, n_k = len(atoms), self.n_species, self.settings.n_radial, self.n_k
        n_u = len(self._monomials)
        design = np.zeros((n_atoms, 3, 3, n_species, n_u, self.n_base))
        multipliers = self._multipliers(c)  # (N, U)
        centres, moved = gradients.pairs.T
        segments = species_segments(index[centres], moved, n_species, n_atoms)
        atom = np.arange(n_atoms)
        for l, (neighbour, own) in enumerate(zip(gradients.neighbour, gradients.own)):
            partners = self._gradient_partners(c, l)
            if not partners:
                continue
            # everything that multiplies d c[l] in the features of atom i, side by side, times each multiplier of
            # atom i: (N, m, (U, X))
            other = np.concatenate([partner.reshape(n_atoms, 2 * l + 1, -1) for *_, partner in partners], axis=2)
            other = (multipliers[:, None, :, None] * other[:, :, None, :]).reshape(n_atoms, 2 * l + 1, -1)
            # [s, j, (U, X), b, k] = sum_{i in s} sum_m other[i, m, (U, X)] d c[l][i, m, k] / d x_{j, b}
            contracted = np.zeros((n_species, n_atoms, other.shape[2], 3, n_species, n_radial))
            for s, rows, starts in segments:  # the neighbours j != i, in the channels of j's species
                out = segment_contract(other, neighbour[rows].reshape(len(centres[rows]), 2 * l + 1, -1), starts,
                                       centres[rows])  # (N, (U, X), (b, n))
                contracted[s, atom, :, :, index] = out.reshape(n_atoms, -1, 3, n_radial)
            # the centre itself, every channel
            own = np.matmul(other.transpose(0, 2, 1), own.reshape(n_atoms, 2 * l + 1, -1))  # (N, (U, X), (b, K))
            contracted[index, atom] += own.reshape(n_atoms, -1, 3, n_species, n_radial)
            for s in range(n_species):
                out = contracted[s].reshape(n_atoms, n_u, -1, 3 * n_k)
                column = 0
                for first, grad_first, partner in partners:
                    width = partner.shape[3]
                    block = out[:, :, column:column + 3 * width].reshape(n_atoms, n_u, 3, width, 3, n_k)
                    column += 3 * width
                    target = design[:, :, :, s, :, first:first + width * n_k]  # (N, a, b, U, .)
                    if grad_first:  # (N, a, b, U, k, k')
                        target.reshape(n_atoms, 3, 3, n_u, n_k, width)[:] += block.transpose(0, 2, 4, 1, 5, 3)
                    else:  # (N, a, b, U, k', k)
                        target.reshape(n_atoms, 3, 3, n_u, width, n_k)[:] += block.transpose(0, 2, 4, 1, 3, 5)
        if self.n_modulators:  # the multipliers move: f_k^a(i) d m_t(i) / d x_{j, b}
            base = self._base_features(c)  # (N, a, F)
            by_neighbour, by_itself = self._multiplier_gradients(c, gradients, index)
            for s, rows, starts in segments:
                out = segment_contract(base.reshape(n_atoms, 1, 3 * self.n_base),
                                       by_neighbour[rows].reshape(-1, 1, 3 * n_u), starts,
                                       centres[rows])  # (N, (a, F), (b, U))
                design[:, :, :, s] += out.reshape(n_atoms, 3, self.n_base, 3, n_u).transpose(0, 1, 3, 4, 2)
            design[atom, :, :, index] += np.einsum("iaf,ibt->iabtf", base, by_itself)
        return design.reshape(n_atoms, 3, 3, -1)

    def _gradient_partners(self, c, l):
        """Everything that multiplies ``d c[l][i, m, k]`` in the features of atom i.

        Returns [(first column, grad_first, partner (N, 2l+1, 3, K'))]: the features
        ``sum_m partner[i, m, a, k'] c[l][i, m, k]`` fill the columns ``first + (k, k')`` (grad_first) or
        ``first + (k', k)``: 2-body (l = 1, K' = 1, one-hot of m(a)) and both sides of the 3-body couplings
        (l, l+1) (partner ``sum_m2 C c[l+1]``) and (l-1, l) (partner ``sum_m1 C c[l-1]``).
        """
        n_atoms, n_k = len(c[0]), self.n_k
        partners = []
        if l == 1:
            one_hot = np.eye(3)[:, XYZ_FROM_M]  # [m, a] = 1 where m = m(a)
            partners.append((0, False, np.broadcast_to(one_hot[None, :, :, None], (n_atoms, 3, 3, 1))))
        if l < self.n_l3:
            partners.append((n_k + l * n_k**2, True, np.einsum("mna,inq->imaq", self._couplings[l], c[l + 1])))
        if 0 < l <= self.n_l3:
            partners.append((n_k + (l - 1) * n_k**2, False,
                             np.einsum("mna,imk->inak", self._couplings[l - 1], c[l - 1])))
        return partners

    # ------------------------------------------------------------------ contracted predictions
    def _weighted(self, coefficients, index, weights):
        """Per-atom contractions with weights (n_species, n_per_species).

        Returns (w2 (N, K), [V_l (N, 2l+1, 3, K) for term d c[l]], [U_l (N, 2l+3, 3, K) for term d c[l+1]]),
        with ``V_l[i, m1, a, k1] = sum_{m2 k2} C[m1, m2, a] W[k1, k2] c[l+1][i, m2, k2]`` and ``U_l`` alike;
        W are the atom's effective weights ``sum_t mult_t(i) W_t`` of its base features (modulators held fixed).
        """
        c, n_k = coefficients, self.n_k
        w = self._effective_weights(c, index, weights)
        v_list, u_list = [], []
        for l, coupling in enumerate(self._couplings):
            lo = n_k + l * n_k**2
            wl = w[:, lo:lo + n_k**2].reshape(-1, n_k, n_k)
            wc = np.matmul(c[l + 1], wl.transpose(0, 2, 1))  # (N, m2, k1)
            v_list.append(np.einsum("mna,ink->imak", coupling, wc))
            cw = np.matmul(c[l], wl)  # (N, m1, k2)
            u_list.append(np.einsum("mna,imk->inak", coupling, cw))
        return w[:, :n_k], v_list, u_list

    def _effective_weights(self, c, index, weights):
        """(N, n_base): every atom's weights of its base features, ``sum_t m_t(i) W[s(i), t]``."""
        multipliers = self._multipliers(c)
        w = np.empty((len(index), self.n_base))
        for s in range(self.n_species):
            rows = index == s
            if rows.any():
                w[rows] = multipliers[rows] @ weights[s].reshape(-1, self.n_base)
        return w

    def polarization(self, atoms: Atoms, weights: np.ndarray, coefficients: list | None = None) -> np.ndarray:
        """Learned P (3,) of one frame for weights (n_species, n_per_species).

        ``P_a = sum_i f(i) . w(i)`` with the 3-body sums taken over the atoms before the coupling:
        ``sum_{m1 m2} C_l[m1, m2, a] sum_i sum_{k1 k2} c[l][i, m1, k1] W_l(i)[k1, k2] c[l+1][i, m2, k2]``.
        """
        index = self.species_index(atoms)
        c = coefficients if coefficients is not None else self.expand(atoms)
        w, n_k = self._effective_weights(c, index, weights), self.n_k
        p = np.einsum("iak,ik->a", c[1][:, XYZ_FROM_M, :], w[:, :n_k])
        for l, coupling in enumerate(self._couplings):
            wl = w[:, n_k + l * n_k**2:n_k + (l + 1) * n_k**2].reshape(-1, n_k, n_k)
            wc = np.matmul(c[l + 1], wl.transpose(0, 2, 1))  # (N, m2, k1)
            pairs = np.matmul(c[l], wc.transpose(0, 2, 1)).sum(axis=0)  # (m1, m2)
            p += np.tensordot(pairs, coupling, axes=([0, 1], [0, 1]))
        return p

    def born_charges(self, atoms: Atoms, weights: np.ndarray, expansion: tuple | None = None) -> np.ndarray:
        """Learned Z (N, 3, 3) of one frame for weights (n_species, n_per_species)."""
        index = self.species_index(atoms)
        c, gradients = expansion if expansion is not None else self.expand(atoms, gradients=True)
        n_atoms, n_species, n_radial = len(atoms), self.n_species, self.settings.n_radial
        centres, moved = gradients.pairs.T
        per_pair = np.zeros((len(centres), 3, 3))  # (p, b, a)
        z = np.zeros((n_atoms, 3, 3))  # (i, a, b)
        for l, x in enumerate(self._weight_channels(c, index, weights)):
            # x[i, m, a, k]: the weights of every feature of atom i whose derivative goes through d c[l][i, m, k]
            near = x.reshape(n_atoms, 2 * l + 1, 3, n_species, n_radial)[centres, :, :, index[moved]]  # (P, m, a, n)
            per_pair += np.einsum("pmbn,pman->pba", gradients.neighbour[l], near, optimize=True)
            z += np.einsum("imbk,imak->iab", gradients.own[l], x, optimize=True)
        if self.n_modulators:  # the multipliers move: sum_t (f(i) . W_t) d m_t(i) / d x_{j, b}
            dipoles = np.einsum("iaf,itf->ita", self._base_features(c),
                                weights[index].reshape(n_atoms, -1, self.n_base))  # (N, t, a)
            by_neighbour, by_itself = self._multiplier_gradients(c, gradients, index)
            per_pair += np.einsum("pbt,pta->pba", by_neighbour, dipoles[centres])
            z += np.einsum("ita,ibt->iab", dipoles, by_itself)
        z += (reduction_matrix(moved, n_atoms) @ per_pair.reshape(-1, 9)).reshape(n_atoms, 3, 3).transpose(0, 2, 1)
        return z

    def _weight_channels(self, c, index, weights):
        """Per density channel l, ``X_l[i, m, a, k]`` (N, 2l+1, 3, K): the weights of every feature of atom i
        whose derivative goes through ``d c[l][i, m, k]`` (2-body for l = 1, the two sides of the 3-body
        couplings (l, l+1) and (l-1, l))."""
        w2, v_list, u_list = self._weighted(c, index, weights)
        channels = [np.zeros((len(c[0]), 2 * l + 1, 3, self.n_k)) for l in range(len(c))]
        for a, m in enumerate(XYZ_FROM_M):
            channels[1][:, m, a, :] += w2
        for l, (v, u) in enumerate(zip(v_list, u_list)):
            channels[l] += v
            channels[l + 1] += u
        return channels


def _batches(flagged, batch_size, max_gradient_atoms):
    """Group ``(atoms, flag)`` pairs into ``(frames, flag)`` batches lazily: consecutive frames with one flag, up to
    ``batch_size`` frames and, with gradients, ``max_gradient_atoms`` atoms (a single larger frame alone)."""
    batch, batch_flag, n_atoms = [], None, 0
    for atoms, flag in flagged:
        room = len(batch) < batch_size and (not flag or n_atoms + len(atoms) <= max_gradient_atoms)
        if batch and (flag != batch_flag or not room):
            yield batch, batch_flag
            batch, n_atoms = [], 0
        batch.append(atoms)
        batch_flag, n_atoms = flag, n_atoms + len(atoms)
    if batch:
        yield batch, batch_flag


def _monomials(n_channels, degree):
    """Exponents (U, n_channels) of every monomial of total degree 0..degree in n_channels variables: the
    constant first, then by degree, each degree in lexicographic order of its channels."""
    rows = [np.zeros(n_channels, dtype=int)]
    for d in range(1, degree + 1):
        for combination in itertools.combinations_with_replacement(range(n_channels), d):
            rows.append(np.bincount(combination, minlength=n_channels))
    return np.array(rows, dtype=int)


@dataclasses.dataclass
class _BlockArrays:
    """The arrays of one block of featomic's expansion (angular channel ``l``, neighbour species index), read
    once: samples' system and centre atom, values, and with gradients the gradient samples' row, system and
    moved atom and the gradient values."""

    l: int
    neighbour: int
    systems: np.ndarray
    centres: np.ndarray
    values: np.ndarray
    gradient_samples: np.ndarray | None = None
    gradient_systems: np.ndarray | None = None
    gradient_atoms: np.ndarray | None = None
    gradient_values: np.ndarray | None = None


def _block_arrays(tensor, species, gradients):
    """The blocks of featomic's expansion as :class:`_BlockArrays`, in the tensor's order.

    Read through metatensor's own block views, with every Labels freed as soon as its values are copied: in
    metatensor-core 0.2.6 a Labels made from a native pointer (``block.samples``, ``tensor.keys``, also read by
    ``len(tensor)`` and so by ``tensor.block(i)``) never frees it, which leaked the samples of every block (1 MB
    a 96-atom frame with gradients). Serialising the whole tensor (metatensor.io) avoided the leak at three times
    the cost of featomic's computation; this reads a frame with gradients in a third of that time, and memory stays
    flat (tests/test_model_descriptors.py::test_expansions_do_not_leak).
    """
    import ctypes

    from metatensor import TensorBlock
    from metatensor._c_api import mts_block_t

    names, keys = _labels_array(tensor.keys)
    out = []
    for index, key in enumerate(keys):
        pointer = ctypes.POINTER(mts_block_t)()
        tensor._lib.mts_tensormap_block_by_id(tensor._ptr, pointer, index)  # noqa: SLF001 - see the docstring
        block = TensorBlock.unsafe_view_from_ptr(pointer, parent=tensor)
        sample_names, samples = _labels_array(block.samples)
        values = dict(zip(names, key))
        arrays = _BlockArrays(int(values["o3_lambda"]), species.index(int(values["neighbor_type"])),
                              samples[:, sample_names.index("system")], samples[:, sample_names.index("atom")],
                              np.array(block.values))
        if gradients:
            gradient = block.gradient("positions")
            gradient_names, gradient_samples = _labels_array(gradient.samples)
            arrays.gradient_samples, arrays.gradient_systems, arrays.gradient_atoms = (
                gradient_samples[:, gradient_names.index(name)] for name in ("sample", "system", "atom"))
            arrays.gradient_values = np.array(gradient.values)
        out.append(arrays)
    return out


def _labels_array(labels):
    """(names, values (n, n_names) int array) of a metatensor Labels, whose native memory is then freed."""
    names, values, library = list(labels.names), np.array(labels.values), labels._lib  # noqa: SLF001
    labels._cached_values = None  # noqa: SLF001 - the view into the memory freed below
    library.mts_labels_free(labels.release())
    return names, values


def _rows_of(systems, f):
    """Slice of the rows of system ``f`` (featomic orders samples by system)."""
    return slice(int(np.searchsorted(systems, f, side="left")), int(np.searchsorted(systems, f, side="right")))


def _featomic_system(atoms):
    """featomic reads ASE Atoms; reject mixed periodicity with a clear message."""
    if atoms.pbc.any() and not atoms.pbc.all():
        raise InputError(f"mixed periodic boundary conditions {atoms.pbc.tolist()} are not supported")
    if atoms.pbc.all() and abs(atoms.cell.volume) < 1e-8:
        raise InputError("a periodic structure needs a cell with non-zero volume")
    return atoms


def reduction_matrix(rows: np.ndarray, n_rows: int) -> scipy.sparse.csr_matrix:
    """Sparse (n_rows, len(rows)) matrix summing pair entries into their row (atom) index."""
    return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_rows, len(rows)))


def species_segments(species: np.ndarray, atoms: np.ndarray, n_species: int, n_atoms: int) -> list[tuple]:
    """Segments of rows sorted by (species, atom), e.g. pairs by (centre species, moved atom).

    species, atoms (R,): the sort keys of the rows. Returns [(s, rows, starts)] for every species s that has
    rows: ``rows`` the slice of its rows and ``starts`` (n_atoms + 1,) where each atom's rows begin within it.
    """
    bounds = np.searchsorted(species * n_atoms + atoms, np.arange(n_species * n_atoms + 1))
    return [(s, slice(bounds[s * n_atoms], bounds[(s + 1) * n_atoms]),
             bounds[s * n_atoms:(s + 1) * n_atoms + 1] - bounds[s * n_atoms])
            for s in range(n_species) if bounds[(s + 1) * n_atoms] > bounds[s * n_atoms]]


def segment_contract(left: np.ndarray, right: np.ndarray, starts: np.ndarray,
                     left_rows: np.ndarray | None = None) -> np.ndarray:
    """``out[j] = sum_{p in segment j, m} left[r(p), m, :]^T right[p, m, :]``: (N, X, Y).

    left (L, M, X) and right (P, M, Y), the rows of ``right`` contiguous per segment j with ``starts`` (N+1,)
    boundaries; ``left_rows`` (P,) the row r(p) of ``left`` that goes with row p of ``right`` (default: p). Each
    segment's rows of ``left`` are gathered in turn, so no (P, M, X) copy is made (2.5 times faster than one
    gather for the Z design of 96-atom ZrO2).
    """
    n_x, n_y = left.shape[2], right.shape[2]
    out = np.zeros((len(starts) - 1, n_y, n_x))  # (N, Y, X): each product is the wide (Y, X) one
    for j, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
        if hi > lo:
            rows = slice(lo, hi) if left_rows is None else left_rows[lo:hi]
            np.matmul(right[lo:hi].reshape(-1, n_y).T, left[rows].reshape(-1, n_x), out=out[j])
    return out.transpose(0, 2, 1)


def structure_descriptors(frames: list[Atoms], settings: DescriptorSettings | None = None,
                          species: list[int] | None = None) -> np.ndarray:
    """Per-structure invariant summary (F, D) for farthest-point sampling of configurations.

    For each centre species: the mean over its atoms of the squared norm of every lambda = 1 feature
    (rotation-, translation- and permutation-invariant), so structures with similar environments are close.
    """
    settings = settings or DescriptorSettings()
    species = species or sorted({int(z) for atoms in frames for z in atoms.numbers})
    space = FeatureSpace(settings, species)
    rows = []
    for atoms in frames:
        index = space.species_index(atoms)
        squared = np.sum(space.atom_features(space.expand(atoms)) ** 2, axis=1)  # (N, F)
        rows.append(np.concatenate([squared[index == s].mean(axis=0) if np.any(index == s)
                                    else np.zeros(space.n_per_species) for s in range(space.n_species)]))
    return np.array(rows)

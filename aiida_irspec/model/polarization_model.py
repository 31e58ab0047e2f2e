"""The polarization model: fixed baseline charges plus a learned part that is linear in its weights.

``P = sum_i q_s(i) x_i + P_learned``  (|e| Angstrom; x unwrapped, Angstrom), ``Z[j, a, b] = dP_a / dx_{j,b}`` (|e|),
with the learned part of one of four kinds (:mod:`.kinds`): ``dipole`` (atomic vectors from lambda = 1
features, ``P_learned = sum_i sum_k f_k(i) W[s(i), k]``), ``monopole`` (charges that flow between
neighbours, :mod:`.monopole`), ``combined`` (both) or ``polynomial`` (combined, with the lambda = 1 features
times a polynomial of the centre's densities); ``kind="auto"`` picks one by cross-validation.

The weights W are fitted by regularised least squares to Born charges, to polarizations, or to both
with relative row weights (the paper weights P ten times), from normal equations accumulated frame by
frame. With ``basis="sparse"`` the weights are restricted to the span of reference environments chosen
by farthest-point sampling, ``W[s] = sum_{r, nu} w_r^nu f^nu(X_r)`` (the linear-kernel form of the paper).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aiida_irspec.exceptions import DAMAGED_NPZ_ERRORS, InputError, ModelError, open_npz
from aiida_irspec.files import savez
from aiida_irspec.model import baseline as baseline_charges
from aiida_irspec.model.descriptors import DescriptorSettings
from aiida_irspec.model.kinds import KINDS, ModelSpace, auto_kinds
from aiida_irspec.model.sampling import farthest_point, standardise
from aiida_irspec.model.solver import NormalEquations, column_scales, cross_validation_errors, solve_targets
from aiida_irspec.resources import check_memory

if TYPE_CHECKING:
    from ase import Atoms

FORMAT_VERSION = 2
DEFAULT_WEIGHTS = {"born_charges": 1.0, "polarization": 10.0}
#: Largest displacement (Angstrom) of any atom in the central difference of P along the velocities.
PDOT_STEP = 1e-4


class PolarizationModel:
    """Polarization P (frames, 3), Born charges Z (frames, N, 3, 3) and dP/dt of structures.

    descriptor: :class:`DescriptorSettings`; kind: "dipole", "monopole", "combined", "polynomial" (:mod:`.kinds`)
    or "auto" (the one with the lowest cross-validated error, from one set of normal equations; the fit's
    ``metrics["kind_selection"]`` lists every candidate's error); baseline: "auto" (formal charges for
    periodic cells, for molecules the best of zero / species mean / formal by cross-validation), "formal",
    "mean", "zero", or {element or atomic number: charge}; basis: "linear" (weights per species and feature)
    or "sparse" (span of ``n_sparse`` reference environments per species, farthest-point sampled; dipole
    kind only); regularization: "auto" (= "evidence"), "evidence", "cv" or a positive number (standardised units);
    n_folds: cross-validation folds of whole frames (round-robin over the distinct structures: copies of one
    structure share a fold).
    """

    def __init__(self, descriptor: DescriptorSettings | None = None, baseline: str | dict = "auto",
                 basis: str = "linear", n_sparse: int | None = None, regularization: str | float = "auto",
                 n_folds: int = 5, kind: str = "combined"):
        if kind not in KINDS + ("auto",):
            raise InputError(f"kind must be one of {', '.join(KINDS)} or 'auto', not {kind!r}")
        if basis not in ("linear", "sparse"):
            raise InputError(f"basis must be 'linear' or 'sparse', not {basis!r}")
        if basis == "sparse" and kind != "dipole":
            raise InputError(f"basis='sparse' is available for the dipole kind only, not {kind!r}: give kind "
                             f"'dipole' with it (--kind dipole)")
        if not (isinstance(baseline, dict) or baseline in ("auto", "formal", "mean", "zero")):
            raise InputError(f"baseline must be 'auto', 'formal', 'mean', 'zero' or a dict, not {baseline!r}")
        if isinstance(regularization, str) and regularization not in ("auto", "evidence", "cv"):
            raise InputError(f"regularization must be 'auto', 'evidence', 'cv' or a number, not {regularization!r}")
        if n_folds < 2:
            raise InputError(f"n_folds must be at least 2, not {n_folds}")
        self.kind = kind
        self.descriptor = descriptor or DescriptorSettings()
        self.baseline = baseline_charges.normalise_charges(baseline) if isinstance(baseline, dict) else baseline
        self.basis = basis
        self.n_sparse = n_sparse
        self.regularization = regularization
        self.n_folds = n_folds
        self.charges = None
        self.weights = None
        self.posterior_factor = None
        self.references = None
        self.metrics = {}
        self._space = None

    # ------------------------------------------------------------------ state
    @property
    def species(self) -> list[int]:
        """Atomic numbers the model knows (sorted)."""
        self._require_fitted()
        return list(self._space.species)

    @property
    def fitted_kind(self) -> str:
        """The kind of the fitted model ("dipole", "monopole", "combined" or "polynomial"; what "auto" picked)."""
        self._require_fitted()
        return self._space.kind

    @property
    def is_fitted(self) -> bool:
        return self.weights is not None

    def _require_fitted(self):
        if not self.is_fitted:
            raise ModelError("the model is not fitted: call fit() or PolarizationModel.load()")

    # ------------------------------------------------------------------ fitting
    def fit(self, frames: Iterable[Atoms], born_charges: list | None, polarizations: list | None = None,
            weights: dict | None = None, validation: tuple | None = None, progress: bool = False) -> PolarizationModel:
        """Fit to Born charges (list of (N, 3, 3) |e| or None) and/or polarizations (list of (3,) |e| A or None).

        weights: relative row weights {"born_charges": 1.0, "polarization": 10.0}; validation: optional
        (frames, born_charges, polarizations) whose errors go into ``metrics["validation"]``.
        """
        frames, born_charges, polarizations = _check_data(frames, born_charges, polarizations)
        return self._fit(frames, born_charges, polarizations, {**DEFAULT_WEIGHTS, **(weights or {})}, validation,
                         progress)

    def _fit(self, frames, born_charges, polarizations, weights, validation, progress):
        kinds = auto_kinds(self.descriptor) if self.kind == "auto" else (self.kind,)
        space = ModelSpace(kinds[-1] if self.kind == "auto" else self.kind, self.descriptor,
                           sorted({int(z) for atoms in frames for z in atoms.numbers}))
        candidates = self._baseline_candidates(frames, born_charges)
        basis = self._sparse_basis(space, frames, progress) if self.basis == "sparse" else None
        groups = np.array(structure_groups(frames))  # copies of a structure share a fold: nothing leaks across folds
        n_folds = min(self.n_folds, groups.max() + 1)
        check_memory(fit_memory(space.n_columns, n_folds, space.n_species + 1, len(candidates),
                                max(len(atoms) for atoms in frames)),
                     f"a fit of {space.n_columns} columns ({len(space.species)} species)",
                     "fit fewer species at once or use a smaller descriptor (--n-radial, --l-max, --body-order)")
        folds = groups % n_folds
        alpha = "evidence" if self.regularization == "auto" else self.regularization
        groups = None if basis is not None else space.column_groups()  # the prior's blocks (solver.column_scales)

        def zero_columns(kind):
            return None if basis is not None else space.structural_zero_columns() | ~space.columns_of(kind)

        def solve_kind(kind):
            """[(kind, baseline name, cv rmse, baseline index, solution)] for every baseline candidate."""
            zero = zero_columns(kind)
            trials = solve_targets(normal, alpha, zero, list(range(len(candidates))), basis=basis, groups=groups)
            return [(kind, name, _cv_rmse(normal, trial.alpha, zero, t, basis, groups)
                     if len(candidates) * len(kinds) > 1 else None, t, trial)
                    for t, ((name, _), trial) in enumerate(zip(candidates, trials))]

        normal = self._normal_equations(space, frames, born_charges, polarizations, candidates, weights, folds,
                                        n_folds, progress)
        normal.total()  # the fold sums are computed once, before the kinds are solved
        if len(kinds) == 1:  # one solve: BLAS threads as configured
            selection = solve_kind(kinds[0])
        else:  # several: two at a time, BLAS on one thread each
            with ThreadPoolExecutor(max_workers=2) as solver, _one_blas_thread():
                selection = [row for rows in solver.map(solve_kind, kinds) for row in rows]
        kind, _, cv_error, best, solution = min(selection, key=lambda row: row[2] or 0.0)
        group_rmse = normal.group_rmse(solution.weights, target=best)
        keep = space.columns_of(kind)
        self._space = ModelSpace(kind, self.descriptor, space.species) if kind != space.kind else space
        self.charges = dict(candidates[best][1])
        self.weights = solution.weights[keep]
        self.posterior_factor = solution.posterior_factor[keep]
        self.metrics = {
            "kind": kind,
            "kind_selection": ([{"kind": k, "baseline": name, "cv_rmse": error} for k, name, error, *_ in selection]
                               if len(kinds) > 1 else []),
            "n_structures": len(frames),
            "n_born_charges": sum(z is not None for z in born_charges),
            "n_polarizations": sum(p is not None for p in polarizations),
            "baseline": candidates[best][0],
            "baseline_charges": _symbol_keys(self.charges),
            "baseline_selection": [{"baseline": name, "cv_rmse": error} for k, name, error, *_ in selection
                                   if k == kind and len(candidates) > 1],
            "regularization": {"method": solution.method, "alpha": solution.alpha,
                               "noise_variance": solution.noise_variance},
            "weights": weights,
            "n_columns": int(space.n_columns),
            "n_parameters": int(solution.posterior_factor.shape[1]),
            "training": self._group_metrics(group_rmse, normal.group_rows),
            "cv_rmse": (cv_error if cv_error is not None else solution.cv_rmse if solution.cv_rmse is not None else
                        _cv_rmse(normal, solution.alpha, zero_columns(kind), 0, basis, groups))
            if n_folds > 1 else None,
        }
        if validation is not None:
            self.metrics["validation"] = self.evaluate(*validation, progress=progress)
        return self

    def _normal_equations(self, space, frames, born_charges, polarizations, candidates, weights, folds, n_folds,
                          progress):
        """The normal equations of every frame's rows (:class:`NormalEquations`; ``folds`` (F,) the fold of each
        frame): each frame's rows are folded in by a background thread while the main thread builds the next
        frame's design (and featomic expands the next batch in another)."""
        # the Z rows of the most common species: the group whose A^T A is derived from the others'
        z_rows = np.bincount(np.concatenate([space.species_index(atoms) for atoms, z in zip(frames, born_charges)
                                             if z is not None] or [np.zeros(0, dtype=int)]),
                             minlength=space.n_species)
        normal = NormalEquations(space.n_columns, n_folds=n_folds, n_groups=space.n_species + 1,
                                 n_targets=len(candidates), derived_group=int(np.argmax(z_rows)))
        with (_progress(len(frames), progress, "fit") as bar, ThreadPoolExecutor(max_workers=1) as adder,
              _one_blas_thread()):
            added = None
            expansions = space.iter_expansions(frames, [z is not None for z in born_charges])
            for k, ((atoms, expansion), z, p) in enumerate(zip(expansions, born_charges, polarizations)):
                index = space.species_index(atoms)
                q = np.array([baseline_charges.baseline_charges_per_atom(c, atoms.numbers) for _, c in candidates])
                coefficients = expansion[0] if z is not None else expansion
                blocks = []  # (design, target, group, weight) of this frame
                if z is not None:
                    design = space.born_charge_design(atoms, expansion)
                    target = (z[None] - q[:, :, None, None] * np.eye(3)).transpose(1, 2, 3, 0)  # (N, 3, 3, T)
                    for s in range(space.n_species):
                        rows = index == s
                        if rows.any():
                            blocks.append((design[rows].reshape(-1, space.n_columns),
                                           target[rows].reshape(-1, len(q)), s, weights["born_charges"]))
                if p is not None:
                    target = p[:, None] - atoms.positions.T @ q.T  # (3, T)
                    blocks.append((space.polarization_design(atoms, coefficients), target, space.n_species,
                                   weights["polarization"]))
                if added is not None:
                    added.result()
                added = adder.submit(_add_blocks, normal, blocks, folds[k])
                bar.update(1)
            if added is not None:
                added.result()
        return normal

    def _group_metrics(self, rmse, rows):
        from ase.data import chemical_symbols

        out = {"born_charges_rmse": {chemical_symbols[z]: float(rmse[s]) for s, z in enumerate(self._space.species)
                                     if rows[s] > 0}}
        if rows[:-1].sum() > 0:
            out["born_charges_rmse"]["all"] = float(np.sqrt(np.nansum(rmse[:-1] ** 2 * rows[:-1]) / rows[:-1].sum()))
        if rows[-1] > 0:
            out["polarization_rmse"] = float(rmse[-1])
        return out

    def evaluate(self, frames: Iterable[Atoms], born_charges: list | None, polarizations: list | None = None,
                 progress: bool = False) -> dict:
        """RMSE of Z per species and overall (|e|) and of P (|e| A) on the frames that have them."""
        from ase.data import chemical_symbols

        frames, born_charges, polarizations = _check_data(frames, born_charges, polarizations)
        squared, counts = {}, {}
        with_z = [k for k, z in enumerate(born_charges) if z is not None]
        for k, predicted in zip(with_z, self._iter_born_charges([frames[k] for k in with_z])):
            error = (predicted - born_charges[k]) ** 2
            for z in set(frames[k].numbers.tolist()):
                name = chemical_symbols[z]
                squared[name] = squared.get(name, 0.0) + float(error[frames[k].numbers == z].sum())
                counts[name] = counts.get(name, 0) + 9 * int(np.sum(frames[k].numbers == z))
        out = {}
        if with_z:
            out["born_charges_rmse"] = {name: float(np.sqrt(squared[name] / counts[name])) for name in sorted(squared)}
            out["born_charges_rmse"]["all"] = float(np.sqrt(sum(squared.values()) / sum(counts.values())))
        with_p = [k for k, p in enumerate(polarizations) if p is not None]
        if with_p:
            predicted = self.predict_polarization([frames[k] for k in with_p], progress=progress)
            truth = np.array([polarizations[k] for k in with_p])
            out["polarization_rmse"] = float(np.sqrt(np.mean((predicted - truth) ** 2)))
            out["polarization_std"] = float(np.sqrt(np.mean((truth - truth.mean(0)) ** 2)))
        return out

    def _baseline_candidates(self, frames, born_charges):
        """[(name, {Z: q})] to choose from (one unless baseline='auto' for molecules)."""
        species = sorted({int(z) for atoms in frames for z in atoms.numbers})
        periodic = all(atoms.pbc.all() for atoms in frames)
        if isinstance(self.baseline, dict):
            candidates = [("given", self.baseline)]
        elif self.baseline == "formal" or (self.baseline == "auto" and periodic):
            candidates = [("formal", baseline_charges.formal_charges(species))]
        elif self.baseline == "mean":
            candidates = [("mean", baseline_charges.mean_charges(frames, born_charges))]
        elif self.baseline == "zero":
            candidates = [("zero", {z: 0.0 for z in species})]
        else:
            candidates = [("zero", {z: 0.0 for z in species})]
            if any(z is not None for z in born_charges):
                candidates.append(("mean", baseline_charges.mean_charges(frames, born_charges)))
            try:
                formal = baseline_charges.formal_charges(species)
                baseline_charges.check_neutral(formal, frames)
                candidates.append(("formal", formal))
            except InputError:
                pass
        for _, charges in candidates:
            baseline_charges.check_neutral(charges, frames)
        return candidates

    def _sparse_basis(self, space, frames, progress):
        """Block-diagonal (C, C') basis of reference features, FPS per centre species; sets ``self.references``."""
        space = space.density
        rng = np.random.default_rng(0)
        pool = {s: [] for s in range(space.n_species)}
        for atoms, c in zip(frames, space.expand_many(frames)):
            index = space.species_index(atoms)
            features = space.atom_features(c)
            for s in range(space.n_species):
                pool[s].append(features[index == s])
        zero = space.structural_zero_columns().reshape(space.n_species, space.n_per_species)
        blocks, self.references = [], {}
        for s, z in enumerate(space.species):
            features = np.concatenate(pool[s])  # (atoms, 3, F)
            if len(features) > 5000:
                features = features[np.sort(rng.choice(len(features), 5000, replace=False))]
            invariants = np.sum(features**2, axis=1)
            chosen = farthest_point(standardise(invariants), min(self.n_sparse or 100, len(invariants)))
            reference = features[chosen] * ~zero[s]
            self.references[z] = reference
            blocks.append(reference.reshape(-1, space.n_per_species).T)
        import scipy.linalg

        return scipy.linalg.block_diag(*blocks)

    # ------------------------------------------------------------------ prediction
    def predict_polarization(self, frames: Atoms | Iterable[Atoms], batch_size: int = 32,
                             progress: bool = False) -> np.ndarray:
        """P (F, 3) in |e| Angstrom: baseline ``sum q x`` (positions as given) plus the learned part."""
        self._require_fitted()
        frames = _as_frames(frames)
        out = np.zeros((len(frames), 3))
        with _progress(len(frames), progress, "P") as bar:
            for k, p in enumerate(self.iter_polarization(frames, batch_size)):
                out[k] = p
                bar.update(1)
        return out

    def iter_polarization(self, frames: Iterable[Atoms], batch_size: int = 32) -> Iterator[np.ndarray]:
        """P (3,) in |e| Angstrom of each frame of an iterable of ``ase.Atoms``, yielded in order as the frames
        are consumed (a batch ahead): one spherical expansion per frame, memory independent of their number."""
        self._require_fitted()
        for atoms, c in self._space.iter_expansions(_checked_frames(frames), batch_size=batch_size):
            yield self._baseline(atoms) @ atoms.positions + self._space.polarization(atoms, self.weights, c)

    def predict_born_charges(self, frames: Atoms | Iterable[Atoms], progress: bool = False) -> np.ndarray:
        """Z (F, N, 3, 3) in |e| (all frames must have the same number of atoms)."""
        self._require_fitted()
        frames = _as_frames(frames)
        if len({len(atoms) for atoms in frames}) > 1:
            raise InputError("predict_born_charges needs frames with equal numbers of atoms")
        out = np.zeros((len(frames), len(frames[0]) if frames else 0, 3, 3))
        with _progress(len(frames), progress, "Z") as bar:
            for k, z in enumerate(self._iter_born_charges(frames)):
                out[k] = z
                bar.update(1)
        return out

    def _iter_born_charges(self, frames):
        for atoms, expansion in self._space.iter_expansions(frames, gradients=True):
            yield self._baseline(atoms)[:, None, None] * np.eye(3) + self._space.born_charges(atoms, self.weights,
                                                                                              expansion)

    def predict_pdot(self, frames: Atoms | Iterable[Atoms], velocities: np.ndarray, method: str = "central_difference",
                     step: float = PDOT_STEP, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """dP/dt (F, 3) in |e| Angstrom / fs along ``velocities`` (F, N, 3) Angstrom / fs.

        method: "central_difference" (default, fast): ``(P(x + h v) - P(x - h v)) / 2h`` for the learned
        part with h such that no atom moves more than ``step`` Angstrom (truncation error ~ step^2; two
        expansions per frame); "analytic": the exact ``sum_j Z_j v_j``, Z from the descriptor gradients
        (slower). The baseline part ``sum q v`` is exact in both.
        """
        self._require_fitted()
        frames = _as_frames(frames)
        velocities = np.asarray(velocities, dtype=float)
        if len(velocities) != len(frames) or any(v.shape != (len(a), 3) for v, a in zip(velocities, frames)):
            raise InputError(f"velocities must be (frames, atoms, 3) matching the {len(frames)} frames")
        out = np.zeros((len(frames), 3))
        with _progress(len(frames), progress, "dP/dt") as bar:
            for k, pdot in enumerate(self.iter_pdot(zip(frames, velocities), method, step, batch_size)):
                out[k] = pdot
                bar.update(1)
        return out

    def iter_pdot(self, frames_and_velocities: Iterable[tuple[Atoms, np.ndarray]], method: str = "central_difference",
                  step: float = PDOT_STEP, batch_size: int = 32) -> Iterator[np.ndarray]:
        """dP/dt (3,) in |e| Angstrom / fs of each ``(atoms, velocities (N, 3) Angstrom / fs)`` of an iterable,
        yielded in order, a batch of frames at a time (see :meth:`predict_pdot`)."""
        self._require_fitted()
        if method not in ("central_difference", "analytic"):
            raise InputError(f"method must be 'central_difference' or 'analytic', not {method!r}")
        pairs = iter(frames_and_velocities)
        while batch := list(itertools.islice(pairs, batch_size)):
            frames = list(_checked_frames(atoms for atoms, _ in batch))
            velocities = [np.asarray(v, dtype=float) for _, v in batch]
            for atoms, v in zip(frames, velocities):
                if v.shape != (len(atoms), 3):
                    raise InputError(f"velocities must be (atoms, 3) = ({len(atoms)}, 3) per frame, not {v.shape}")
                if not np.all(np.isfinite(v)):
                    raise InputError("velocities must be finite numbers (found NaN or infinite values)")
            out = np.array([self._baseline(atoms) @ v for atoms, v in zip(frames, velocities)])
            if method == "analytic":
                for k, ((atoms, expansion), v) in enumerate(zip(self._space.iter_expansions(frames, True),
                                                                velocities)):
                    out[k] += self._space.polarization_derivative(atoms, self.weights, v, expansion)
            else:
                speed = np.array([np.abs(v).max() for v in velocities])
                h = np.where(speed > 0, step / np.where(speed > 0, speed, 1.0), 0.0)
                moved = []
                for atoms, v, hk in zip(frames, velocities, h):
                    for sign in (1.0, -1.0):
                        shifted = atoms.copy()
                        shifted.positions = atoms.positions + sign * hk * v
                        moved.append(shifted)
                expansions = self._space.expand_many(moved)
                for k, hk in enumerate(h):
                    if hk > 0:
                        plus = self._space.polarization(moved[2 * k], self.weights, expansions[2 * k])
                        minus = self._space.polarization(moved[2 * k + 1], self.weights, expansions[2 * k + 1])
                        out[k] += (plus - minus) / (2 * hk)
            yield from out

    def predict_partition(self, frames: Atoms | Iterable[Atoms],
                          progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Charge partitioning: charges (F, N) in |e| (baseline + learned transfer; zero sum per frame) and
        atomic dipoles (F, N, 3) in |e| Angstrom (the dipole part). For molecules and clusters
        ``P = sum q x + sum mu``; in periodic cells the learned charges' part of P is the bond-vector form
        (:mod:`.monopole`), so this holds only up to the choice of periodic images."""
        self._require_fitted()
        frames = _as_frames(frames)
        if len({len(atoms) for atoms in frames}) > 1:
            raise InputError("predict_partition needs frames with equal numbers of atoms")
        n_atoms = len(frames[0]) if frames else 0
        charges, dipoles = np.zeros((len(frames), n_atoms)), np.zeros((len(frames), n_atoms, 3))
        with _progress(len(frames), progress, "partition") as bar:
            for k, (atoms, c) in enumerate(self._space.iter_expansions(frames)):
                charges[k] = self._baseline(atoms) + self._space.charges(atoms, self.weights, c)
                dipoles[k] = self._space.atomic_dipoles(atoms, self.weights, c)
                bar.update(1)
        return charges, dipoles

    def uncertainty(self, frames: Atoms | Iterable[Atoms], progress: bool = False) -> np.ndarray:
        """Predictive standard deviation of Z (F,) in |e|: RMS over the 9N entries of the posterior
        standard deviation of the learned part (weight uncertainty of the Bayesian linear model)."""
        self._require_fitted()
        frames = _as_frames(frames)
        out = np.zeros(len(frames))
        with _progress(len(frames), progress, "uncertainty") as bar:
            for k, (atoms, expansion) in enumerate(self._space.iter_expansions(frames, gradients=True)):
                design = self._space.born_charge_design(atoms, expansion).reshape(-1, self._space.n_columns)
                out[k] = np.sqrt(np.mean(np.sum((design @ self.posterior_factor) ** 2, axis=1)))
                bar.update(1)
        return out

    def _baseline(self, atoms):
        self._space.species_index(atoms)
        return baseline_charges.baseline_charges_per_atom(self.charges, atoms.numbers)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write one portable file (numpy .npz, no pickles) at exactly ``path``, atomically (files.savez)."""
        from aiida_irspec import __version__

        self._require_fitted()
        import featomic

        header = {
            "format": "aiida-irspec polarization model", "format_version": FORMAT_VERSION,
            "package_version": __version__, "featomic_version": featomic.__version__,
            "descriptor": self.descriptor.to_dict(), "species": self._space.species, "kind": self._space.kind,
            "baseline": self.baseline if isinstance(self.baseline, str) else "given",
            "charges": {str(z): q for z, q in self.charges.items()},
            "basis": self.basis, "n_sparse": self.n_sparse, "regularization": self.regularization,
            "n_folds": self.n_folds, "metrics": self.metrics,
        }
        arrays = {"header": np.array(json.dumps(header, default=_json_default)), "weights": self.weights,
                  "posterior_factor": self.posterior_factor}
        for z, reference in (self.references or {}).items():
            arrays[f"references_{z}"] = reference
        savez(path, **arrays)  # atomic: a kill or a full disk leaves the previous file

    @classmethod
    def load(cls, path) -> PolarizationModel:
        """Read a file written by :meth:`save`; ModelError for anything else or another format version."""
        try:
            with open_npz(path) as data:
                header = json.loads(str(data["header"]))
                arrays = {name: data[name] for name in data.files if name != "header"}
        except DAMAGED_NPZ_ERRORS as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise ModelError(f"{path}: not an aiida-irspec polarization model file ({error})") from None
        if not isinstance(header, dict) or header.get("format") != "aiida-irspec polarization model":
            raise ModelError(f"{path}: not an aiida-irspec polarization model file")
        if header.get("format_version") not in (1, FORMAT_VERSION):  # format 1: dipole kind, weights (S, F)
            raise ModelError(f"{path}: model file format version {header.get('format_version')} (written by "
                             f"aiida-irspec {header.get('package_version')}); this version reads format "
                             f"{FORMAT_VERSION}: refit the model")
        model = cls(DescriptorSettings.from_dict(header["descriptor"]),
                    baseline={int(z): q for z, q in header["charges"].items()} if header["baseline"] == "given"
                    else header["baseline"], basis=header["basis"], n_sparse=header["n_sparse"],
                    regularization=header["regularization"], n_folds=header["n_folds"],
                    kind=header.get("kind", "dipole"))
        model._space = ModelSpace(model.kind, model.descriptor, header["species"])
        model.charges = {int(z): float(q) for z, q in header["charges"].items()}
        model.weights = arrays["weights"].ravel()
        model.posterior_factor = arrays["posterior_factor"]
        references = {int(name.split("_")[1]): value for name, value in arrays.items()
                      if name.startswith("references_")}
        model.references = references or None
        model.metrics = header["metrics"]
        return model


def _one_blas_thread():
    """BLAS on one thread while the fit runs threads of its own (featomic expansion, design, normal-equation
    updates, solves of several kinds): they keep the cores busy, and more BLAS threads only compete with them.
    A single solve uses the BLAS threads as configured (e.g. OMP_NUM_THREADS)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _add_blocks(normal, blocks, fold):
    """Fold one frame's (design, target, group, weight) blocks into ``normal``."""
    for design, target, group, weight in blocks:
        normal.add(design, target, fold=fold, group=group, weight=weight)


def _cv_rmse(normal, alpha, zero, target, basis, groups=None):
    """K-fold RMSE (weighted rows) at a given alpha."""
    ata, _, _, rows = normal.total(target=target, basis=basis)
    scale, active, prior = column_scales(ata, rows, zero, groups)
    sse, held = cross_validation_errors(normal, alpha, active, scale, target, basis, prior)
    return float(np.sqrt(max(sse.sum(), 0.0) / held.sum()))


DUPLICATE_REASON = ("a structure given twice is counted twice in the fit, and a validation structure that is "
                    "also a training one makes the validation error look smaller than it is; give each structure "
                    "once")


def _structure_key(atoms, decimals=5):
    """Atomic numbers, periodicity, cell and positions rounded to ``10**-decimals`` Angstrom, as bytes."""
    return (atoms.numbers.tobytes(), atoms.pbc.tobytes(), (np.round(atoms.cell.array, decimals) + 0.0).tobytes(),
            (np.round(atoms.positions, decimals) + 0.0).tobytes())


def find_duplicate(frames):
    """(i, j) with i < j for the first frame j that repeats an earlier frame i (same atoms, periodicity, cell
    and positions to 1e-5 Angstrom); None when all differ."""
    seen = {}
    for j, atoms in enumerate(frames):
        i = seen.setdefault(_structure_key(atoms), j)
        if i != j:
            return i, j
    return None


def structure_groups(frames):
    """(F,) list: each frame's index among the distinct structures, in order of first appearance (frames
    equal as in :func:`find_duplicate` share one). Cross-validation folds are assigned by it, round-robin,
    so that a structure given twice never sits in two folds (it made the CV error look smaller)."""
    seen = {}
    return [seen.setdefault(_structure_key(atoms), len(seen)) for atoms in frames]


def fit_memory(n_columns, n_folds, n_groups, n_targets, largest_frame):
    """Bytes a fit allocates, estimated: the normal equations (``n_folds + n_groups - 1`` column-square matrices,
    their total, the solver's eigenvectors and copies: about 6 more) plus three design blocks of the largest
    frame (9 rows per atom) in flight."""
    squares = (n_folds + n_groups + 6) * n_columns**2
    return 8 * (squares + n_folds * n_groups * n_columns * n_targets + 3 * 9 * largest_frame * n_columns)


def _check_data(frames, born_charges, polarizations):
    frames = _as_frames(frames)
    born_charges = list(born_charges) if born_charges is not None else [None] * len(frames)
    polarizations = list(polarizations) if polarizations is not None else [None] * len(frames)
    if not (len(frames) == len(born_charges) == len(polarizations)):
        raise InputError(f"{len(frames)} frames, {len(born_charges)} Born-charge sets and {len(polarizations)} "
                         "polarizations: give one (or None) per frame")
    for k, (atoms, z, p) in enumerate(zip(frames, born_charges, polarizations)):
        if z is not None:
            z = born_charges[k] = np.asarray(z, dtype=float)
            if z.shape != (len(atoms), 3, 3) or not np.all(np.isfinite(z)):
                raise InputError(f"structure {k}: Born charges must be finite ({len(atoms)}, 3, 3), got {z.shape}")
        if p is not None:
            p = polarizations[k] = np.asarray(p, dtype=float)
            if p.shape != (3,) or not np.all(np.isfinite(p)):
                raise InputError(f"structure {k}: polarization must be finite (3,), got {p.shape}")
    if all(z is None for z in born_charges) and all(p is None for p in polarizations):
        raise InputError("no training data: every structure lacks both Born charges and polarization")
    return frames, born_charges, polarizations


def _as_frames(frames):
    """A list of ``ase.Atoms`` from one structure or an iterable of them (checked by :func:`_checked_frames`)."""
    import ase

    if isinstance(frames, ase.Atoms):
        frames = [frames]
    return list(_checked_frames(frames))


def _checked_frames(frames):
    """Yield the frames of an iterable in order, InputError at the first that is not an ``ase.Atoms`` with finite
    positions and cell."""
    import ase

    for k, atoms in enumerate(frames):
        if not isinstance(atoms, ase.Atoms):
            raise InputError("frames must be ase.Atoms objects")
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.cell.array))):
            raise InputError(f"frame {k}: positions and cell must be finite numbers (found NaN or infinite values)")
        yield atoms


def _symbol_keys(charges):
    from ase.data import chemical_symbols

    return {chemical_symbols[z]: q for z, q in sorted(charges.items())}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in the model header")


class _progress:
    """A tqdm bar on stderr when asked for, else a no-op with the same interface."""

    def __init__(self, total, enabled, description):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="frame")

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

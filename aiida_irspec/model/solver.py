"""Regularised least squares from streamed normal equations.

Rows of the design (one frame at a time) are folded into ``A^T A``, ``A^T y`` and ``y^T y``, kept per
cross-validation fold, so memory is O(columns^2) whatever the number and size of the frames. Columns
are standardised by their root-mean-square before solving; null columns (exactly zero in every row, or
declared structurally zero) are dropped. The ridge parameter ``alpha`` (in standardised units: the
solution minimises ``|y - A w|^2 + alpha |D w|^2`` with D the column scales, or with ``groups`` the RMS of
each column's block, :func:`column_scales`) is chosen from the data:

* ``"evidence"``: maximise the Bayesian evidence of the linear model (MacKay's fixed-point iteration on
  the eigenvalues of ``A^T A``), which also gives the posterior covariance of the weights;
* ``"cv"``: minimise the K-fold cross-validation error (folds of whole frames), computed from the
  per-fold normal equations without touching the data again;
* a number: that alpha.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg
import scipy.optimize

from aiida_irspec.exceptions import InputError, ModelError


class NormalEquations:
    """Streamed sums ``A^T A``, ``A^T y``, ``y^T y`` and row counts, per fold and per group of rows.

    ``A^T A`` is kept once per cross-validation fold (weighted sum over the row groups) and once per row group
    (unweighted, over all folds, for the error metrics), but for the group ``derived_group``, whose ``A^T A`` is
    the total less the others (give it the group with the most rows); the small ``A^T y``, ``y^T y`` and row
    counts per (fold, group). Each block of rows is added by BLAS syrk straight into the upper triangles (it
    releases the GIL, so one thread can add frames while another builds the next design; one add at a time);
    the lower triangles are filled when the sums are first read. A group is a kind of row with one weight
    (e.g. the Z rows of one species, or the P rows). ``n_targets`` right-hand sides share the design (e.g. one
    per candidate baseline). Memory: ``n_folds + n_groups - 1`` matrices of ``n_columns^2``.
    """

    def __init__(self, n_columns, n_folds=1, n_groups=1, n_targets=1, derived_group=0):
        self._fold_ata = np.zeros((n_folds, n_columns, n_columns))
        self._derived = derived_group
        self._group_ata = np.zeros((n_groups - 1, n_columns, n_columns))  # every group but the derived one
        self._aty = np.zeros((n_folds, n_groups, n_columns, n_targets))
        self._yty = np.zeros((n_folds, n_groups, n_targets))
        self._rows = np.zeros((n_folds, n_groups))
        self._weights = np.full(n_groups, np.nan)
        self._all_ata = None

    @property
    def n_folds(self):
        return self._fold_ata.shape[0]

    def add(self, design, target, fold=0, group=0, weight=1.0):
        """Fold rows ``design`` (R, C) with targets (R,) or (R, n_targets) into ``fold`` and ``group``.

        ``weight`` multiplies the rows' squared residuals; it must be the same for every add to a group.
        """
        from scipy.linalg.blas import dsyrk

        design = np.ascontiguousarray(design, dtype=float)
        target = np.asarray(target, dtype=float).reshape(len(design), -1)
        n_columns = self._fold_ata.shape[1]
        if design.ndim != 2 or design.shape[1] != n_columns or target.shape[1] != self._aty.shape[3]:
            raise InputError(f"design (R, {n_columns}) and target (R, {self._aty.shape[3]}) needed, "
                             f"got {design.shape} and {target.shape}")
        if np.isnan(self._weights[group]):
            self._weights[group] = weight
        elif self._weights[group] != weight:
            raise InputError(f"rows of group {group} were added with weight {self._weights[group]}, not {weight}")
        def fold_into(alpha, ata):  # syrk on the transposed (Fortran-ordered) view: its lower triangle is our upper
            dsyrk(alpha, design.T, beta=1.0, c=ata.T, trans=0, lower=1, overwrite_c=1)

        fold_into(weight, self._fold_ata[fold])
        if group != self._derived:
            fold_into(1.0, self._group_ata[group - (group > self._derived)])
        self._aty[fold, group] += design.T @ target
        self._yty[fold, group] += np.sum(target**2, axis=0)
        self._rows[fold, group] += len(target)
        self._all_ata = None

    @property
    def rows(self):
        """Rows per fold (K,)."""
        return self._rows.sum(axis=1)

    @property
    def group_rows(self):
        """Rows per group (G,)."""
        return self._rows.sum(axis=0)

    def _group_weights(self):
        return np.nan_to_num(self._weights, nan=0.0)

    def _folds(self):
        """Weighted ``A^T A`` per fold (K, C, C); their sum is computed once after the last add."""
        if self._all_ata is None:
            for ata in (*self._fold_ata, *self._group_ata):  # the adds filled the upper triangles only
                _fill_lower_triangle(ata)
            self._all_ata = self._fold_ata.sum(axis=0)
            self._all_ata.flags.writeable = False  # handed out by total(): callers must not modify it
        return self._fold_ata

    def total(self, exclude=None, target=0, basis=None):
        """(ata, aty, yty, rows) summed over the folds except ``exclude``, optionally in a ``basis`` (C, C')."""
        folds, weights = self._folds(), self._group_weights()
        keep = np.ones(self.n_folds, dtype=bool)
        if exclude is not None:
            keep[exclude] = False
        ata = self._all_ata if exclude is None else self._all_ata - folds[~keep].sum(axis=0)
        aty = np.einsum("g,fgc->c", weights, self._aty[keep, :, :, target])
        yty = float(np.einsum("g,fg->", weights, self._yty[keep, :, target]))
        return self._project(ata, aty, basis) + (yty, self._rows[keep].sum())

    def fold(self, k, target=0, basis=None):
        """(ata, aty, yty, rows) of fold ``k`` alone."""
        weights = self._group_weights()
        return self._project(self._folds()[k], weights @ self._aty[k, :, :, target], basis) + (
            float(weights @ self._yty[k, :, target]), self._rows[k].sum())

    @staticmethod
    def _project(ata, aty, basis):
        if basis is None:
            return ata, aty
        return basis.T @ ata @ basis, basis.T @ aty

    def group_rmse(self, weights, target=0):
        """Root-mean-square (unweighted) residual of every group (G,) for weights (C,) (NaN when empty)."""
        self._folds()
        quadratic = np.zeros(len(self._weights))  # w^T A^T A w per group; the derived one's from the total
        others = np.delete(np.arange(len(quadratic)), self._derived)
        quadratic[others] = np.matmul(self._group_ata, weights) @ weights
        scale = self._group_weights()
        quadratic[self._derived] = (weights @ self._all_ata @ weights - scale[others] @ quadratic[others]) / (
            scale[self._derived] or 1.0)
        sse = (self._yty[:, :, target].sum(axis=0) - 2 * np.einsum("fgc,c->g", self._aty[:, :, :, target], weights)
               + quadratic)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.maximum(sse, 0.0) / self.group_rows)


@dataclasses.dataclass
class RidgeSolution:
    """Weights (C,) in the original columns, the chosen alpha (standardised units) and the posterior.

    The posterior covariance of the weights is ``posterior_factor @ posterior_factor.T`` (C, C), so the
    predictive variance of a design row ``a`` is ``|a @ posterior_factor|^2``; ``noise_variance`` is the
    fitted residual variance of a unit-weight row; ``cv_rmse`` the K-fold error when alpha came from CV.
    """

    weights: np.ndarray
    alpha: float
    noise_variance: float
    posterior_factor: np.ndarray
    method: str
    cv_rmse: float | None = None


def solve(normal: NormalEquations, alpha: str | float = "evidence", zero_columns: np.ndarray | None = None,
          target: int = 0, basis: np.ndarray | None = None, relative_null: float = 1e-12,
          groups: np.ndarray | None = None) -> RidgeSolution:
    """Solve the regularised normal equations; see the module docstring for ``alpha``.

    ``basis`` (C, C'): fit ``W = basis @ w`` (e.g. sparse reference features), with ``zero_columns``
    referring to the columns of the basis. ``groups``: see :func:`column_scales`. Returns a
    :class:`RidgeSolution` in the original columns.
    """
    return solve_targets(normal, alpha, zero_columns, [target], basis, relative_null, groups)[0]


def column_scales(ata: np.ndarray, rows: float, zero_columns: np.ndarray | None = None,
                  groups: np.ndarray | None = None,
                  relative_null: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column scales, active columns and prior weights of the ridge ``alpha sum_j prior_j (scale_j w_j)^2``.

    Returns ``scale`` (C,), the RMS of every column over the rows; ``active`` (C,), the columns that are neither
    null nor declared zero; and ``prior`` (number of active columns,), 1 without ``groups``. With ``groups``
    (C,) integer labels (e.g. a block of features of one body order and angular channel) every active column
    gets ``prior = (RMS of its group / RMS of the column)^2``: the penalty is ``alpha |w_j|^2`` times the
    group's mean square, the same for every column of a group, so the prior keeps the relative sizes of the
    columns within a block (as a kernel on those features would) instead of making each column equally
    important. Solves stay in column-standardised units, where the normal equations are well conditioned.
    """
    scale = np.sqrt(np.maximum(np.diag(ata), 0.0) / rows)
    active = scale > relative_null * max(scale.max(), 1e-300)
    if zero_columns is not None:
        active &= ~np.asarray(zero_columns, dtype=bool)
    if not active.any():
        raise ModelError("every feature column is zero: the training structures give no signal")
    if groups is None:
        return scale, active, np.ones(int(active.sum()))
    labels, inverse = np.unique(np.asarray(groups)[active], return_inverse=True)
    mean_square = np.bincount(inverse, weights=scale[active] ** 2) / np.bincount(inverse)
    return scale, active, mean_square[inverse] / scale[active] ** 2


def _fill_lower_triangle(matrix, block=512):
    """Copy the upper triangle of a square matrix into its lower one, in place (block by block: no copy of it)."""
    n = len(matrix)
    for start in range(0, n, block):
        stop = min(start + block, n)
        matrix[start:stop, :start] = matrix[:start, start:stop].T
        square = matrix[start:stop, start:stop]
        square[:] = np.triu(square) + np.triu(square, 1).T


def solve_targets(normal: NormalEquations, alpha: str | float, zero_columns: np.ndarray | None, targets: list[int],
                  basis: np.ndarray | None = None, relative_null: float = 1e-12,
                  groups: np.ndarray | None = None) -> list[RidgeSolution]:
    """:func:`solve` for several right-hand sides of the same design (one eigendecomposition).

    alpha is chosen (evidence) on the spectrum of ``R^-1/2 M R^-1/2`` (M the column-standardised ``A^T A``, R the
    prior weights of :func:`column_scales`); the weights and the posterior factor come from the Cholesky factor
    of ``M + alpha R``, which stays well conditioned however small alpha is.
    """
    ata, _, _, rows = normal.total(target=targets[0], basis=basis)
    if rows == 0:
        raise ModelError("no training data: the normal equations are empty")
    scale, active, prior = column_scales(ata, rows, zero_columns, groups, relative_null)
    s, root = scale[active], np.sqrt(prior)
    m = ata[np.ix_(active, active)] / np.outer(s, s)
    spectrum = SymmetricSpectrum(m / np.outer(root, root))
    eigenvalues = np.maximum(spectrum.eigenvalues, 0.0)
    solutions = []
    for target in targets:
        _, aty, yty, _ = normal.total(target=target, basis=basis)
        rhs = aty[active] / s
        z = spectrum.to_eigenbasis(rhs / root)
        cv_rmse = None
        if alpha == "evidence":
            chosen, method = _evidence_alpha(eigenvalues, z, yty, rows), "evidence"
        elif alpha == "cv":
            if normal.n_folds < 2:
                raise InputError("cross-validation needs normal equations with at least 2 folds")
            (chosen, cv_rmse), method = _cross_validation_alpha(normal, active, scale, target, basis, prior), "cv"
        else:
            chosen, method = float(alpha), "fixed"
            if not chosen > 0:
                raise InputError(f"the regularisation must be positive, not {alpha}")
        coefficient = z / (eigenvalues + chosen)
        residual = yty - 2 * coefficient @ z + coefficient @ (eigenvalues * coefficient)
        gamma = np.sum(eigenvalues / (eigenvalues + chosen))
        noise = max(residual, 0.0) / max(rows - gamma, 1.0)
        inverse_root = _inverse_root(m, chosen, prior)  # G G^T = (M + alpha R)^-1
        weights = np.zeros(len(scale))
        weights[active] = inverse_root @ (inverse_root.T @ rhs) / s
        # posterior covariance of the original-column weights: noise (M + alpha R)^-1, scaled back
        factor = np.zeros((len(scale), len(s)))
        factor[active] = np.sqrt(noise) * inverse_root / s[:, None]
        if basis is not None:
            weights, factor = basis @ weights, basis @ factor
        solutions.append(RidgeSolution(weights, float(chosen), float(noise), factor, method, cv_rmse))
    return solutions


class SymmetricSpectrum:
    """``M = V diag(eigenvalues) V^T`` of a symmetric (n, n) matrix, with ``V`` applied to vectors but never
    formed: LAPACK's tridiagonal reduction ``M = Q T Q^T`` (sytrd, Householder reflectors) and the
    eigenvectors ``U`` of T (stemr), ``V = Q U``. Several times faster than a full eigendecomposition."""

    def __init__(self, m):
        n = len(m)
        lwork = scipy.linalg.lapack.dsytrd_lwork(n, lower=1)[0]
        reduced, diagonal, off_diagonal, tau, info = scipy.linalg.lapack.dsytrd(m, lower=1, lwork=max(int(lwork), 1))
        if info != 0:
            raise ModelError(f"the tridiagonal reduction of the normal equations failed (LAPACK info {info})")
        self.eigenvalues, self._u = scipy.linalg.eigh_tridiagonal(diagonal, off_diagonal)
        # Q = diag(1, Q'), Q' the product of the reflectors stored below the first sub-diagonal, as from a QR
        self._reflectors, self._tau = reduced[1:, :n - 1], tau[:n - 1]

    def _apply_q(self, x, trans):
        x = np.array(x, dtype=float)
        if len(x) > 1:
            x[1:] = scipy.linalg.lapack.dormqr("L", trans, self._reflectors, self._tau, x[1:],
                                               lwork=max(64 * len(x), 1))[0]
        return x

    def to_eigenbasis(self, x):
        """``V^T x`` for x (n,) or (n, k)."""
        return self._u.T @ self._apply_q(x, "T")

    def from_eigenbasis(self, y):
        """``V y`` for y (n,) or (n, k)."""
        return self._apply_q(self._u @ y, "N")


def _inverse_root(m, alpha, prior):
    """G (n, n) with ``G G^T = (m + alpha diag(prior))^-1``: ``L^-T`` of the Cholesky factor, or, when rounding
    makes the matrix numerically indefinite (tiny alpha), from its eigenvalues clipped at ``alpha min(prior)``."""
    matrix = m + np.diag(alpha * prior)
    try:
        lower = scipy.linalg.cholesky(matrix, lower=True)
    except np.linalg.LinAlgError:
        eigenvalues, vectors = scipy.linalg.eigh(matrix)
        return vectors / np.sqrt(np.maximum(eigenvalues, alpha * prior.min()))
    return scipy.linalg.lapack.dtrtri(lower, lower=1)[0].T


def _evidence_alpha(eigenvalues, z, yty, rows, iterations=200):
    """MacKay's fixed point for the ridge ratio alpha / beta (prior precision over noise precision).

    The ratio is kept within [1e-10, 1e4] times the mean eigenvalue, so that noise-free data (which
    drive the evidence optimum towards interpolation) still give a well-conditioned solve.
    """
    mean = max(float(eigenvalues.mean()), 1e-300)
    lo, hi = 1e-10 * mean, 1e4 * mean
    ratio = 1e-3 * mean
    for _ in range(iterations):
        coefficient = z / (eigenvalues + ratio)
        gamma = np.sum(eigenvalues / (eigenvalues + ratio))
        residual = max(yty - 2 * coefficient @ z + coefficient @ (eigenvalues * coefficient), 0.0)
        noise = residual / max(rows - gamma, 1.0)
        prior = (coefficient @ coefficient) / max(gamma, 1e-12)
        new = float(np.clip(noise / max(prior, 1e-300), lo, hi))
        if abs(np.log(new / ratio)) < 1e-6:
            return new
        ratio = new
    return ratio


def cross_validation_errors(normal: NormalEquations, alpha: float, active: np.ndarray, scale: np.ndarray,
                            target: int = 0, basis: np.ndarray | None = None,
                            prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold held-out (weighted sum of squared residuals, rows) at one alpha: arrays (K,), (K,).

    scale (C,): the column scales; prior (active columns,): the prior weights (:func:`column_scales`; ones)."""
    s = scale[active]
    penalty = alpha * (np.ones(len(s)) if prior is None else prior)
    index = np.ix_(active, active)
    sse, rows = np.zeros(normal.n_folds), np.zeros(normal.n_folds)
    for k in range(normal.n_folds):
        ata, aty, _, _ = normal.total(exclude=k, target=target, basis=basis)
        m = ata[index]  # a copy: scaled in place
        m /= s[:, None]
        m /= s
        m[np.diag_indices_from(m)] += penalty
        try:
            w = scipy.linalg.cho_solve(scipy.linalg.cho_factor(m), aty[active] / s)
        except np.linalg.LinAlgError:  # numerically indefinite at a tiny alpha: least squares instead
            w = np.linalg.lstsq(m, aty[active] / s, rcond=None)[0]
        held_ata, held_aty, held_yty, rows[k] = normal.fold(k, target=target, basis=basis)
        weights = np.zeros(len(scale))  # in the original columns
        weights[active] = w / s
        sse[k] = held_yty - 2 * weights @ held_aty + weights @ held_ata @ weights
    return sse, rows


def _cross_validation_alpha(normal, active, scale, target, basis, prior=None):
    """alpha minimising the K-fold error (log-spaced scan, then bounded refinement): (alpha, rmse)."""
    def error(log_alpha):
        sse, rows = cross_validation_errors(normal, 10.0**log_alpha, active, scale, target, basis, prior)
        return float(np.sqrt(sse.sum() / rows.sum()))

    grid = np.arange(-6.0, 4.01, 2.0)
    values = [error(x) for x in grid]
    best = int(np.argmin(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    result = scipy.optimize.minimize_scalar(error, bounds=(lo, hi), method="bounded", options={"xatol": 0.1})
    return float(10.0**result.x), float(result.fun)

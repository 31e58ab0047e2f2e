"""Averaging spectra of independent runs: mean, standard error, the +-2 standard-error band of the paper,
an optional bootstrap band, and band summaries (integrated intensity, peak, centroid) with uncertainties."""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aiida_irspec.exceptions import InputError
from aiida_irspec.files import atomic_write
from aiida_irspec.spectra.green_kubo import INTEGRATED_UNITS, METHOD, Spectrum, band_integral

PER_RUN_SETTINGS = ("n_samples", "pdot2_mean", "source", "notes")
BOOTSTRAP_CHUNK = 2048  # wavenumbers per block of the bootstrap: memory ~ 8 * bootstrap * chunk bytes
BOOTSTRAP_BATCH = 64  # resamples drawn at a time within a block: memory ~ 8 * batch * runs * chunk bytes


@dataclass
class AveragedSpectrum:
    """Mean spectrum of ``n_runs`` independent runs on a common wavenumber axis.

    frequency_cm1: (M,) cm^-1.  mean, stderr: (M,) in ``unit``; stderr = sample standard deviation of the
    runs / sqrt(n_runs) (NaN for one run).  lower, upper: mean -+ 2 stderr (the paper's band).
    bootstrap_lower, bootstrap_upper: (M,) 2.5 and 97.5 percentiles of the mean over bootstrap resamples of
    the runs, or None.  runs: (n_runs, M) the individual spectra.  settings: common settings, and per-run
    values as lists under "runs".
    """

    frequency_cm1: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_runs: int
    unit: str
    settings: dict = field(default_factory=dict)
    runs: np.ndarray | None = None
    bootstrap_lower: np.ndarray | None = None
    bootstrap_upper: np.ndarray | None = None

    @property
    def integrated_unit(self) -> str:
        """Unit of an integral over frequency_cm1: cm^-2 (absorption) or km/mol (molar)."""
        return INTEGRATED_UNITS[self.unit]

    def columns(self) -> dict[str, np.ndarray]:
        """The CSV columns in order, name -> (M,) array."""
        table = {"frequency_cm1": self.frequency_cm1, "absorption": self.mean, "stderr": self.stderr,
                 "lower": self.lower, "upper": self.upper}
        if self.bootstrap_lower is not None:
            table.update(bootstrap_lower=self.bootstrap_lower, bootstrap_upper=self.bootstrap_upper)
        return table

    def to_csv(self, path: "str | os.PathLike", bands: dict | None = None,
               frequency_range: tuple[float, float] | None = None, header: Sequence[str] = ()) -> None:
        """Write the spectrum as CSV: comment lines (# ...) with units and settings, a header line, the rows.

        Columns: frequency_cm1 (cm^-1), absorption (the mean, in ``unit``), stderr, lower, upper
        (mean -+ 2 stderr) and, with a bootstrap, bootstrap_lower, bootstrap_upper. ``bands`` (name -> (lo, hi))
        adds their summary as comment lines. frequency_range: (lo, hi) cm^-1, only the rows inside (band
        summaries still use the whole spectrum); default every row, up to the Nyquist frequency. header: comment
        lines written first (e.g. which campaign made the spectrum), without the leading "# ".
        """
        table = self.columns()
        keep = slice(None)
        if frequency_range is not None:
            lo, hi = (float(x) for x in frequency_range)
            if not lo < hi:
                raise InputError(f"frequency range {lo:g}-{hi:g} cm^-1: expected LO < HI")
            keep = (self.frequency_cm1 >= lo) & (self.frequency_cm1 <= hi)
        quantity = ("alpha(omega) n(omega), absorption coefficient times refractive index" if self.unit == "cm^-1"
                    else "N_A sigma(omega), molar absorption coefficient per molecule")
        shown = (f"{self.frequency_cm1[keep][0]:g} to {self.frequency_cm1[keep][-1]:g} cm^-1 of 0 to "
                 f"{self.frequency_cm1[-1]:g}" if np.any(keep) else "no rows")
        lines = [f"# {line}" for line in header] + [
            "# aiida-irspec IR spectrum",
            f"# method: {METHOD}",
            f"# units: frequency_cm1 in cm^-1; absorption, stderr, lower, upper"
            f"{', bootstrap_lower, bootstrap_upper' if self.bootstrap_lower is not None else ''} in {self.unit} "
            f"({quantity}; its integral over frequency_cm1 in {self.integrated_unit})",
            f"# band: lower/upper = absorption -+ 2 stderr, stderr = standard error of the mean of {self.n_runs} runs",
            f"# rows: {shown}",
        ]
        lines += [f"# {key}: {json.dumps(value)}" for key, value in self.settings.items() if key != "method"]
        for row in self.band_summary(bands or {}):
            lines.append("# band " + json.dumps(row))
        data = np.column_stack([column[keep] for column in table.values()])
        with atomic_write(path, "w") as handle:  # a kill or a full disk leaves the previous file
            handle.write("\n".join(lines) + "\n" + ",".join(table) + "\n")
            np.savetxt(handle, data, delimiter=",", fmt="%.9g")

    def band_summary(self, bands: dict) -> list[dict]:
        """Per named band (name -> (lo, hi) cm^-1): integrated intensity, peak and centroid over the runs.

        Each quantity is computed per run and reported as the mean over runs with its standard error
        (NaN for one run): ``integral`` (in ``integrated_unit``), ``peak_cm1`` (maximum, refined by a parabola
        through the three highest grid points), ``centroid_cm1`` (first moment of the band).
        Returns a list of dicts with keys name, lo_cm1, hi_cm1, integral, integral_stderr, peak_cm1,
        peak_stderr, centroid_cm1, centroid_stderr, integrated_unit, n_runs.
        """
        runs = self.runs if self.runs is not None else self.mean[None, :]
        rows = []
        for name, (lo, hi) in bands.items():
            keep = (self.frequency_cm1 >= lo) & (self.frequency_cm1 <= hi)
            if keep.sum() < 3:
                raise InputError(f"band {name!r} ({lo}-{hi} cm^-1) holds fewer than three grid points")
            nu, values = self.frequency_cm1[keep], runs[:, keep]
            integral = band_integral(nu, values)
            centroid = band_integral(nu, values * nu) / integral
            peak = np.array([_parabolic_peak(nu, row) for row in values])
            row = {"name": name, "lo_cm1": float(lo), "hi_cm1": float(hi)}
            for key, per_run in (("integral", integral), ("peak_cm1", peak), ("centroid_cm1", centroid)):
                row[key] = float(np.mean(per_run))
                row[key.replace("_cm1", "") + "_stderr"] = _stderr(per_run)
            row.update(integrated_unit=self.integrated_unit, n_runs=len(runs))
            rows.append(row)
        return rows


def _stderr(values, axis=0):
    # numpy, not scipy.stats.sem (the same formula): importing scipy.stats takes longer than a spectrum (3 s at load 9)
    values = np.asarray(values)
    n = values.shape[axis]
    if n < 2:
        return np.full(np.delete(values.shape, axis), np.nan) if values.ndim > 1 else float("nan")
    result = np.std(values, axis=axis, ddof=1) / np.sqrt(n)
    return result if values.ndim > 1 else float(result)


def _parabolic_peak(nu, values):
    k = int(np.argmax(values))
    if k == 0 or k == len(values) - 1:
        return float(nu[k])
    a, b, c = values[k - 1], values[k], values[k + 1]
    curvature = a - 2 * b + c
    shift = 0.0 if curvature == 0 else 0.5 * (a - c) / curvature
    return float(nu[k] + shift * (nu[1] - nu[0]))


def _merge_settings(spectra):
    merged, per_run = {}, {}
    for key in spectra[0].settings:
        values = [s.settings.get(key) for s in spectra]
        if key in PER_RUN_SETTINGS or any(v != values[0] for v in values):
            per_run[key] = values
        else:
            merged[key] = values[0]
    merged["runs"] = per_run
    return merged


def bootstrap_band(runs: np.ndarray, resamples: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile bootstrap band of the mean of ``runs`` (n_runs, M): (lower, upper), each (M,).

    scipy.stats.bootstrap (method "percentile") on blocks of BOOTSTRAP_CHUNK wavenumbers, BOOTSTRAP_BATCH
    resamples at a time, so that memory stays near 8 * resamples * BOOTSTRAP_CHUNK bytes; one random generator
    (``seed``) for all blocks. A single run is its own band.
    """
    if len(runs) < 2:
        return runs[0].copy(), runs[0].copy()
    from scipy.stats import bootstrap  # imported only for a bootstrap: scipy.stats is slow to import

    rng = np.random.default_rng(seed)
    low, high = np.empty(runs.shape[1]), np.empty(runs.shape[1])
    for start in range(0, runs.shape[1], BOOTSTRAP_CHUNK):
        part = slice(start, start + BOOTSTRAP_CHUNK)
        result = bootstrap((runs[:, part],), np.mean, n_resamples=resamples, batch=BOOTSTRAP_BATCH, axis=0,
                           vectorized=True, confidence_level=0.95, method="percentile", rng=rng)
        low[part], high[part] = result.confidence_interval
    return low, high


def average_spectra(spectra: Sequence[Spectrum], bootstrap: int = 0, seed: int | None = None) -> AveragedSpectrum:
    """Average independent runs' :class:`Spectrum` objects (same grid and unit) into an :class:`AveragedSpectrum`.

    bootstrap: number of resamples of the runs (with replacement) for the percentile band; 0 for none.
    seed: seed of the bootstrap's random generator.
    """
    spectra = list(spectra)
    if not spectra:
        raise InputError("no spectra to average")
    first = spectra[0]
    for k, other in enumerate(spectra[1:], start=1):
        if other.unit != first.unit:
            raise InputError(f"run {k} is in {other.unit}, run 0 in {first.unit}")
        if other.frequency_cm1.shape != first.frequency_cm1.shape or not np.allclose(
                other.frequency_cm1, first.frequency_cm1, rtol=1e-12, atol=1e-9):
            raise InputError(f"run {k} has another frequency grid than run 0 (time step, stride, window width or "
                             f"maximum correlation time differ)")
    if int(bootstrap) != bootstrap or bootstrap < 0:
        raise InputError(f"bootstrap must be a non-negative integer, got {bootstrap}")
    runs = np.array([s.absorption for s in spectra])
    mean = runs.mean(axis=0)
    stderr = _stderr(runs)
    low = high = None
    if bootstrap:
        low, high = bootstrap_band(runs, int(bootstrap), seed)
    settings = _merge_settings(spectra)
    settings.update(n_runs=len(runs), bootstrap=int(bootstrap), bootstrap_seed=seed)
    return AveragedSpectrum(first.frequency_cm1, mean, stderr, mean - 2 * stderr, mean + 2 * stderr, len(runs),
                            first.unit, settings, runs, low, high)

"""Green-Kubo IR absorption from a polarization current (docs/theory.md; eq. 5 of Schmiedmayer & Kresse,
J. Chem. Phys. 161, 084703 (2024)).

    alpha(omega) n(omega) = beta / (6 V c eps0) * Int_{-inf}^{inf} C(t) exp(-i omega t) dt,
    C(t) = <Pdot(0) . Pdot(t)>

Inputs are in the package's units: dP/dt in |e| Angstrom / fs (P in |e| Angstrom), times in fs, the
temperature in K, the cell volume in Angstrom^3. Outputs are on a wavenumber axis in cm^-1 and are
either the absorption coefficient alpha n in cm^-1 (a cell with a volume) or the molar absorption
coefficient N_A sigma in (km/mol)/cm^-1 per molecule (molecules and clusters), whose integral over a
band in cm^-1 is the integrated intensity in km/mol. The prefactors live in :mod:`aiida_irspec.units`.

Discretisation. With samples Pdot_k every ``interval`` fs (time step times stride) the correlation is
the unbiased estimate ``C_n = sum_t Pdot_t . Pdot_{t+n} / (N - n)`` for lags ``n = 0 .. L``, so that
``C_0`` is the run's own mean of |Pdot|^2. It is multiplied by a window ``W_n`` (``W_0 = 1``), zero
padded to ``n_fft >= 2 L + 1`` points and cosine transformed,

    S(omega_k) = interval * [C_0 + 2 sum_{n=1}^{L} W_n C_n cos(omega_k n interval)],
    omega_k = 2 pi k / (n_fft interval),  k = 0 .. n_fft / 2 (zero frequency to Nyquist).

On this grid the trapezoid rule over [0, Nyquist] integrates every cosine term to exactly zero, so
``Int_0^{omega_Nyquist} S d omega = pi C_0`` to round-off: the f-sum rule
``Int_0^inf alpha n d omega = beta pi / (6 V c eps0) <|Pdot|^2>`` holds for any window (``W_0 = 1``),
any maximum correlation time and any padding, without quantum correction and without a frequency cut.
"""

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from aiida_irspec import units
from aiida_irspec.exceptions import InputError
from aiida_irspec.spectra.quantum import QUANTUM_CORRECTIONS, quantum_correction_factor
from aiida_irspec.spectra.settings import DEFAULT_WIDTH_CM1, WINDOWS, SpectrumSettings

_DEFAULTS = SpectrumSettings()

GAUSSIAN_CUTOFF_SIGMAS = 5.0  # the Gaussian window is cut where it is exp(-12.5) = 3.7e-6
MIN_SAMPLES = 16
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

ABSORPTION_UNIT = "cm^-1"
MOLAR_UNIT = "km/mol/cm^-1"
INTEGRATED_UNITS = {ABSORPTION_UNIT: "cm^-2", MOLAR_UNIT: "km/mol"}

#: What the spectra record as their method: the formula, its source and the page of the docs that derives it.
METHOD = ("Green-Kubo, eq. 5 of Schmiedmayer & Kresse, J. Chem. Phys. 161, 084703 (2024); "
          "docs/theory.md (The spectrum: Green-Kubo)")


@dataclass
class Spectrum:
    """One run's IR spectrum on a wavenumber axis.

    frequency_cm1: (M,) wavenumbers in cm^-1, from 0 up (uniform grid)
    absorption:    (M,) alpha(omega) n(omega) in cm^-1 (``unit == "cm^-1"``), or the molar absorption
                   coefficient per molecule in (km/mol)/cm^-1 (``unit == "km/mol/cm^-1"``)
    unit:          the unit of ``absorption``
    settings:      everything that made it (time step, window, temperature, quantum correction, ...)
    """

    frequency_cm1: np.ndarray
    absorption: np.ndarray
    unit: str
    settings: dict = field(default_factory=dict)

    @property
    def integrated_unit(self) -> str:
        """Unit of the integral of ``absorption`` over ``frequency_cm1``: cm^-2, or km/mol."""
        return INTEGRATED_UNITS[self.unit]

    def integral(self, lo_cm1: float | None = None, hi_cm1: float | None = None) -> float:
        """Trapezoid integral of the absorption over [lo, hi] cm^-1 (whole axis by default), in ``integrated_unit``."""
        return band_integral(self.frequency_cm1, self.absorption, lo_cm1, hi_cm1)


def band_integral(frequency_cm1: np.ndarray, values: ArrayLike, lo_cm1: float | None = None,
                  hi_cm1: float | None = None) -> np.ndarray | float:
    """Trapezoid integral of ``values[..., M]`` over the grid points with lo <= frequency <= hi."""
    lo = -np.inf if lo_cm1 is None else lo_cm1
    hi = np.inf if hi_cm1 is None else hi_cm1
    keep = (frequency_cm1 >= lo) & (frequency_cm1 <= hi)
    return np.trapezoid(np.asarray(values)[..., keep], frequency_cm1[keep], axis=-1)


def _width_constant(window):
    """k such that (window parameter in fs) * (line FWHM in cm^-1) = k."""
    c = units.SPEED_OF_LIGHT_CM_PER_FS
    if window == "gaussian":
        return FWHM_PER_SIGMA / (2 * math.pi * c)
    if window == "hann":
        return 1.0 / c
    raise InputError(f"window {window!r} has no width")


def window_width_fs(window: str, width_cm1: float) -> float:
    """Window parameter in fs for a line width (FWHM of the line shape it gives a sharp line) in cm^-1.

    gaussian: W(t) = exp(-t^2 / (2 tau^2)) broadens a line to a Gaussian of standard deviation 1/tau in
              omega, FWHM = 2 sqrt(2 ln 2) / (2 pi c tau) cm^-1, so tau = 2 sqrt(2 ln 2) / (2 pi c FWHM).
    hann:     W(t) = cos^2(pi t / (2 T)) for |t| < T: its transform falls to half its peak at
              f = 1 / (2 T) exactly, FWHM = 1 / (c T) cm^-1, so T = 1 / (c FWHM).
    (c in cm/fs.) For 10 cm^-1: tau = 1250 fs, T = 3336 fs.
    """
    if not width_cm1 > 0:
        raise InputError(f"the window width must be positive, got {width_cm1} cm^-1")
    return _width_constant(window) / width_cm1


def window_fwhm_cm1(window: str, width_fs: float) -> float:
    """Line width (FWHM, cm^-1) that a window parameter in fs gives; inverse of :func:`window_width_fs`."""
    if not width_fs > 0:
        raise InputError(f"the window width must be positive, got {width_fs} fs")
    return _width_constant(window) / width_fs


def window_function(window: str, times_fs: ArrayLike, width_fs: float | None) -> np.ndarray:
    """Window values at lag times (fs) ``times_fs >= 0``; 1 at t = 0. ``width_fs`` as in :func:`window_width_fs`."""
    t = np.asarray(times_fs, dtype=float)
    if window == "none":
        return np.ones_like(t)
    if window == "gaussian":
        return np.exp(-0.5 * (t / width_fs) ** 2)
    if window == "hann":
        return np.where(t < width_fs, np.cos(0.5 * np.pi * t / width_fs) ** 2, 0.0)
    raise InputError(f"unknown window {window!r}; choose one of {', '.join(WINDOWS)}")


def resolve_window_width_fs(window: str, width_cm1: float | None = None, width_fs: float | None = None) -> float | None:
    """The window parameter in fs from a width in cm^-1 or in fs (default DEFAULT_WIDTH_CM1); None for "none"."""
    if window not in WINDOWS:
        raise InputError(f"unknown window {window!r}; choose one of {', '.join(WINDOWS)}")
    if width_cm1 is not None and width_fs is not None:
        raise InputError("give the window width either in cm^-1 or in fs, not both")
    if window == "none":
        return None
    if width_fs is None:
        return window_width_fs(window, DEFAULT_WIDTH_CM1 if width_cm1 is None else width_cm1)
    return _check_positive(width_fs, "the window width (fs)")


def default_max_correlation_fs(n_samples: int, interval_fs: float, window: str, width_fs: float | None) -> float:
    """Maximum correlation time (fs) used when none is given.

    gaussian: 5 window widths (where the window is 3.7e-6); hann: the window's half-length;
    none: half the run (beyond it the unbiased estimate averages fewer than half the samples).
    Never longer than the run, (n_samples - 1) * interval.
    """
    run = (n_samples - 1) * interval_fs
    if window == "gaussian":
        return min(run, GAUSSIAN_CUTOFF_SIGMAS * width_fs)
    if window == "hann":
        return min(run, width_fs)
    return 0.5 * run


def autocorrelation(series: np.ndarray, max_lag: int) -> np.ndarray:
    """Unbiased autocorrelation summed over components.

    series: (N, 3) (any units u); returns (max_lag + 1,) in u^2 with
    ``C[n] = sum_{t < N - n} series[t] . series[t + n] / (N - n)``, so ``C[0]`` is the mean of |series|^2.
    Linear (not circular) correlation by FFT with padding to at least N + max_lag.
    """
    from scipy.fft import next_fast_len  # here, not at the top: importing the spectra stays quick

    n = series.shape[0]
    n_fft = next_fast_len(n + max_lag + 1, real=True)
    spectrum = np.fft.rfft(series, n=n_fft, axis=0)
    power = np.sum(spectrum.real**2 + spectrum.imag**2, axis=1)
    corr = np.fft.irfft(power, n=n_fft)[: max_lag + 1]
    return corr / (n - np.arange(max_lag + 1))


def cosine_transform(correlation: np.ndarray, interval_fs: float, n_fft: int) -> np.ndarray:
    """S(omega_k) = interval * [c_0 + 2 sum_{n>=1} c_n cos(omega_k n interval)] on the rfft grid of ``n_fft``.

    correlation: (L + 1,) with n_fft >= 2 L + 1; returns (n_fft // 2 + 1,) in units of c times fs.
    """
    transform = np.fft.rfft(correlation, n=n_fft).real
    return interval_fs * (2.0 * transform - correlation[0])


def _check_series(array, name):
    array = np.asarray(array, dtype=float)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{name} must have shape (steps, 3), got {array.shape}")
    if array.shape[0] < MIN_SAMPLES:
        raise InputError(f"{name} has {array.shape[0]} samples; at least {MIN_SAMPLES} are needed")
    if not np.all(np.isfinite(array)):
        bad = int(np.argmax(~np.all(np.isfinite(array), axis=1)))
        raise InputError(f"{name} holds NaN or infinite values (first at sample {bad})")
    return array


def _check_positive(value, name):
    if value is None or not np.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a positive number, got {value}")
    return float(value)


def green_kubo_spectrum(pdot: ArrayLike, dt: float, temperature: float, volume: float | None = None,
                        molecules: float | None = None, window: str = _DEFAULTS.window,
                        width_cm1: float | None = _DEFAULTS.width_cm1, width_fs: float | None = _DEFAULTS.width_fs,
                        max_correlation_fs: float | None = _DEFAULTS.max_correlation_fs,
                        quantum_correction: str = _DEFAULTS.quantum_correction, stride: int = 1,
                        zero_padding: int = 2, max_frequency_cm1: float | None = _DEFAULTS.max_frequency_cm1,
                        source: str = "pdot") -> Spectrum:
    """IR absorption of one run from its polarization current (:data:`METHOD`, docs/theory.md).

    pdot: (steps, 3) dP/dt in |e| Angstrom / fs, one sample every ``dt * stride`` fs.
    dt: MD time step in fs; stride: MD steps between samples. temperature: K (the beta of eq. 5).
    volume: cell volume in Angstrom^3 -> alpha n in cm^-1; or molecules: number of molecules in the run ->
        molar absorption coefficient per molecule in (km/mol)/cm^-1. Exactly one of the two.
    window: "gaussian" (default, as in the paper), "hann" or "none", applied to the correlation function.
        Its width either as the line width width_cm1 (FWHM of the broadened line, cm^-1; default
        DEFAULT_WIDTH_CM1) or as width_fs (Gaussian standard deviation tau, or Hann half-length T, in fs).
    max_correlation_fs: longest lag used (default :func:`default_max_correlation_fs`).
    quantum_correction: "none" (eq. 5 as written), "harmonic", "standard" or "schofield"
        (:mod:`aiida_irspec.spectra.quantum`).
    zero_padding: the cosine transform has at least zero_padding * 2 * (lags + 1) points: finer grid, same integral.
    max_frequency_cm1: drop grid points above it (the f-sum integral then only covers the kept range).
    source: recorded in the settings ("pdot" or "polarization").
    Returns a :class:`Spectrum`; its settings include ``pdot2_mean``, the run's mean |Pdot|^2 in (|e| A/fs)^2.
    """
    pdot = _check_series(pdot, "pdot")
    dt = _check_positive(dt, "the time step dt (fs)")
    temperature = _check_positive(temperature, "the temperature (K)")
    if int(stride) != stride or stride < 1:
        raise InputError(f"the stride must be a positive integer, got {stride}")
    if (volume is None) == (molecules is None):
        raise InputError("give exactly one of volume (A^3, periodic cells) and molecules (molecules and clusters)")
    if quantum_correction not in QUANTUM_CORRECTIONS:
        raise InputError(f"unknown quantum correction {quantum_correction!r}; choose one of "
                         f"{', '.join(QUANTUM_CORRECTIONS)}")
    if zero_padding < 1:
        raise InputError(f"zero_padding must be >= 1, got {zero_padding}")
    interval = dt * int(stride)
    n = pdot.shape[0]

    width_fs = resolve_window_width_fs(window, width_cm1, width_fs)
    if max_correlation_fs is None:
        max_correlation_fs = default_max_correlation_fs(n, interval, window, width_fs)
    max_correlation_fs = _check_positive(max_correlation_fs, "the maximum correlation time (fs)")
    max_lag = int(min(n - 1, math.floor(max_correlation_fs / interval + 1e-9)))
    if max_lag < 1:
        raise InputError(f"the maximum correlation time {max_correlation_fs} fs is shorter than one sample "
                         f"interval ({interval} fs)")
    notes = []
    if window != "none" and window_function(window, (max_lag + 1) * interval, width_fs) > 1e-3:
        notes.append(f"the {window} window (width {width_fs:.0f} fs) is cut at {max_lag * interval:.0f} fs (run length "
                     f"or maximum correlation time): lines are wider than the requested width")
        warnings.warn(notes[-1], stacklevel=2)

    correlation = autocorrelation(pdot, max_lag)
    lags = np.arange(max_lag + 1) * interval
    weighted = correlation * window_function(window, lags, width_fs)
    from scipy.fft import next_fast_len

    n_fft = next_fast_len(int(zero_padding) * 2 * (max_lag + 1), real=True)
    n_fft += n_fft % 2  # even, so that the Nyquist frequency is on the grid
    transform = cosine_transform(weighted, interval, n_fft)  # (|e| A/fs)^2 fs
    omega = 2 * np.pi * np.arange(transform.size) / (n_fft * interval)  # rad/fs
    frequency = omega * units.RAD_PER_FS_TO_CM1

    if volume is not None:
        volume = _check_positive(volume, "the volume (A^3)")
        unit = ABSORPTION_UNIT
        absorption = units.GREEN_KUBO_ABSORPTION_CM1 / (volume * temperature) * transform
    else:
        molecules = _check_positive(molecules, "the number of molecules")
        unit = MOLAR_UNIT
        absorption = units.GREEN_KUBO_MOLAR_KM_MOL_PER_CM1 / (molecules * temperature) * transform
    absorption = absorption * quantum_correction_factor(quantum_correction, omega, temperature)
    if max_frequency_cm1 is not None:
        keep = frequency <= _check_positive(max_frequency_cm1, "the maximum frequency (cm^-1)")
        frequency, absorption = frequency[keep], absorption[keep]

    settings = {
        "method": METHOD,
        "source": source,
        "unit": unit,
        "integrated_unit": INTEGRATED_UNITS[unit],
        "timestep_fs": dt,
        "stride": int(stride),
        "sampling_interval_fs": interval,
        "n_samples": n,
        "temperature_K": temperature,
        "volume_A3": volume,
        "molecules": molecules,
        "window": window,
        "window_width_fs": width_fs,
        "window_fwhm_cm1": None if width_fs is None else window_fwhm_cm1(window, width_fs),
        "max_correlation_fs": max_lag * interval,
        "n_fft": n_fft,
        "frequency_step_cm1": float(frequency[1] - frequency[0]),
        "max_frequency_cm1": float(frequency[-1]),
        "quantum_correction": quantum_correction,
        "pdot2_mean": float(correlation[0]),
        "notes": notes,
    }
    return Spectrum(frequency, absorption, unit, settings)


def pdot_from_polarization(polarization: ArrayLike, interval_fs: float) -> np.ndarray:
    """dP/dt from a P series by the forward difference (P[k+1] - P[k]) / interval.

    polarization: (steps, 3) in |e| Angstrom; returns (steps - 1, 3) in |e| Angstrom / fs, the exact mean
    rate over each interval (the midpoint derivative). It inverts a cumulative sum exactly
    (P = cumsum(Pdot) * interval gives back Pdot[1:]). For a continuous trajectory its spectrum is the
    true one times sinc^2(omega interval / 2) = 1 - (omega interval)^2 / 12 + ...: -0.2% at 3400 cm^-1 for
    0.25 fs samples, -3.4% at 3400 cm^-1 for 1 fs samples (sample P finely for high frequencies).
    """
    polarization = _check_series(polarization, "polarization")
    return np.diff(polarization, axis=0) / interval_fs


def spectrum_from_polarization(polarization: ArrayLike, dt: float, temperature: float, stride: int = 1,
                               **kwargs) -> Spectrum:
    """Like :func:`green_kubo_spectrum` from a P series (steps, 3) in |e| Angstrom, sampled every dt * stride fs.

    dP/dt is taken by :func:`pdot_from_polarization` (forward difference, inverse of a cumulative sum).
    """
    dt = _check_positive(dt, "the time step dt (fs)")
    pdot = pdot_from_polarization(polarization, dt * int(stride))
    return green_kubo_spectrum(pdot, dt, temperature, stride=stride, source="polarization", **kwargs)

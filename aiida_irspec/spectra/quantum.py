"""Quantum correction factors for classical Green-Kubo spectra (docs/theory.md, docs/spectra.md).

The classical spectrum of eq. 5 is multiplied by Q(omega), with x = beta hbar omega = hbar omega / (k_B T):

    none       Q = 1                         (eq. 5 as written, the default)
    harmonic   Q = x / (1 - exp(-x))
    standard   Q = 2 / (1 + exp(-x))
    schofield  Q = exp(x / 2)

All tend to 1 as omega -> 0 (the classical limit), so the low-frequency spectrum is unchanged; only
"none" keeps the f-sum rule.
"""

import numpy as np
from numpy.typing import ArrayLike

from aiida_irspec import units

QUANTUM_CORRECTIONS = ("none", "harmonic", "standard", "schofield")


def reduced_frequency(omega_rad_per_fs: ArrayLike, temperature: float) -> np.ndarray:
    """x = hbar omega / (k_B T), dimensionless; omega in rad/fs, temperature in K."""
    return units.HBAR_EV_FS * np.asarray(omega_rad_per_fs, dtype=float) / units.kelvin_to_ev(temperature)


def quantum_correction_factor(kind: str, omega_rad_per_fs: ArrayLike, temperature: float) -> np.ndarray:
    """Q(omega) of the named correction (see the module docstring) at angular frequencies in rad/fs; (M,)."""
    x = reduced_frequency(omega_rad_per_fs, temperature)
    if kind == "none":
        return np.ones_like(x)
    if kind == "harmonic":
        small = np.abs(x) < 1e-8
        safe = np.where(small, 1.0, x)
        return np.where(small, 1.0 + 0.5 * x, safe / -np.expm1(-safe))
    if kind == "standard":
        return 2.0 / (1.0 + np.exp(-x))
    if kind == "schofield":
        return np.exp(0.5 * x)
    raise ValueError(f"unknown quantum correction {kind!r}; choose one of {', '.join(QUANTUM_CORRECTIONS)}")

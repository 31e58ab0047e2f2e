"""IR spectra from polarization currents: Green-Kubo, windows, quantum corrections, averaging (no AiiDA import).

Plots are in :mod:`aiida_irspec.spectra.plotting` (imports matplotlib), file reading in
:mod:`aiida_irspec.spectra.io`.
"""

from aiida_irspec.spectra.averaging import AveragedSpectrum, average_spectra
from aiida_irspec.spectra.green_kubo import (
    Spectrum,
    green_kubo_spectrum,
    pdot_from_polarization,
    spectrum_from_polarization,
    window_fwhm_cm1,
    window_width_fs,
)
from aiida_irspec.spectra.quantum import QUANTUM_CORRECTIONS, quantum_correction_factor

__all__ = [
    "AveragedSpectrum",
    "QUANTUM_CORRECTIONS",
    "Spectrum",
    "average_spectra",
    "green_kubo_spectrum",
    "pdot_from_polarization",
    "quantum_correction_factor",
    "spectrum_from_polarization",
    "window_fwhm_cm1",
    "window_width_fs",
]

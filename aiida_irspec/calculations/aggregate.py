"""calcfunction ``aggregate_spectra``: per-run dP/dt (or P) series -> one IRSpectrumData with its confidence band."""

from aiida import orm

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.ir_spectrum import IRSpectrumData

SPECTRUM_KEYS = ("temperature", "volume", "molecules", "window", "width_cm1", "width_fs", "max_correlation_fs",
                 "quantum_correction", "max_frequency_cm1")


def run_spectrum(run, settings):
    """Green-Kubo spectrum of one run: an ArrayData with ``times`` (F,) fs and ``pdot`` (F, 3) |e| A/fs, or
    ``polarization`` (F, 3) |e| A (then dP/dt by finite difference). ``settings`` as in :func:`aggregate_spectra`."""
    import numpy as np

    from aiida_irspec.exceptions import InputError
    from aiida_irspec.spectra.green_kubo import green_kubo_spectrum, spectrum_from_polarization

    names = run.get_arraynames()
    times = run.get_array("times")
    intervals = np.diff(times)
    if len(times) < 2 or not np.allclose(intervals, intervals[0], rtol=1e-6):
        raise InputError(f"run {run.pk}: the times must be uniformly spaced (at least two frames)")
    kwargs = {key: settings[key] for key in SPECTRUM_KEYS if settings.get(key) is not None}
    if "pdot" in names:
        return green_kubo_spectrum(run.get_array("pdot"), float(intervals[0]), **kwargs)
    if "polarization" in names:
        return spectrum_from_polarization(run.get_array("polarization"), float(intervals[0]), **kwargs)
    raise InputError(f"run {run.pk} has neither a 'pdot' nor a 'polarization' array (has {', '.join(names)})")


@versioned_calcfunction
def aggregate_spectra(settings: orm.Dict, **runs: orm.ArrayData) -> IRSpectrumData:
    """Spectrum of each run, then their mean, standard error and +-2 stderr band as an IRSpectrumData.

    settings: ``temperature`` (K) and exactly one of ``volume`` (Angstrom^3: absorption in cm^-1) or
    ``molecules`` (molar absorption per molecule); optional ``window``, ``width_cm1`` or ``width_fs``,
    ``max_correlation_fs``, ``quantum_correction``, ``max_frequency_cm1``
    (:func:`aiida_irspec.spectra.green_kubo.green_kubo_spectrum`), ``bootstrap`` (resamples, default 0) and
    ``seed``. runs: one ArrayData per independent run (see :func:`run_spectrum`), any link labels.
    """
    from aiida_irspec.exceptions import InputError
    from aiida_irspec.spectra.averaging import average_spectra

    settings = settings.get_dict()
    if not runs:
        raise InputError("aggregate_spectra needs at least one run")
    labels = sorted(runs)
    averaged = average_spectra([run_spectrum(runs[label], settings) for label in labels],
                               bootstrap=settings.get("bootstrap", 0), seed=settings.get("seed"))
    averaged.settings["run_labels"] = labels
    return IRSpectrumData(averaged)

"""Agreement of two averaged spectra over named bands (no AiiDA): the learned model against its reference.

Used to validate a campaign on tblite: the spectrum from the model's P and the spectrum from tblite's own
dipoles along the same NVE runs (``reference_spectrum``). Both are :class:`AveragedSpectrum` on one grid.
"""

import numpy as np

from aiida_irspec.exceptions import InputError


def compare_bands(model, reference, bands):
    """Per band (name -> (lo, hi) cm^-1): how well ``model`` matches ``reference``.

    Returns a list of dicts with ``name``, ``lo_cm1``, ``hi_cm1``; ``inside_band``: the fraction of grid points
    in the band where the reference mean lies within the model's mean -+ 2 stderr; ``integral_model``,
    ``integral_model_stderr``, ``integral_reference``, ``integral_reference_stderr`` (band summaries of
    both) and ``integral_agrees``: the integrals differ by less than 2 x their combined standard error.
    """
    if not np.allclose(model.frequency_cm1, reference.frequency_cm1):
        raise InputError("the two spectra are on different frequency grids")
    rows = []
    for m, r in zip(model.band_summary(bands), reference.band_summary(bands)):
        keep = (model.frequency_cm1 >= m["lo_cm1"]) & (model.frequency_cm1 <= m["hi_cm1"])
        inside = (reference.mean[keep] >= model.lower[keep]) & (reference.mean[keep] <= model.upper[keep])
        combined = float(np.hypot(m["integral_stderr"], r["integral_stderr"]))
        rows.append({"name": m["name"], "lo_cm1": m["lo_cm1"], "hi_cm1": m["hi_cm1"],
                     "inside_band": float(inside.mean()),
                     "integral_model": m["integral"], "integral_model_stderr": m["integral_stderr"],
                     "integral_reference": r["integral"], "integral_reference_stderr": r["integral_stderr"],
                     "integral_agrees": bool(abs(m["integral"] - r["integral"]) <= 2 * combined),
                     "peak_model_cm1": m["peak_cm1"], "peak_reference_cm1": r["peak_cm1"]})
    return rows

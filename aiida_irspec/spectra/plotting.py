"""Plots of averaged spectra with matplotlib (no pyplot state: Figure objects only, safe without a display)."""

import numpy as np

from aiida_irspec.exceptions import InputError
from aiida_irspec.files import savefig
from aiida_irspec.spectra.io import read_experiment_csv

AXIS_LABELS = {"cm^-1": r"$\alpha(\omega)\,n(\omega)$ (cm$^{-1}$)",
               "km/mol/cm^-1": r"$N_A\sigma(\omega)$ (km mol$^{-1}$ / cm$^{-1}$)"}


def default_xlim(spectra, fraction=0.01):
    """(0, x): x is 10% beyond the highest wavenumber where any mean exceeds ``fraction`` of its maximum."""
    top = 0.0
    for spectrum in spectra:
        above = np.nonzero(np.abs(spectrum.mean) > fraction * np.max(np.abs(spectrum.mean)))[0]
        top = max(top, spectrum.frequency_cm1[above[-1]] if above.size else spectrum.frequency_cm1[-1])
    return 0.0, float(np.ceil(1.1 * top / 100.0) * 100.0)


def plot_spectrum(averaged, ax=None, label=None, color=None, band="stderr", xlim=None):
    """Draw one :class:`AveragedSpectrum` (mean line and its band) on ``ax`` (a new figure if None); returns ax.

    band: "stderr" (mean -+ 2 standard errors, the paper's band), "bootstrap" (the bootstrap percentile band),
    or None. xlim: (lo, hi) cm^-1 to draw only that range (and set the axis); default everything.
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(6.4, 3.6), layout="constrained").add_subplot()
    nu = averaged.frequency_cm1
    keep = slice(None)
    if xlim is not None:
        inside = np.nonzero((nu >= xlim[0]) & (nu <= xlim[1]))[0]
        keep = slice(max(inside[0] - 1, 0), inside[-1] + 2) if inside.size else slice(0, 0)
        ax.set_xlim(*xlim)
    line, = ax.plot(nu[keep], averaged.mean[keep], lw=1.0, color=color,
                    label=label if label is not None else f"{averaged.n_runs} runs")
    if band == "stderr" and averaged.n_runs > 1:
        ax.fill_between(nu[keep], averaged.lower[keep], averaged.upper[keep], color=line.get_color(), alpha=0.3,
                        lw=0)
    elif band == "bootstrap":
        if averaged.bootstrap_lower is None:
            raise InputError("no bootstrap band: average the runs with bootstrap > 0")
        ax.fill_between(nu[keep], averaged.bootstrap_lower[keep], averaged.bootstrap_upper[keep],
                        color=line.get_color(), alpha=0.3, lw=0)
    elif band not in ("stderr", None):
        raise InputError(f"unknown band {band!r}; choose stderr, bootstrap or None")
    ax.set_xlabel(r"wavenumber (cm$^{-1}$)")
    ax.set_ylabel(AXIS_LABELS.get(averaged.unit, averaged.unit))
    return ax


def plot_spectra(spectra, labels=None, experiment_csv=None, path=None, xlim=None, band="stderr", title=None,
                 experiment_label="experiment", dpi=110):
    """Overlay several averaged spectra (e.g. temperatures, or model vs reference); returns the Figure.

    experiment_csv: optional experimental curve (two columns, cm^-1 and intensity in any unit); it is scaled
    so that its maximum inside ``xlim`` equals that of the first spectrum, and drawn dashed in black.
    path: save the figure there (PNG, SVG, PDF by extension). xlim: (lo, hi) cm^-1, default :func:`default_xlim`.
    """
    from matplotlib.figure import Figure

    spectra = list(spectra)
    if not spectra:
        raise InputError("nothing to plot")
    labels = list(labels) if labels is not None else [None] * len(spectra)
    if len(labels) != len(spectra):
        raise InputError(f"{len(labels)} labels for {len(spectra)} spectra")
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    xlim = default_xlim(spectra) if xlim is None else tuple(xlim)
    for spectrum, label in zip(spectra, labels):
        plot_spectrum(spectrum, ax=ax, label=label, band=band, xlim=xlim)
    if experiment_csv is not None:
        nu, intensity = read_experiment_csv(experiment_csv)
        inside = (nu >= xlim[0]) & (nu <= xlim[1])
        first = spectra[0]
        ref = (first.frequency_cm1 >= xlim[0]) & (first.frequency_cm1 <= xlim[1])
        if inside.any() and ref.any() and np.max(intensity[inside]) > 0:
            intensity = intensity * np.max(first.mean[ref]) / np.max(intensity[inside])
        ax.plot(nu, intensity, "k--", lw=1.0, label=f"{experiment_label} (scaled)")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    if path is not None:
        savefig(fig, path, dpi=dpi)  # atomic; the format from the extension
    return fig

"""Plots of averaged spectra with matplotlib (no pyplot state: Figure objects only, safe without a display).

One figure style for every command that draws a spectrum (``aiida-irspec spectrum --plot``, ``campaign report``,
``demo``, ``verdi data irspec spectrum export``): :func:`plot_spectra`. The first spectrum is drawn as a coloured
line with its band (mean -+ 2 standard errors, clipped at zero: an absorption is not negative), further ones in
other colours; a ``reference`` (the engine's own dipoles along the same runs, or any curve to compare with) as a
black dashed line on top of them, so that both stay visible where they agree. With ``bands`` the figure gains one
panel per band of interest, each on its own intensity scale and titled with the band's integrated intensity, so
that a weak band is as readable as the strongest region.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from aiida_irspec.exceptions import InputError
from aiida_irspec.files import savefig
from aiida_irspec.spectra.averaging import AveragedSpectrum
from aiida_irspec.spectra.io import read_experiment_csv

AXIS_LABELS = {"cm^-1": r"$\alpha(\omega)\,n(\omega)$ (cm$^{-1}$)",
               "km/mol/cm^-1": r"$N_A\sigma(\omega)$ (km mol$^{-1}$ / cm$^{-1}$)"}
#: Colours of the spectra in order (matplotlib's default cycle without the black of the reference).
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
#: The reference: a thin dashed black line over the (wider) coloured lines, so that both show where they agree.
REFERENCE_STYLE = {"color": "black", "ls": (0, (3, 2)), "lw": 0.9, "zorder": 4}
SPECTRUM_LINE_WIDTH = 1.8
#: Band panels per row of the figure.
BANDS_PER_ROW = 3


def default_xlim(spectra: Sequence[AveragedSpectrum], fraction: float = 0.01) -> tuple[float, float]:
    """(0, x) cm^-1: x is 10% beyond the highest wavenumber where a mean exceeds ``fraction`` of its maximum and
    three times its median (the level of the ripples a short run leaves over the whole axis), rounded up to
    100 cm^-1."""
    top = 0.0
    for spectrum in spectra:
        magnitude = np.abs(spectrum.mean)
        above = np.nonzero(magnitude > max(fraction * np.max(magnitude), 3.0 * np.median(magnitude)))[0]
        top = max(top, spectrum.frequency_cm1[above[-1]] if above.size else spectrum.frequency_cm1[-1])
    return 0.0, float(np.ceil(1.1 * top / 100.0) * 100.0)


def plot_spectrum(averaged: AveragedSpectrum, ax=None, label: str | None = None, color: str | None = None,
                  band: str | None = "stderr", xlim: tuple[float, float] | None = None, clip: bool = True,
                  **line_style):
    """Draw one :class:`AveragedSpectrum` (mean line and its band) on ``ax`` (a new figure if None); returns ax.

    band: "stderr" (mean -+ 2 standard errors, the paper's band), "bootstrap" (the bootstrap percentile band),
    or None. xlim: (lo, hi) cm^-1 to draw only that range (and set the axis); default everything. clip: the band
    stops at zero. line_style: matplotlib line properties (ls, lw, zorder).
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
    line, = ax.plot(nu[keep], averaged.mean[keep], color=color,
                    label=label if label is not None else f"{averaged.n_runs} runs",
                    **{"lw": SPECTRUM_LINE_WIDTH, **line_style})
    if band == "stderr":
        lower, upper = averaged.lower, averaged.upper
    elif band == "bootstrap":
        if averaged.bootstrap_lower is None:
            raise InputError("no bootstrap band: average the runs with bootstrap > 0")
        lower, upper = averaged.bootstrap_lower, averaged.bootstrap_upper
    elif band is None:
        lower = upper = None
    else:
        raise InputError(f"unknown band {band!r}; choose stderr, bootstrap or None")
    if lower is not None and averaged.n_runs > 1:
        lower = np.maximum(lower, 0.0) if clip else lower
        ax.fill_between(nu[keep], lower[keep], upper[keep], color=line.get_color(), alpha=0.25, lw=0,
                        zorder=line.get_zorder() - 0.5)
    ax.set_xlabel(r"wavenumber (cm$^{-1}$)")
    ax.set_ylabel(AXIS_LABELS.get(averaged.unit, averaged.unit))
    return ax


def _top_inside(curves, lo, hi, band):
    """The highest value of ``curves`` between lo and hi cm^-1: of the means and, with ``band`` "stderr", of the
    bands' upper edges."""
    top = 0.0
    for curve, with_band in curves:
        inside = (curve.frequency_cm1 >= lo) & (curve.frequency_cm1 <= hi)
        if not inside.any():
            continue
        values = [curve.mean[inside]]
        if with_band and band == "stderr" and curve.n_runs > 1:
            values.append(curve.upper[inside])
        top = max(top, float(np.nanmax(np.concatenate(values))))
    return top


def _band_title(name, lo, hi, curves):
    """'name lo-hi cm^-1: integral +- 2 SE unit' of the first curve (and the reference's integral)."""
    spectrum, _ = curves[0]
    row = spectrum.band_summary({name: (lo, hi)})[0]
    text = f"{name} {lo:g}-{hi:g} cm$^{{-1}}$: {row['integral']:.3g}"
    if spectrum.n_runs > 1:
        text += f" ± {2 * row['integral_stderr']:.2g}"
    text += f" {row['integrated_unit']}"
    if len(curves) > 1 and not curves[-1][1]:
        text += f" (ref. {curves[-1][0].band_summary({name: (lo, hi)})[0]['integral']:.3g})"
    return text


def plot_spectra(spectra: Sequence[AveragedSpectrum], labels: Sequence[str] | None = None,
                 experiment_csv: str | os.PathLike | None = None, path: str | os.PathLike | None = None,
                 xlim: tuple[float, float] | None = None, band: str | None = "stderr", title: str | None = None,
                 experiment_label: str = "experiment", dpi: int = 110, reference: AveragedSpectrum | None = None,
                 reference_label: str = "reference", bands: Mapping[str, Sequence[float]] | None = None):
    """Overlay averaged spectra (e.g. temperatures, or a model and its reference); returns the Figure.

    spectra: drawn in :data:`COLORS` with their band (``band``: "stderr", "bootstrap" or None), clipped at zero.
    reference: drawn on top as a black dashed line without band, labelled ``reference_label``.
    experiment_csv: optional experimental curve (two columns, cm^-1 and intensity in any unit); it is scaled
    so that its maximum inside ``xlim`` equals that of the first spectrum, and drawn dotted in grey.
    bands: name -> (lo, hi) cm^-1: shaded on the whole-range panel and each drawn in a panel of its own (own
    intensity scale, the first spectrum's integral -+ 2 standard errors in its title).
    path: save the figure there (PNG, SVG, PDF by extension; atomically). xlim: (lo, hi) cm^-1 of the
    whole-range panel, default :func:`default_xlim`.
    """
    from matplotlib.figure import Figure

    spectra = list(spectra)
    if not spectra:
        raise InputError("nothing to plot")
    labels = list(labels) if labels is not None else [None] * len(spectra)
    if len(labels) != len(spectra):
        raise InputError(f"{len(labels)} labels for {len(spectra)} spectra")
    bands = dict(bands or {})
    xlim = default_xlim(spectra + ([reference] if reference is not None else [])) if xlim is None else tuple(xlim)
    rows = 1 + -(-len(bands) // BANDS_PER_ROW)
    columns = min(len(bands), BANDS_PER_ROW) or 1
    fig = Figure(figsize=(7.2, 3.4 + 2.6 * (rows - 1)), layout="constrained")
    grid = fig.add_gridspec(rows, columns, height_ratios=[1.25] + [1.0] * (rows - 1))
    whole = fig.add_subplot(grid[0, :])
    curves = [(spectrum, True) for spectrum in spectra] + ([(reference, False)] if reference is not None else [])
    panels = [(whole, xlim)] + [(fig.add_subplot(grid[1 + k // columns, k % columns]),
                                 (float(lo) - 0.1 * (hi - lo), float(hi) + 0.1 * (hi - lo)))
                                for k, (lo, hi) in enumerate(bands.values())]
    for ax, limits in panels:
        for index, (spectrum, label) in enumerate(zip(spectra, labels)):
            plot_spectrum(spectrum, ax=ax, label=label, band=band, xlim=limits, color=COLORS[index % len(COLORS)])
        if reference is not None:
            plot_spectrum(reference, ax=ax, label=reference_label, band=None, xlim=limits, **REFERENCE_STYLE)
        # the whole range is scaled to the means (a wide band at low frequency would flatten everything else; it is
        # cut at the top), a band's panel to its band too
        top = _top_inside(curves, *limits, band if ax is not whole or not bands else None)
        ax.set_ylim(0.0, (1.25 if ax is whole and bands else 1.08) * top or None)
    if experiment_csv is not None:
        nu, intensity = read_experiment_csv(experiment_csv)
        inside = (nu >= xlim[0]) & (nu <= xlim[1])
        first = spectra[0]
        ref = (first.frequency_cm1 >= xlim[0]) & (first.frequency_cm1 <= xlim[1])
        if inside.any() and ref.any() and np.max(intensity[inside]) > 0:
            intensity = intensity * np.max(first.mean[ref]) / np.max(intensity[inside])
        whole.plot(nu, intensity, color="0.35", ls=":", lw=1.2, label=f"{experiment_label} (scaled)", zorder=3)
    for (name, (lo, hi)), (ax, _) in zip(bands.items(), panels[1:]):
        whole.axvspan(lo, hi, color="0.9", zorder=0, lw=0)
        whole.annotate(name, ((lo + hi) / 2, 1.0), xycoords=("data", "axes fraction"), xytext=(0, -3),
                       textcoords="offset points", ha="center", va="top", fontsize=8, color="0.3")
        ax.set_title(_band_title(name, float(lo), float(hi), curves), fontsize=8.5)
        if ax is not panels[1][0]:
            ax.set_ylabel("")
    if bands:
        for ax, _ in panels[1:]:
            ax.tick_params(labelsize=8)
            ax.xaxis.label.set_size(8.5)
    if title:
        whole.set_title(title, fontsize=10)
    whole.legend(frameon=False, fontsize=8.5, loc="best")
    if path is not None:
        savefig(fig, path, dpi=dpi)  # atomic; the format from the extension
    return fig

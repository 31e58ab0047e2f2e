"""``aiida-irspec spectrum``: Green-Kubo IR spectrum with a confidence band from npz runs (no AiiDA profile).

Exit codes: 0 success; 2 bad input (a run that is not a finite (steps, 3) series; stored ``times`` whose
spacing is not ``--dt`` x ``--stride``; stored atoms that ``--molecules`` does not divide; a stored cell
volume that ``--volume`` contradicts; a non-physical number); 14 an output (``-o``, ``--plot``) cannot
be written (checked before any work; a previous file is kept); 15 the spectrum or its bootstrap would need
more memory than the limit; 130 / 143 stopped by SIGINT / SIGTERM.
"""

import click

from aiida_irspec.cli.utils import InputFile, format_table, user_errors

QUANTUM = ("none", "harmonic", "standard", "schofield")
#: The options of the spectrum settings (aiida_irspec.spectra.settings, where their ranges are documented).
OPTIONS = {"volume": "--volume", "molecules": "--molecules", "window": "--window", "width_cm1": "--width",
           "width_fs": "--width-fs", "max_correlation_fs": "--max-correlation", "max_frequency_cm1": "--max-frequency",
           "bootstrap": "--bootstrap", "seed": "--seed"}


def parse_band(text):
    """NAME=LO:HI (cm^-1) -> (name, (lo, hi))."""
    try:
        name, edges = text.split("=", 1)
        lo, hi = (float(x) for x in edges.split(":"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected NAME=LO:HI in cm^-1, e.g. bend=1400:1800") from None
    if not lo < hi:
        raise click.BadParameter(f"{text!r}: LO must be below HI")
    return name, (lo, hi)


@click.command("spectrum")
@click.argument("runs", nargs=-1, required=True, type=InputFile())
@click.option("--dt", type=float, required=True, help="MD time step in fs.")
@click.option("--stride", type=int, default=1, show_default=True, help="MD steps between stored samples.")
@click.option("--temperature", type=float, required=True, help="Temperature in K (the beta of eq. 5).")
@click.option("--volume", type=float, help="Cell volume in A^3: output alpha*n in cm^-1.")
@click.option("--molecules", type=int, help="Molecules in each run: output the molar absorption per molecule "
              "in (km/mol)/cm^-1 (band integrals in km/mol).")
@click.option("--window", type=click.Choice(["gaussian", "hann", "none"]), default="gaussian", show_default=True,
              help="Window on the correlation function.")
@click.option("--width", "width_cm1", type=float, help="Window as the line width (FWHM) in cm^-1 [default: 10].")
@click.option("--width-fs", type=float, help="Window width in fs (Gaussian sigma or Hann half-length) instead.")
@click.option("--max-correlation", "max_correlation_fs", type=float,
              help="Longest correlation time in fs [default: 5 sigma (gaussian), the window (hann), half the run].")
@click.option("--quantum-correction", type=click.Choice(QUANTUM), default="none", show_default=True,
              help="Quantum correction factor; none is eq. 5 as written.")
@click.option("--max-frequency", "max_frequency_cm1", type=float,
              help="Write wavenumbers up to this (cm^-1) only [default: up to Nyquist].")
@click.option("--bootstrap", type=click.IntRange(min=0), default=0, show_default=True,
              help="Bootstrap resamples for a percentile band.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the bootstrap.")
@click.option("--band", "bands", multiple=True, help="Named band NAME=LO:HI (cm^-1) to summarise; repeatable.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output CSV.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also plot the spectrum with its band (PNG, SVG, PDF).")
@click.option("--experiment", type=InputFile(),
              help="Experimental curve (CSV: cm^-1, intensity) to overlay on the plot, scaled to the maximum.")
@click.option("--xlim", type=float, nargs=2, help="Plot range LO HI in cm^-1.")
@click.option("--label", help="Legend label of the spectrum in the plot.")
@user_errors
def spectrum(runs, dt, stride, temperature, volume, molecules, window, width_cm1, width_fs, max_correlation_fs,
             quantum_correction, max_frequency_cm1, bootstrap, seed, bands, output, plot, experiment, xlim, label):
    """IR spectrum of RUNS (npz files holding `pdot` (steps, 3) in |e| A/fs or `polarization` (steps, 3) in
    |e| A; several files are independent runs) by the Green-Kubo formula, averaged with a +-2 standard-error
    band, written as CSV (and optionally plotted).

    What a run file stores besides its series is checked against the options: `times` (fs) must be spaced
    by --dt x --stride, `numbers` (the atoms) must split into --molecules equal molecules, and `volume`
    (A^3, periodic runs) must agree with --volume to 1%."""
    import math
    import warnings

    import numpy as np

    from aiida_irspec.exceptions import InputError
    from aiida_irspec.files import check_outputs, figure_format
    from aiida_irspec.resources import check_memory
    from aiida_irspec.spectra import average_spectra, green_kubo_spectrum
    from aiida_irspec.spectra.averaging import BOOTSTRAP_CHUNK
    from aiida_irspec.spectra.green_kubo import (
        default_max_correlation_fs,
        pdot_from_polarization,
        resolve_window_width_fs,
    )
    from aiida_irspec.spectra.io import read_experiment_csv, read_run
    from aiida_irspec.spectra.settings import SpectrumSettings

    if (volume is None) == (molecules is None):
        raise InputError("give exactly one of --volume (A^3, periodic cells) and --molecules (molecules, clusters)")
    settings = dict(volume=volume, molecules=molecules, window=window, width_cm1=width_cm1, width_fs=width_fs,
                    max_correlation_fs=max_correlation_fs, max_frequency_cm1=max_frequency_cm1, bootstrap=bootstrap,
                    seed=seed)
    problems = SpectrumSettings.problems({k: v for k, v in settings.items() if v is not None}, partial=True)
    if problems:  # the settings' documented ranges, named by their options
        raise InputError("; ".join(OPTIONS[text.split(":")[0]] + text[text.index(":"):] for text in problems))
    if xlim is not None and not (math.isfinite(xlim[0]) and math.isfinite(xlim[1]) and xlim[0] < xlim[1]):
        raise InputError(f"--xlim: expected two finite wavenumbers LO < HI, got {xlim[0]} {xlim[1]}")
    if stride < 1 or not (math.isfinite(dt) and dt > 0):
        raise InputError(f"--dt must be a positive number of fs (got {dt}) and --stride at least 1 (got {stride})")
    check_outputs([("--output", output), ("--plot", plot)], inputs=[*runs, experiment])
    if plot:
        figure_format(plot)
    if experiment:  # a bad curve is found before the work, not after the CSV is written
        read_experiment_csv(experiment)
    band_map = dict(parse_band(text) for text in bands)
    interval = dt * stride

    series = []
    for k, path in enumerate(runs, start=1):
        kind, array = read_run(path, interval=interval, molecules=molecules, volume=volume)
        pdot = array if kind == "pdot" else pdot_from_polarization(array, interval)
        series.append((kind, pdot))
        click.echo(f"read run {k}/{len(runs)}: {path} ({kind}, {array.shape[0]} samples)", err=True)
    width_fs_resolved = resolve_window_width_fs(window, width_cm1, width_fs)
    if max_correlation_fs is None:  # one grid for all runs: the default of the shortest
        shortest = min(pdot.shape[0] for _, pdot in series)
        max_correlation_fs = default_max_correlation_fs(shortest, interval, window, width_fs_resolved)
    # memory, in 8-byte numbers: the FFT of the longest run (3 complex columns, padded to twice its length),
    # four arrays per run on the spectrum grid, and the bootstrap's resampled means (one block at a time)
    longest = max(pdot.shape[0] for _, pdot in series)
    lags = longest
    if math.isfinite(max_correlation_fs) and max_correlation_fs > 0:
        lags = min(longest, int(max_correlation_fs / interval) + 2)
    grid = 2 * lags + 2
    numbers = 24 * longest + 4 * len(series) * grid + bootstrap * (2 * min(grid, BOOTSTRAP_CHUNK) + len(series))
    check_memory(8 * numbers, f"the spectrum of {len(series)} runs of up to {longest} samples"
                 + (f" with {bootstrap} bootstrap resamples" if bootstrap else ""),
                 "fewer bootstrap resamples or a shorter --max-correlation")

    spectra = []
    for k, (kind, pdot) in enumerate(series, start=1):
        with warnings.catch_warnings():  # the notes are printed once below
            warnings.simplefilter("ignore")
            spectra.append(green_kubo_spectrum(
                pdot, dt, temperature, volume=volume, molecules=molecules, window=window, width_fs=width_fs_resolved,
                max_correlation_fs=max_correlation_fs, quantum_correction=quantum_correction, stride=stride,
                max_frequency_cm1=max_frequency_cm1, source=kind))
        if k == 1 or k == len(series) or k % 10 == 0:
            click.echo(f"spectrum {k}/{len(series)}", err=True)
    for note in dict.fromkeys(note for s in spectra for note in s.settings["notes"]):
        click.echo(f"Warning: {note}", err=True)
    averaged = average_spectra(spectra, bootstrap=bootstrap, seed=seed)
    averaged.settings["inputs"] = [str(path) for path in runs]
    if not np.all(np.isfinite(averaged.runs)):  # the stderr of one run is NaN by design
        raise InputError("the spectrum holds NaN or infinite values (overflow: are the runs' values in |e| A/fs "
                         "and |e| A?); nothing written")
    averaged.to_csv(output, bands=band_map)
    click.echo(f"wrote {output}: {averaged.n_runs} runs, {averaged.frequency_cm1.size} wavenumbers up to "
               f"{averaged.frequency_cm1[-1]:.0f} cm^-1, absorption in {averaged.unit}")
    total = np.trapezoid(averaged.mean, averaged.frequency_cm1)
    click.echo(f"integral over wavenumber: {total:.6g} {averaged.integrated_unit}")
    if band_map:
        rows = [(r["name"], f"{r['lo_cm1']:g}-{r['hi_cm1']:g}", f"{r['integral']:.4g} +- {r['integral_stderr']:.2g}",
                 f"{r['peak_cm1']:.1f} +- {r['peak_stderr']:.2g}",
                 f"{r['centroid_cm1']:.1f} +- {r['centroid_stderr']:.2g}")
                for r in averaged.band_summary(band_map)]
        click.echo(format_table(rows, ["band", "range (cm^-1)", f"integral ({averaged.integrated_unit})",
                                       "peak (cm^-1)", "centroid (cm^-1)"]))
    if plot:
        from aiida_irspec.spectra.plotting import plot_spectra

        plot_spectra([averaged], labels=[label or f"{averaged.n_runs} runs, {temperature:g} K"],
                     experiment_csv=experiment, path=plot, xlim=xlim, bands=band_map)
        click.echo(f"wrote {plot}")

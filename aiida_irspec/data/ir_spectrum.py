"""IRSpectrumData: an averaged IR spectrum (mean, standard error, the +-2 standard-error band) as an AiiDA node."""

import numpy as np
from aiida import orm

from aiida_irspec.data.attributes import json_safe
from aiida_irspec.exceptions import InputError

OPTIONAL_ARRAYS = ("runs", "bootstrap_lower", "bootstrap_upper")


class IRSpectrumData(orm.ArrayData):
    """The mean IR spectrum of ``n_runs`` independent runs with its confidence band.

    Arrays (in the node's repository): ``frequency_cm1`` (M,) cm^-1; ``mean`` and ``stderr`` (M,) in
    ``unit`` (stderr = standard deviation of the runs / sqrt(n_runs)); optionally ``runs`` (n_runs, M),
    the individual spectra, and ``bootstrap_lower``/``bootstrap_upper`` (M,). The band of the paper,
    mean -+ 2 stderr, is :attr:`lower` / :attr:`upper`.

    Attributes: ``unit`` ("cm^-1": absorption coefficient alpha n; "km/mol/cm^-1": molar absorption per
    molecule), ``integrated_unit``, ``n_runs``, ``n_points``, ``frequency_range_cm1`` and ``settings``
    (every setting that made the spectrum: time step, window and width, temperature, quantum correction,
    ..., as recorded by :mod:`aiida_irspec.spectra`).
    """

    def __init__(self, averaged, **kwargs):
        """From an :class:`aiida_irspec.spectra.averaging.AveragedSpectrum`."""
        super().__init__(**kwargs)
        frequency = np.asarray(averaged.frequency_cm1, dtype=float)
        arrays = {"frequency_cm1": frequency, "mean": averaged.mean, "stderr": averaged.stderr}
        arrays.update({name: getattr(averaged, name) for name in OPTIONAL_ARRAYS
                       if getattr(averaged, name) is not None})
        for name, value in arrays.items():
            value = np.asarray(value, dtype=float)
            expected = (averaged.n_runs, len(frequency)) if name == "runs" else frequency.shape
            if value.shape != expected:
                raise InputError(f"{name} has shape {value.shape}, expected {expected}")
            self.set_array(name, value)
        attributes = self.base.attributes
        attributes.set("unit", averaged.unit)
        attributes.set("integrated_unit", averaged.integrated_unit)
        attributes.set("n_runs", int(averaged.n_runs))
        attributes.set("n_points", len(frequency))
        attributes.set("frequency_range_cm1", [float(frequency[0]), float(frequency[-1])])
        attributes.set("settings", json_safe(averaged.settings))

    @property
    def frequency_cm1(self):
        """(M,) wavenumbers in cm^-1."""
        return self.get_array("frequency_cm1")

    @property
    def mean(self):
        """(M,) mean spectrum in :attr:`unit`."""
        return self.get_array("mean")

    @property
    def stderr(self):
        """(M,) standard error of the mean in :attr:`unit` (NaN for a single run)."""
        return self.get_array("stderr")

    @property
    def lower(self):
        """(M,) mean - 2 stderr."""
        return self.mean - 2 * self.stderr

    @property
    def upper(self):
        """(M,) mean + 2 stderr."""
        return self.mean + 2 * self.stderr

    @property
    def runs(self):
        """(n_runs, M) spectra of the individual runs, or None when they were not stored."""
        return self.get_array("runs") if "runs" in self.get_arraynames() else None

    @property
    def unit(self):
        """Unit of the spectrum values: "cm^-1" or "km/mol/cm^-1"."""
        return self.base.attributes.get("unit")

    @property
    def n_runs(self):
        """Number of independent runs averaged."""
        return self.base.attributes.get("n_runs")

    @property
    def settings(self):
        """Every setting that made the spectrum (dict)."""
        return self.base.attributes.get("settings")

    def to_averaged(self):
        """The spectrum as an :class:`aiida_irspec.spectra.averaging.AveragedSpectrum` (for the numerical core)."""
        from aiida_irspec.spectra.averaging import AveragedSpectrum

        names = self.get_arraynames()
        optional = {name: self.get_array(name) if name in names else None for name in OPTIONAL_ARRAYS}
        return AveragedSpectrum(self.frequency_cm1, self.mean, self.stderr, self.lower, self.upper, self.n_runs,
                                self.unit, dict(self.settings), **optional)

    def band_summary(self, bands):
        """Integrated intensity, peak and centroid of named bands (name -> (lo, hi) cm^-1), with standard errors."""
        return self.to_averaged().band_summary(bands)

    def to_csv(self, path, bands=None, frequency_range=None, header=()):
        """Write the spectrum as CSV, atomically (columns frequency_cm1, absorption, stderr, lower, upper; units
        and settings in comment lines; ``bands`` adds their summary; ``frequency_range`` (lo, hi) cm^-1 limits the
        rows; ``header`` comment lines go first): :meth:`AveragedSpectrum.to_csv`, with this node's UUID."""
        self.to_averaged().to_csv(path, bands=bands, frequency_range=frequency_range,
                                  header=[*header] or [f"spectrum: IRSpectrumData<{self.pk}> uuid {self.uuid}"])

    def plot(self, ax=None, path=None, **kwargs):
        """Plot the mean with its +-2 stderr band (matplotlib); save to ``path`` (atomically) when given. Returns
        the axes."""
        from aiida_irspec.files import savefig
        from aiida_irspec.spectra.plotting import plot_spectrum

        ax = plot_spectrum(self.to_averaged(), ax=ax, **kwargs)
        if path is not None:
            savefig(ax.figure, path, bbox_inches="tight")
        return ax


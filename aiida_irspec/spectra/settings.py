"""The spectrum settings group: how runs' polarization currents become one IR spectrum (no AiiDA import).

One home of their defaults and limits, read by :func:`~aiida_irspec.spectra.green_kubo.green_kubo_spectrum`,
``aiida-irspec spectrum``, the ``analysis`` port of ``irspec.ir_spectrum`` and the campaign YAML.
"""

import dataclasses
from typing import TYPE_CHECKING

from aiida_irspec.settings import Settings, setting
from aiida_irspec.spectra.quantum import QUANTUM_CORRECTIONS

if TYPE_CHECKING:
    import ase

WINDOWS = ("gaussian", "hann", "none")
#: Line width (FWHM, cm^-1) of the window when neither ``width_cm1`` nor ``width_fs`` is given.
DEFAULT_WIDTH_CM1 = 10.0
#: Largest volume (Angstrom^3) and number of molecules taken: beyond any simulation cell.
MAX_VOLUME = 1e9
MAX_MOLECULES = 10**7


def check_bands(bands: dict) -> str | None:
    """A message unless ``bands`` maps names to [low, high] wavenumbers (cm^-1, 0 <= low < high)."""
    for name, limits in bands.items():
        if not (isinstance(limits, list) and len(limits) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in limits)
                and 0 <= limits[0] < limits[1]):
            return f"band {name!r}: expected [low, high] in cm^-1 with 0 <= low < high, found {limits!r}"
    return None


@dataclasses.dataclass(frozen=True)
class SpectrumSettings(Settings):
    """Green-Kubo spectrum of independent runs, their mean and +-2 standard-error band."""

    volume: float | None = setting(None, "Cell volume: the spectrum is then the absorption coefficient alpha*n "
                                         "(cm^-1); give this or molecules.", minimum=0, exclusive_minimum=True,
                                   maximum=MAX_VOLUME, unit="Angstrom^3")
    molecules: int | None = setting(None, "Number of molecules in the cell: the spectrum is then the molar "
                                          "absorption per molecule (km/mol/cm^-1); give this or volume.",
                                    minimum=1, maximum=MAX_MOLECULES)
    window: str = setting("gaussian", "Window on the correlation function (Gaussian: Gaussian line shapes).",
                          choices=WINDOWS)
    width_cm1: float | None = setting(None, f"Line width (FWHM) the window gives; null: width_fs, or "
                                            f"{DEFAULT_WIDTH_CM1:g} cm^-1.", minimum=0, exclusive_minimum=True,
                                      maximum=1e4, unit="cm^-1")
    width_fs: float | None = setting(None, "Window width in time instead (Gaussian sigma or Hann half-length).",
                                     minimum=0, exclusive_minimum=True, maximum=1e7, unit="fs")
    max_correlation_fs: float | None = setting(None, "Longest correlation time used; null: 5 window widths "
                                                     "(Gaussian), the window (Hann) or half the run (none).",
                                               minimum=0, exclusive_minimum=True, maximum=1e8, unit="fs")
    quantum_correction: str = setting("none", "Quantum correction factor applied to the classical spectrum.",
                                      choices=QUANTUM_CORRECTIONS)
    max_frequency_cm1: float | None = setting(None, "Highest wavenumber kept; null: up to the Nyquist frequency.",
                                              minimum=0, exclusive_minimum=True, maximum=1e6, unit="cm^-1")
    bands: dict = setting({}, "Named bands summarised in reports: name: [low, high].", check=check_bands,
                          unit="cm^-1")
    bootstrap: int = setting(0, "Bootstrap resamples of the runs for a percentile band (0: none).", minimum=0,
                             maximum=100000)
    seed: int | None = setting(None, "Seed of the bootstrap.", minimum=0)

    @classmethod
    def consistency_problems(cls, values, prefix):
        problems = []
        if values.get("width_cm1") is not None and values.get("width_fs") is not None:
            problems.append(f"{prefix}width_fs: give the window width in cm^-1 or in fs, not both")
        return problems

    @classmethod
    def normalisation_problems(cls, values, prefix=""):
        """The rule that a spectrum needs exactly one of volume and molecules (for settings that are complete)."""
        if (values.get("volume") is None) == (values.get("molecules") is None):
            return [f"{prefix}volume, {prefix}molecules: give exactly one: volume (Angstrom^3, periodic cells: "
                    f"absorption in cm^-1) or molecules (molecules and clusters: km/mol per molecule)"]
        return []


def normalisation_of(atoms: "ase.Atoms") -> dict:
    """The spectrum's normalisation that suits ``atoms`` (ase.Atoms): ``{"volume": V}`` (Angstrom^3) for a
    periodic cell, else ``{"molecules": n}`` with n the number of bonded clusters (ASE's natural cutoffs)."""
    if atoms.pbc.all():
        return {"volume": float(atoms.get_volume())}
    import numpy as np
    from ase.neighborlist import natural_cutoffs, neighbor_list
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    first, second = neighbor_list("ij", atoms, natural_cutoffs(atoms))
    bonds = coo_matrix((np.ones(len(first)), (first, second)), shape=(len(atoms), len(atoms)))
    return {"molecules": int(connected_components(bonds, directed=False)[0])}

"""Physics checks of the Green-Kubo spectra (aiida_irspec.spectra): f-sum rule, harmonic oscillator line and
intensity (against ASE's Infrared units), windows, quantum factors, averaging, P route vs dP/dt route."""

import math

import numpy as np
import pytest
import scipy.signal

from aiida_irspec import units
from aiida_irspec.exceptions import InputError
from aiida_irspec.spectra import (
    average_spectra,
    green_kubo_spectrum,
    quantum_correction_factor,
    spectrum_from_polarization,
    window_fwhm_cm1,
    window_width_fs,
)

KT_PER_AMU = units.kelvin_to_ev(300.0) / units.AMU_A2_PER_FS2_IN_EV  # (A/fs)^2 for 1 amu at 300 K


def langevin_free_velocities(rng, masses, steps, dt, friction, temperature):
    """Exact Langevin (Ornstein-Uhlenbeck) velocities of free particles, (steps, N, 3) in A/fs, started thermal."""
    sigma = np.sqrt(units.kelvin_to_ev(temperature) / units.AMU_A2_PER_FS2_IN_EV / masses)[None, :, None]
    a = math.exp(-friction * dt)
    kicks = rng.normal(size=(steps, len(masses), 3)) * sigma * math.sqrt(1 - a * a)
    kicks[0] = rng.normal(size=(len(masses), 3)) * sigma[0]
    return scipy.signal.lfilter([1.0], [1.0, -a], kicks, axis=0)


def fsum_cm2(temperature, volume, pdot2):
    """Int_0^inf alpha n d(wavenumber) in cm^-2 = beta pi / (6 V c eps0) <|Pdot|^2> / (2 pi c), from SI constants."""
    pdot2_si = pdot2 * units.E_ANGSTROM_PER_FS_IN_C_M_PER_S**2
    per_omega = math.pi * pdot2_si / (6 * volume * units.ANGSTROM**3 * units.SPEED_OF_LIGHT * units.VACUUM_PERMITTIVITY
                                      * units.BOLTZMANN * temperature)  # m^-1 s^-1
    return per_omega / (2 * math.pi * units.SPEED_OF_LIGHT) * 1e-4


def harmonic_runs(rng, nu0_cm1, charge, mass, temperature, steps, dt, n_runs):
    """3D isotropic oscillators with each component at energy kT and a random phase: (P, Pdot) lists, |e| A(/fs)."""
    omega = nu0_cm1 * units.CM1_TO_RAD_PER_FS
    amplitude = math.sqrt(2 * units.kelvin_to_ev(temperature) / units.AMU_A2_PER_FS2_IN_EV / mass) / omega
    t = np.arange(steps)[:, None] * dt
    runs = []
    for _ in range(n_runs):
        phase = rng.uniform(0, 2 * np.pi, 3)
        runs.append((charge * amplitude * np.cos(omega * t + phase),
                     -charge * amplitude * omega * np.sin(omega * t + phase)))
    return runs


def test_fsum_rule_langevin_free_particles():
    """Fixed tensor charges on thermal Langevin velocities: Int alpha n = pi/(6 V c eps0) sum ||Z||^2/m, to 1%."""
    rng = np.random.default_rng(3)
    masses = rng.uniform(1.0, 40.0, 20)
    charges = rng.normal(size=(20, 3, 3))
    temperature, volume, dt = 300.0, 2000.0, 1.0
    spectra = []
    for _ in range(12):
        v = langevin_free_velocities(rng, masses, 50_000, dt, friction=0.2, temperature=temperature)
        pdot = np.einsum("iab,tib->ta", charges, v)
        spectra.append(green_kubo_spectrum(pdot, dt, temperature, volume=volume, width_cm1=20))
        own = fsum_cm2(temperature, volume, np.mean(np.sum(pdot**2, axis=1)))
        assert spectra[-1].integral() == pytest.approx(own, rel=1e-9)  # the run's own <|Pdot|^2>: to round-off
    ensemble_pdot2 = np.sum(charges**2 / masses[:, None, None]) * units.kelvin_to_ev(temperature) \
        / units.AMU_A2_PER_FS2_IN_EV  # sum_i ||Z_i||_F^2 kT / m_i
    mean = average_spectra(spectra)
    assert np.trapezoid(mean.mean, mean.frequency_cm1) == pytest.approx(
        fsum_cm2(temperature, volume, ensemble_pdot2), rel=0.01)


def test_harmonic_oscillator_line_and_intensity_km_mol():
    """A charged 3D oscillator: line at nu0, integrated intensity = 3 x N_A q^2 / (12 eps0 c^2 m), to 1%."""
    rng = np.random.default_rng(5)
    nu0, q, m, temperature = 1200.0, 0.7, 12.0, 50.0
    runs = harmonic_runs(rng, nu0, q, m, temperature, steps=40_000, dt=0.5, n_runs=4)
    mean = average_spectra([green_kubo_spectrum(pdot, 0.5, temperature, molecules=1, width_cm1=8)
                            for _, pdot in runs])
    assert mean.unit == "km/mol/cm^-1" and mean.integrated_unit == "km/mol"
    (band,) = mean.band_summary({"line": (nu0 - 100, nu0 + 100)})
    assert band["peak_cm1"] == pytest.approx(nu0, abs=0.5)
    assert band["centroid_cm1"] == pytest.approx(nu0, abs=0.5)
    analytic = 3 * units.HARMONIC_INTENSITY_KM_MOL * q**2 / m
    assert band["integral"] == pytest.approx(analytic, rel=0.01)
    # the line width is the window's: Gaussian of FWHM 8 cm^-1
    half = mean.frequency_cm1[mean.mean > 0.5 * mean.mean.max()]
    assert half[-1] - half[0] == pytest.approx(8.0, abs=2 * (mean.frequency_cm1[1] - mean.frequency_cm1[0]))


def test_harmonic_intensity_unit_matches_ase_infrared(tmp_path):
    """Our km/mol prefactor against ASE's Infrared (Porezag's 42.255 km/mol per (D/A)^2/amu) on a tethered charge."""
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes
    from ase.vibrations import Infrared

    q, k_spring, origin = 0.8, 25.0, np.array([0.1, -0.2, 0.3])

    class TetheredCharge(Calculator):
        implemented_properties = ["energy", "forces", "dipole"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            d = self.atoms.positions - origin
            self.results = {"energy": 0.5 * k_spring * np.sum(d**2), "forces": -k_spring * d,
                            "dipole": q * self.atoms.positions.sum(axis=0)}

    atoms = Atoms("O", positions=[origin])
    atoms.calc = TetheredCharge()
    ir = Infrared(atoms, name=str(tmp_path / "ir"))
    ir.run()
    ir.read()
    mass = atoms.get_masses()[0]
    ase_km_mol = ir.intensities * ir.intensity_prefactor("km/mol")[0]
    assert ase_km_mol == pytest.approx(np.full(3, units.HARMONIC_INTENSITY_KM_MOL * q**2 / mass), rel=1e-3)
    omega = math.sqrt(k_spring / mass) / units.ASE_TIME_UNIT_FS  # rad/fs
    assert ir.get_frequencies().real == pytest.approx(np.full(3, omega * units.RAD_PER_FS_TO_CM1), rel=1e-4)


@pytest.mark.filterwarnings("ignore:the .* window")  # deliberately cut windows: the integral must not care
@pytest.mark.parametrize("window,width", [("gaussian", 5.0), ("gaussian", 50.0), ("hann", 20.0), ("none", None)])
def test_windows_keep_the_integral(window, width):
    rng = np.random.default_rng(7)
    pdot = scipy.signal.lfilter([1.0], [1.0, -0.9], rng.normal(size=(8000, 3)), axis=0)
    spectrum = green_kubo_spectrum(pdot, 0.5, 300.0, volume=500.0, window=window, width_cm1=width)
    assert spectrum.integral() == pytest.approx(fsum_cm2(300.0, 500.0, np.mean(np.sum(pdot**2, axis=1))), rel=1e-9)
    shorter = green_kubo_spectrum(pdot, 0.5, 300.0, volume=500.0, window=window, width_cm1=width,
                                  max_correlation_fs=100.0, zero_padding=3)
    assert shorter.integral() == pytest.approx(spectrum.integral(), rel=1e-9)


@pytest.mark.parametrize("window", ["gaussian", "hann"])
def test_window_width_is_the_line_fwhm(window):
    """A pure cosine correlation (a sharp line) comes out with the requested FWHM."""
    nu0, fwhm, dt = 2000.0, 25.0, 0.5
    t = np.arange(40_000) * dt
    omega = nu0 * units.CM1_TO_RAD_PER_FS
    pdot = np.stack([np.cos(omega * t), np.sin(omega * t), np.zeros_like(t)], axis=1)  # C(t) = cos(omega t)
    spectrum = green_kubo_spectrum(pdot, dt, 300.0, volume=100.0, window=window, width_cm1=fwhm, zero_padding=8)
    nu, s = spectrum.frequency_cm1, spectrum.absorption
    half = nu[(s > 0.5 * s.max()) & (np.abs(nu - nu0) < 200)]
    assert half[-1] - half[0] == pytest.approx(fwhm, abs=2 * (nu[1] - nu[0]))
    assert nu[np.argmax(s)] == pytest.approx(nu0, abs=nu[1] - nu[0])
    assert window_fwhm_cm1(window, window_width_fs(window, fwhm)) == pytest.approx(fwhm)


@pytest.mark.parametrize("kind", ["harmonic", "standard", "schofield"])
def test_quantum_factors_tend_to_one_at_low_frequency(kind):
    omega = np.array([0.0, 1e-9, 1e-6, 1e-4]) * units.CM1_TO_RAD_PER_FS
    factor = quantum_correction_factor(kind, omega, 300.0)
    assert factor == pytest.approx(np.ones(4), abs=1e-6)
    x = units.HBAR_EV_FS * 3000 * units.CM1_TO_RAD_PER_FS / units.kelvin_to_ev(300.0)  # 3000 cm^-1 at 300 K
    expected = {"harmonic": x / (1 - math.exp(-x)), "standard": 2 / (1 + math.exp(-x)), "schofield": math.exp(x / 2)}
    high = quantum_correction_factor(kind, np.array([3000 * units.CM1_TO_RAD_PER_FS]), 300.0)[0]
    assert high == pytest.approx(expected[kind], rel=1e-12) and high > 1
    assert quantum_correction_factor("none", omega, 300.0) == pytest.approx(np.ones(4))


def test_quantum_correction_is_applied_and_recorded():
    rng = np.random.default_rng(2)
    pdot = rng.normal(size=(4000, 3))
    plain = green_kubo_spectrum(pdot, 1.0, 300.0, volume=100.0, width_cm1=30)
    corrected = green_kubo_spectrum(pdot, 1.0, 300.0, volume=100.0, width_cm1=30, quantum_correction="harmonic")
    assert corrected.settings["quantum_correction"] == "harmonic" and plain.settings["quantum_correction"] == "none"
    omega = plain.frequency_cm1 * units.CM1_TO_RAD_PER_FS
    assert corrected.absorption == pytest.approx(plain.absorption * quantum_correction_factor("harmonic", omega, 300.0))


def test_band_shrinks_as_inverse_sqrt_of_runs():
    rng = np.random.default_rng(11)
    spectra = [green_kubo_spectrum(scipy.signal.lfilter([1.0], [1.0, -0.95], rng.normal(size=(4000, 3)), axis=0),
                                   1.0, 300.0, volume=100.0, width_cm1=30, max_frequency_cm1=3000)
               for _ in range(80)]
    few, many = average_spectra(spectra[:8]), average_spectra(spectra[16:80])
    ratio = np.median(few.stderr / many.stderr)
    assert ratio == pytest.approx(math.sqrt(64 / 8), rel=0.15)
    assert few.n_runs == 8 and many.n_runs == 64
    assert np.allclose(few.upper - few.lower, 4 * few.stderr)
    boot = average_spectra(spectra[:8], bootstrap=400, seed=1)
    inside = (boot.bootstrap_lower <= boot.mean) & (boot.mean <= boot.bootstrap_upper)
    assert inside.all()
    # the bootstrap 95% band is about as wide as +-2 standard errors (a bit narrower: n/(n-1) and percentiles)
    assert np.median((boot.bootstrap_upper - boot.bootstrap_lower) / (boot.upper - boot.lower)) == pytest.approx(
        0.9, abs=0.15)


def test_polarization_route_equals_pdot_route():
    """The same smooth trajectory as P and as dP/dt: same spectrum up to the sinc^2 of the difference."""
    rng = np.random.default_rng(9)
    dt = 0.25
    runs = harmonic_runs(rng, 3400.0, 0.5, 2.0, 300.0, steps=20_000, dt=dt, n_runs=1)
    (polarization, pdot), = runs
    from_pdot = green_kubo_spectrum(pdot, dt, 300.0, volume=300.0, width_cm1=20)
    from_p = spectrum_from_polarization(polarization, dt, 300.0, volume=300.0, width_cm1=20)
    assert from_p.settings["source"] == "polarization"
    sinc2 = np.sinc(3400.0 * units.CM1_TO_RAD_PER_FS * dt / (2 * np.pi)) ** 2
    assert sinc2 == pytest.approx(1 - 0.002, abs=2e-4)  # the documented -0.2% at 3400 cm^-1 and 0.25 fs
    assert from_p.integral() == pytest.approx(sinc2 * from_pdot.integral(), rel=1e-3)
    peak = from_pdot.absorption.max()
    assert np.max(np.abs(from_p.absorption - sinc2 * from_pdot.absorption)) < 5e-3 * peak
    # a cumulative sum is inverted exactly
    exact = spectrum_from_polarization(np.cumsum(pdot, axis=0) * dt, dt, 300.0, volume=300.0, width_cm1=20)
    assert exact.integral() == pytest.approx(fsum_cm2(300.0, 300.0, np.mean(np.sum(pdot[1:] ** 2, axis=1))),
                                             rel=1e-9)


def test_units_and_settings_are_named():
    pdot = np.random.default_rng(0).normal(size=(1000, 3))
    cell = green_kubo_spectrum(pdot, 1.0, 300.0, volume=100.0, stride=2, width_cm1=50)
    molecule = green_kubo_spectrum(pdot, 1.0, 300.0, molecules=4, stride=2, width_cm1=50)
    assert (cell.unit, cell.integrated_unit) == ("cm^-1", "cm^-2")
    assert (molecule.unit, molecule.integrated_unit) == ("km/mol/cm^-1", "km/mol")
    assert cell.settings["sampling_interval_fs"] == 2.0 and cell.settings["window"] == "gaussian"
    assert cell.settings["frequency_step_cm1"] == pytest.approx(cell.frequency_cm1[1])
    assert cell.frequency_cm1[-1] == pytest.approx(units.RAD_PER_FS_TO_CM1 * np.pi / 2.0)  # Nyquist of 2 fs
    # per molecule: N_A sigma = alpha n V / (N molecules) * N_A, in (km/mol)/cm^-1 = 10 m^2/mol
    ratio = molecule.absorption[1:] / cell.absorption[1:]
    expected = units.AVOGADRO * (100.0 * units.ANGSTROM**3 * 1e6) / 4 / 1e5
    assert ratio == pytest.approx(np.full_like(ratio, expected), rel=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    ({"volume": None}, "exactly one"),
    ({"molecules": 2}, "exactly one"),
    ({"window": "boxcar"}, "unknown window"),
    ({"quantum_correction": "kubo"}, "unknown quantum"),
    ({"width_cm1": 5, "width_fs": 100}, "either"),
    ({"width_cm1": -1}, "positive"),
    ({"max_correlation_fs": 0.1}, "shorter than one sample"),
    ({"stride": 0}, "stride"),
])
def test_bad_arguments_raise_input_error(kwargs, match):
    arguments = {"volume": 100.0, **kwargs}
    with pytest.raises(InputError, match=match):
        green_kubo_spectrum(np.ones((100, 3)), 1.0, 300.0, **arguments)


@pytest.mark.parametrize("array,match", [
    (np.ones((100, 2)), "shape"), (np.ones(100), "shape"), (np.ones((5, 3)), "at least"),
    (np.where(np.arange(300).reshape(100, 3) == 50, np.nan, 1.0), "NaN"),
])
def test_bad_series_raise_input_error(array, match):
    with pytest.raises(InputError, match=match):
        green_kubo_spectrum(array, 1.0, 300.0, volume=100.0)


def test_averaging_rejects_mismatched_runs():
    pdot = np.random.default_rng(1).normal(size=(2000, 3))
    a = green_kubo_spectrum(pdot, 1.0, 300.0, volume=100.0, width_cm1=50)
    with pytest.raises(InputError, match="frequency grid"):
        average_spectra([a, green_kubo_spectrum(pdot, 0.5, 300.0, volume=100.0, width_cm1=50)])
    with pytest.raises(InputError, match="cm\\^-1"):
        average_spectra([a, green_kubo_spectrum(pdot, 1.0, 300.0, molecules=1, width_cm1=50)])
    single = average_spectra([a])
    assert single.n_runs == 1 and np.isnan(single.stderr).all()


def test_a_window_cut_by_the_run_is_reported():
    pdot = np.random.default_rng(6).normal(size=(1000, 3))
    with pytest.warns(UserWarning, match="cut at 999 fs"):
        short = green_kubo_spectrum(pdot, 1.0, 300.0, volume=100.0, window="hann", width_cm1=5)
    assert short.settings["max_correlation_fs"] == 999.0 and "wider than the requested" in short.settings["notes"][0]
    assert green_kubo_spectrum(pdot, 1.0, 300.0, volume=100.0, width_cm1=50).settings["notes"] == []


def test_spectra_import_neither_aiida_nor_click():
    import subprocess
    import sys

    code = ("import sys, aiida_irspec.spectra, aiida_irspec.spectra.io, aiida_irspec.spectra.plotting; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiida', 'click')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

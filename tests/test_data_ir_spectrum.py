"""IRSpectrumData: stores an averaged spectrum with its band and settings; CSV and plot round trips."""

import numpy as np
import pytest

from aiida_irspec.spectra.averaging import average_spectra
from aiida_irspec.spectra.green_kubo import green_kubo_spectrum


def oscillator_runs(n_runs=4, steps=2000, dt=0.5, seed=0):
    """dP/dt of a noisy 1600 cm^-1 oscillator with random phases: one (steps, 3) series per run."""
    rng = np.random.default_rng(seed)
    omega = 2 * np.pi * 1600 * 2.99792458e-5  # rad/fs
    t = np.arange(steps) * dt
    return [np.column_stack([np.cos(omega * t + rng.uniform(0, 2 * np.pi)) * 0.01 for _ in range(3)])
            + 1e-4 * rng.normal(size=(steps, 3)) for _ in range(n_runs)]


@pytest.fixture
def averaged():
    spectra = [green_kubo_spectrum(p, 0.5, 300.0, molecules=2, width_cm1=20.0) for p in oscillator_runs()]
    return average_spectra(spectra, bootstrap=50, seed=1)


def test_store_and_reload(aiida_profile, averaged):
    from aiida import orm

    from aiida_irspec.data.ir_spectrum import IRSpectrumData

    node = IRSpectrumData(averaged).store()
    loaded = orm.load_node(node.pk)
    assert isinstance(loaded, IRSpectrumData)
    assert np.array_equal(loaded.frequency_cm1, averaged.frequency_cm1)
    assert np.array_equal(loaded.mean, averaged.mean)
    assert np.allclose(loaded.lower, averaged.lower) and np.allclose(loaded.upper, averaged.upper)
    assert loaded.runs.shape == (4, len(averaged.frequency_cm1))
    assert loaded.n_runs == 4 and loaded.unit == "km/mol/cm^-1"
    assert loaded.base.attributes.get("integrated_unit") == "km/mol"
    assert loaded.settings["temperature_K"] == 300.0 and loaded.settings["window"] == "gaussian"
    assert loaded.settings["bootstrap"] == 50
    # the band holds the peak of the oscillator near 1600 cm^-1
    peak = loaded.frequency_cm1[np.argmax(loaded.mean)]
    assert abs(peak - 1600) < 10
    summary = loaded.band_summary({"bend": (1400, 1800)})[0]
    assert summary == averaged.band_summary({"bend": (1400, 1800)})[0]


def test_csv_and_plot(aiida_profile, averaged, tmp_path):
    from aiida_irspec.data.ir_spectrum import IRSpectrumData
    from aiida_irspec.spectra.io import read_spectrum_csv

    node = IRSpectrumData(averaged).store()
    node.to_csv(tmp_path / "s.csv", bands={"bend": (1400, 1800)})
    columns, comments = read_spectrum_csv(tmp_path / "s.csv")
    assert np.allclose(columns["absorption"], averaged.mean, rtol=1e-8)
    assert np.allclose(columns["upper"], averaged.upper, rtol=1e-8, atol=1e-12)
    assert any(line.startswith("band ") for line in comments)
    ax = node.plot(path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert len(ax.lines) == 1 and len(ax.collections) == 1  # mean line and band


def test_single_run_nan_stderr_is_storable(aiida_profile):
    from aiida_irspec.data.ir_spectrum import IRSpectrumData

    single = average_spectra([green_kubo_spectrum(oscillator_runs(1)[0], 0.5, 300.0, molecules=1)])
    node = IRSpectrumData(single).store()
    assert node.n_runs == 1 and np.all(np.isnan(node.stderr))


def test_shape_mismatch_is_an_input_error(averaged):
    from aiida_irspec.data.ir_spectrum import IRSpectrumData
    from aiida_irspec.exceptions import InputError

    averaged.stderr = averaged.stderr[:-1]
    with pytest.raises(InputError, match="stderr has shape"):
        IRSpectrumData(averaged)


def test_compare_bands_sees_agreement_and_disagreement():
    """Two independent sets of runs of one process agree; doubling dP/dt (4x the intensity) does not."""
    from aiida_irspec.campaign.validation import compare_bands

    def spectra(seed, scale=1.0):
        amplitudes = np.random.default_rng(seed).uniform(0.7, 1.3, size=8)
        return average_spectra([green_kubo_spectrum(scale * a * p, 0.5, 300.0, molecules=2, width_cm1=20.0)
                                for a, p in zip(amplitudes, oscillator_runs(8, seed=seed))])

    reference = spectra(1)
    (row,) = compare_bands(spectra(2), reference, {"line": (1500, 1700)})
    assert row["inside_band"] > 0.8 and row["integral_agrees"]
    (row,) = compare_bands(spectra(1, scale=2.0), reference, {"line": (1500, 1700)})
    assert row["inside_band"] < 0.5 and not row["integral_agrees"]
    assert np.isclose(row["integral_model"], 4 * row["integral_reference"])

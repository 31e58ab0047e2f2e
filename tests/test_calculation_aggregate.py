"""aggregate_spectra: per-run dP/dt or P series -> IRSpectrumData, equal to the numerical core's average."""

import numpy as np
import pytest


def oscillator(seed, steps=3000, dt=0.5):
    """dP/dt (steps, 3) of two damped-free lines (1600 and 3600 cm^-1) with random phases, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * dt
    pdot = np.zeros((steps, 3))
    for nu, amplitude in ((1600, 0.01), (3600, 0.02)):
        omega = 2 * np.pi * nu * 2.99792458e-5
        pdot += amplitude * np.cos(omega * t[:, None] + rng.uniform(0, 2 * np.pi, size=3))
    return t, pdot + 1e-4 * rng.normal(size=pdot.shape)


def run_node(times, **arrays):
    from aiida import orm

    node = orm.ArrayData()
    node.set_array("times", times)
    for name, value in arrays.items():
        node.set_array(name, value)
    return node


SETTINGS = {"temperature": 300.0, "molecules": 2, "window": "gaussian", "width_cm1": 20.0,
            "quantum_correction": "none", "bootstrap": 20, "seed": 3}


def test_matches_core_and_keeps_provenance(aiida_profile):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_irspec.calculations.aggregate import aggregate_spectra
    from aiida_irspec.data.ir_spectrum import IRSpectrumData
    from aiida_irspec.spectra.averaging import average_spectra
    from aiida_irspec.spectra.green_kubo import green_kubo_spectrum

    series = [oscillator(seed) for seed in range(4)]
    runs = {f"run_{k}": run_node(t, pdot=p) for k, (t, p) in enumerate(series)}
    spectrum, node = run_get_node(aggregate_spectra, settings=orm.Dict(SETTINGS), **runs)
    assert node.is_finished_ok and isinstance(spectrum, IRSpectrumData)
    kwargs = {k: SETTINGS[k] for k in ("temperature", "molecules", "window", "width_cm1", "quantum_correction")}
    expected = average_spectra([green_kubo_spectrum(p, 0.5, **kwargs) for _, p in series], bootstrap=20, seed=3)
    assert np.allclose(spectrum.mean, expected.mean, rtol=1e-12)
    assert np.allclose(spectrum.stderr, expected.stderr, rtol=1e-12)
    assert spectrum.n_runs == 4 and spectrum.settings["run_labels"] == sorted(runs)
    peaks = spectrum.frequency_cm1[np.argsort(spectrum.mean)[-1]]
    assert abs(peaks - 3600) < 15
    incoming = {link.link_label for link in node.base.links.get_incoming().all()}
    assert set(runs) <= incoming and "settings" in incoming


def test_polarization_route_equals_pdot_route(aiida_profile):
    from aiida import orm
    from aiida.engine import run

    from aiida_irspec.calculations.aggregate import aggregate_spectra

    t, pdot = oscillator(0)
    polarization = np.vstack([np.zeros(3), np.cumsum(pdot, axis=0) * 0.5])  # forward difference gives pdot back
    times = np.arange(len(polarization)) * 0.5
    settings = orm.Dict({k: v for k, v in SETTINGS.items() if k != "bootstrap"})
    from_pdot = run(aggregate_spectra, settings=settings, a=run_node(t, pdot=pdot))
    from_p = run(aggregate_spectra, settings=settings, a=run_node(times, polarization=polarization))
    assert np.allclose(from_p.mean, from_pdot.mean, rtol=1e-9, atol=1e-12 * from_pdot.mean.max())


def test_bad_runs_fail_with_a_clear_error(aiida_profile):
    from aiida import orm
    from aiida.engine import run

    from aiida_irspec.calculations.aggregate import aggregate_spectra
    from aiida_irspec.exceptions import InputError

    t, pdot = oscillator(1)
    with pytest.raises(InputError, match="neither a 'pdot' nor a 'polarization'"):
        run(aggregate_spectra, settings=orm.Dict(SETTINGS), a=run_node(t, velocities=pdot))
    with pytest.raises(InputError, match="uniformly spaced"):
        run(aggregate_spectra, settings=orm.Dict(SETTINGS), a=run_node(t ** 1.01, pdot=pdot))

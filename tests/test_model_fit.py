"""Fitting, prediction, persistence and errors of PolarizationModel (small settings, synthetic data)."""

import numpy as np
import pytest
from model_structures import fluorite, rotated, water_dimer

from aiida_irspec.exceptions import InputError, ModelError
from aiida_irspec.model import DescriptorSettings, FeatureSpace, PolarizationModel
from aiida_irspec.model import polarization_model as pm
from aiida_irspec.model.solver import NormalEquations, SymmetricSpectrum, solve

SETTINGS = DescriptorSettings(cutoff=3.6, n_radial=2, l_max=2, gaussian_width=0.4)
CHARGES = {40: 4.0, 8: -2.0}


def synthetic(frames, space, weights, charges):
    """Born charges and polarizations of a known model in the same feature space."""
    born, pol = [], []
    for atoms in frames:
        q = np.array([charges[z] for z in atoms.numbers])
        born.append(q[:, None, None] * np.eye(3) + space.born_charge_design(atoms) @ weights.ravel())
        pol.append(q @ atoms.positions + space.polarization_design(atoms) @ weights.ravel())
    return born, pol


@pytest.fixture(scope="module")
def known():
    space = FeatureSpace(SETTINGS, [8, 40])
    weights = np.random.default_rng(3).normal(size=(space.n_species, space.n_per_species))
    weights.ravel()[space.structural_zero_columns()] = 0.0
    train = [fluorite(seed) for seed in range(12)]
    test = [fluorite(seed) for seed in range(100, 103)]
    data = synthetic(train, space, weights, CHARGES), synthetic(test, space, weights, CHARGES)
    return space, weights, train, test, *data


@pytest.fixture(scope="module")
def fitted(known):
    _, _, train, _, (born, _), _ = known
    return PolarizationModel(SETTINGS, kind="dipole", regularization=1e-12).fit(train, born)


def test_recovers_known_model_to_round_off(known, fitted):
    _, _, _, test, _, (born_test, pol_test) = known
    assert fitted.charges == CHARGES  # formal baseline for periodic cells
    z = fitted.predict_born_charges(test)
    np.testing.assert_allclose(z, np.array(born_test), atol=1e-7)
    # P is learned up to nothing here: the learned part is translation invariant and fitted through Z
    np.testing.assert_allclose(fitted.predict_polarization(test), np.array(pol_test), atol=1e-7)
    # the training RMSE comes from the normal equations (y'y - 2 w'A'y + w'A'Aw): round-off ~ sqrt(eps) |y|
    assert fitted.metrics["training"]["born_charges_rmse"]["all"] < 1e-6


def test_fit_to_polarization_and_both(known):
    _, _, train, test, (born, pol), (born_test, pol_test) = known
    model = PolarizationModel(SETTINGS, kind="dipole", regularization=1e-12)
    model.fit(train, born[:4] + [None] * 8, pol, weights={"polarization": 10.0})
    np.testing.assert_allclose(model.predict_born_charges(test), np.array(born_test), atol=1e-6)
    assert model.metrics["n_polarizations"] == 12 and "polarization_rmse" in model.metrics["training"]


def test_data_chosen_regularisation(known):
    _, _, train, test, (born, _), (born_test, _) = known
    noisy = [z + np.random.default_rng(k).normal(scale=0.02, size=z.shape) for k, z in enumerate(born)]
    for method in ("evidence", "cv"):
        model = PolarizationModel(SETTINGS, kind="dipole", regularization=method).fit(train, noisy)
        assert model.metrics["regularization"]["method"] == method
        error = np.sqrt(np.mean((model.predict_born_charges(test) - np.array(born_test)) ** 2))
        assert error < 0.02, (method, error)
    # evidence noise estimate sees the injected noise
    assert 0.01**2 < model.metrics["regularization"]["noise_variance"] < 0.04**2 or method == "cv"


def test_streamed_normal_equations_equal_batch_least_squares():
    rng = np.random.default_rng(0)
    a, y = rng.normal(size=(60, 5)), rng.normal(size=60)
    normal = NormalEquations(5, n_folds=3)
    for k in range(6):
        normal.add(a[10 * k:10 * k + 10], y[10 * k:10 * k + 10], fold=k % 3)
    solution = solve(normal, alpha=1e-12)
    np.testing.assert_allclose(solution.weights, np.linalg.lstsq(a, y, rcond=None)[0], rtol=1e-8)


@pytest.mark.parametrize("n", [1, 2, 40])
def test_spectrum_and_posterior_of_the_ridge_solution(n):
    """The tridiagonal route gives numpy's eigenvalues and an orthogonal V; the weights solve the ridge normal
    equations and the posterior factor G gives G G^T = noise (A^T A + alpha D^2)^-1 (D the column scales)."""
    rng = np.random.default_rng(n)
    a, y = rng.normal(size=(3 * n + 5, n)) * rng.uniform(0.5, 3.0, size=n), rng.normal(size=3 * n + 5)
    m = a.T @ a
    spectrum = SymmetricSpectrum(m)
    np.testing.assert_allclose(spectrum.eigenvalues, np.linalg.eigvalsh(m), rtol=1e-10, atol=1e-10 * m.max())
    v = spectrum.from_eigenbasis(np.eye(n))
    np.testing.assert_allclose(v.T @ v, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(v @ np.diag(spectrum.eigenvalues) @ v.T, m, atol=1e-10 * np.abs(m).max())
    normal = NormalEquations(n)
    normal.add(a, y)
    solution = solve(normal, alpha=0.3)
    scales = np.sqrt(np.diag(m) / len(a))
    regularised = m + 0.3 * np.diag(scales**2)
    np.testing.assert_allclose(solution.weights, np.linalg.solve(regularised, a.T @ y), rtol=1e-9)
    covariance = solution.posterior_factor @ solution.posterior_factor.T
    np.testing.assert_allclose(covariance, solution.noise_variance * np.linalg.inv(regularised), rtol=1e-8,
                               atol=1e-12 * np.abs(covariance).max())


def test_predictions_covariant_and_consistent(fitted, known):
    test = known[3]
    atoms = test[0]
    p, z = fitted.predict_polarization([atoms])[0], fitted.predict_born_charges([atoms])[0]
    turned, matrix = rotated(atoms, 7)
    np.testing.assert_allclose(fitted.predict_polarization([turned])[0], matrix @ p, atol=1e-10 * np.abs(p).max())
    np.testing.assert_allclose(fitted.predict_born_charges([turned])[0], np.einsum("ac,jcd,bd->jab", matrix, z, matrix),
                               atol=1e-10 * np.abs(z).max())
    # Z is the derivative of P (baseline included)
    h = 1e-4
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[3, 1] += h
    minus.positions[3, 1] -= h
    fd = (fitted.predict_polarization([plus])[0] - fitted.predict_polarization([minus])[0]) / (2 * h)
    assert np.abs(fd - z[3, :, 1]).max() <= 1e-6 * np.abs(z).max()
    # learned part obeys the acoustic sum rule exactly
    learned = z - np.array([CHARGES[n] for n in atoms.numbers])[:, None, None] * np.eye(3)
    assert np.abs(learned.sum(axis=0)).max() < 1e-12 * np.abs(learned).max() * len(atoms)


def test_pdot_routes_agree(fitted, known):
    frames = known[3]
    velocities = np.random.default_rng(4).normal(scale=0.01, size=(len(frames), len(frames[0]), 3))
    velocities[1] = 0.0
    z = fitted.predict_born_charges(frames)
    exact = np.einsum("fjab,fjb->fa", z, velocities)
    analytic = fitted.predict_pdot(frames, velocities, method="analytic")
    central = fitted.predict_pdot(frames, velocities, batch_size=2)
    np.testing.assert_allclose(analytic, exact, atol=1e-13)
    np.testing.assert_allclose(central, exact, atol=1e-7 * np.abs(exact).max())
    with pytest.raises(InputError, match="velocities"):
        fitted.predict_pdot(frames, velocities[:, :3])


def test_uncertainty_and_sparse_basis(known):
    _, _, train, test, (born, _), _ = known
    noisy = [z + np.random.default_rng(k).normal(scale=0.02, size=z.shape) for k, z in enumerate(born)]
    model = PolarizationModel(SETTINGS, kind="dipole", basis="sparse", n_sparse=10).fit(train, noisy)
    assert model.metrics["n_parameters"] <= 2 * 3 * 10
    assert set(model.references) == {8, 40} and model.references[8].shape == (10, 3, model._space.density.n_per_species)
    sigma = model.uncertainty(test + [fluorite(200, rattle=0.4)])
    assert np.all(sigma > 0) and sigma[-1] > sigma[:-1].max()  # far from the training rattle -> less certain


def test_save_load_round_trip_bit_identical(tmp_path, fitted, known):
    test = known[3]
    path = tmp_path / "model"
    fitted.save(path)
    loaded = PolarizationModel.load(path)
    assert path.exists() and loaded.species == [8, 40] and loaded.metrics == fitted.metrics
    np.testing.assert_array_equal(loaded.predict_polarization(test), fitted.predict_polarization(test))
    np.testing.assert_array_equal(loaded.predict_born_charges(test), fitted.predict_born_charges(test))
    np.testing.assert_array_equal(loaded.uncertainty(test[:1]), fitted.uncertainty(test[:1]))


def test_errors(tmp_path, fitted, known, monkeypatch):
    with pytest.raises(ModelError, match="species"):
        fitted.predict_polarization([water_dimer()])
    with pytest.raises(ModelError, match="not fitted"):
        PolarizationModel().predict_polarization([fluorite()])
    path = tmp_path / "old"
    monkeypatch.setattr(pm, "FORMAT_VERSION", 99)
    fitted.save(path)
    monkeypatch.undo()
    with pytest.raises(ModelError, match="format version 99"):
        PolarizationModel.load(path)
    (tmp_path / "junk").write_text("not a model")
    with pytest.raises(ModelError, match="not an aiida-irspec"):
        PolarizationModel.load(tmp_path / "junk")
    train, (born, _) = known[2], known[4]
    with pytest.raises(InputError, match="sum to"):
        PolarizationModel(SETTINGS, baseline={"Zr": 4, "O": -1}).fit(train[:2], born[:2])
    with pytest.raises(InputError, match="Born charges"):
        PolarizationModel(SETTINGS).fit(train[:2], [born[0], born[1][:3]])


def test_molecule_baseline_chosen_by_validation():
    space = FeatureSpace(SETTINGS, [1, 8])
    weights = np.random.default_rng(5).normal(scale=0.3, size=(space.n_species, space.n_per_species))
    frames = [water_dimer(seed, rattle=0.08) for seed in range(12)]
    mean = {1: 0.3, 8: -0.6}
    born, _ = synthetic(frames, space, weights, mean)
    model = PolarizationModel(SETTINGS, kind="dipole", regularization=1e-10).fit(frames, born)
    names = [choice["baseline"] for choice in model.metrics["baseline_selection"]]
    assert set(names) >= {"zero", "mean"}
    errors = {choice["baseline"]: choice["cv_rmse"] for choice in model.metrics["baseline_selection"]}
    assert model.metrics["baseline"] == min(errors, key=errors.get)
    assert abs(sum(model.charges[z] for z in frames[0].numbers)) < 1e-12


@pytest.mark.parametrize("derived", [0, 1, 2])
def test_normal_equation_groups_and_weights(derived):
    """Per-group metrics and weighted fold totals equal direct computations, whichever group's A^T A is derived
    from the total; the sums are symmetric, also when rows are added after they were read."""
    rng = np.random.default_rng(6)
    blocks = [(rng.normal(size=(7, 4)), rng.normal(size=7), k % 2, k % 3) for k in range(9)]
    normal = NormalEquations(4, n_folds=2, n_groups=3, derived_group=derived)
    weight = {0: 1.0, 1: 1.0, 2: 10.0}
    for a, y, fold, group in blocks[:-1]:
        normal.add(a, y, fold=fold, group=group, weight=weight[group])
    normal.total()
    a, y, fold, group = blocks[-1]
    normal.add(a, y, fold=fold, group=group, weight=weight[group])
    ata = normal.total()[0]
    np.testing.assert_array_equal(ata, ata.T)
    np.testing.assert_allclose(ata, sum(weight[g] * a.T @ a for a, _, _, g in blocks), rtol=1e-12)
    w = rng.normal(size=4)
    for g in range(3):
        rows = [(a, y) for a, y, _, group in blocks if group == g]
        residual = np.concatenate([y - a @ w for a, y in rows])
        assert np.isclose(normal.group_rmse(w)[g], np.sqrt(np.mean(residual**2)))
    ata, aty, _, rows = normal.total(exclude=0)
    direct = sum(weight[g] * a.T @ a for a, _, fold, g in blocks if fold == 1)
    np.testing.assert_allclose(ata, direct, rtol=1e-12)
    np.testing.assert_allclose(aty, sum(weight[g] * a.T @ y for a, y, fold, g in blocks if fold == 1), rtol=1e-12)
    assert rows == sum(len(y) for _, y, fold, _ in blocks if fold == 1)
    with pytest.raises(InputError, match="weight"):
        normal.add(blocks[0][0], blocks[0][1], group=2, weight=1.0)

"""Exactness of the lambda = 1 descriptors: equivariance, derivatives, invariances, sum rule."""

import dataclasses

import numpy as np
import pytest
from model_structures import fluorite, rotated, water_dimer

from aiida_irspec.exceptions import InputError, ModelError
from aiida_irspec.model.coupling import real_spherical_harmonics, vector_coupling
from aiida_irspec.model.descriptors import DescriptorSettings, FeatureSpace, structure_descriptors

SETTINGS = DescriptorSettings(cutoff=3.6, n_radial=3, l_max=3, gaussian_width=0.4, body_order=3)


@pytest.fixture(scope="module", params=[("periodic", 3, 1, 1), ("molecule", 3, 1, 1), ("periodic", 4, 1, 1),
                                        ("molecule", 4, 1, 1), ("periodic", 4, 2, 2), ("molecule", 4, 3, 1)],
                ids=lambda param: f"{param[0]}-body{param[1]}" + (f"-degree{param[2]}-radial{param[3]}"
                                                                  if param[2:] != (1, 1) else ""))
def case(request):
    """(atoms, FeatureSpace) of a fluorite cell or a water dimer, with 2+3-body features or also the products
    with the modulators (linear, or polynomials of degree 2 and 3 in one or two radial channels of each species)."""
    structure, body_order, degree, radial = request.param
    atoms = fluorite() if structure == "periodic" else water_dimer()
    settings = dataclasses.replace(SETTINGS, body_order=body_order)
    return atoms, FeatureSpace(settings, sorted(set(atoms.numbers)), multipliers=(radial, degree))


def test_coupling_only_polar_and_matches_featomic_harmonics():
    """Gaunt coefficients vanish unless |l1-l2| = 1, and featomic's expansion uses our real harmonics."""
    import ase
    from featomic import SphericalExpansion
    from featomic.basis import Gto, TensorProduct
    from featomic.cutoff import Cutoff, ShiftedCosine
    from featomic.density import Gaussian

    with pytest.raises(ValueError):
        vector_coupling(2, 2)
    assert np.abs(vector_coupling(1, 2)).max() > 0.1
    direction = np.array([0.3, -1.2, 0.8])
    calculator = SphericalExpansion(cutoff=Cutoff(radius=4, smoothing=ShiftedCosine(width=0.5)),
                                    density=Gaussian(width=0.3),
                                    basis=TensorProduct(max_angular=4, radial=Gto(max_radial=1)))
    tensor = calculator.compute(ase.Atoms("HO", positions=[[0, 0, 0], direction]))
    for l in range(5):
        values = tensor.block(o3_lambda=l, center_type=1, neighbor_type=8).values[0, :, 0]
        ratio = values / real_spherical_harmonics(l, direction / np.linalg.norm(direction))
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)


def test_rotation_equivariance(case):
    atoms, space = case
    p, z = space.polarization_design(atoms), space.born_charge_design(atoms)
    for seed in range(3):
        turned, matrix = rotated(atoms, seed)
        p_rot, z_rot = space.polarization_design(turned), space.born_charge_design(turned)
        np.testing.assert_allclose(p_rot, matrix @ p, atol=1e-10 * np.abs(p).max())
        expected = np.einsum("ac,jcdk,bd->jabk", matrix, z, matrix)
        np.testing.assert_allclose(z_rot, expected, atol=1e-10 * np.abs(z).max())


def test_born_charge_design_is_derivative_of_polarization_design(case):
    atoms, space = case
    z = space.born_charge_design(atoms)
    h = 1e-4
    for j in (0, len(atoms) - 1):
        for b in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[j, b] += h
            minus.positions[j, b] -= h
            fd = (space.polarization_design(plus) - space.polarization_design(minus)) / (2 * h)
            assert np.abs(fd - z[j, :, b]).max() <= 1e-6 * np.abs(z).max()


def test_translation_permutation_and_sum_rule(case):
    atoms, space = case
    p, z = space.polarization_design(atoms), space.born_charge_design(atoms)
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.3, 2.2])
    np.testing.assert_allclose(space.polarization_design(moved), p, atol=1e-12 * np.abs(p).max())
    # swap two atoms of one species: P unchanged, Z rows follow the atoms
    first, second = np.nonzero(atoms.numbers == atoms.numbers[-1])[0][[0, -1]]
    order = np.arange(len(atoms))
    order[[first, second]] = order[[second, first]]
    swapped = atoms[order]
    np.testing.assert_allclose(space.polarization_design(swapped), p, atol=1e-12 * np.abs(p).max())
    np.testing.assert_allclose(space.born_charge_design(swapped), z[order], atol=1e-12 * np.abs(z).max())
    # acoustic sum rule of the learned part, column by column
    assert np.abs(z.sum(axis=0)).max() <= 1e-12 * np.abs(z).max()


def test_same_species_two_body_columns_vanish(case):
    """Unmodulated 2-body columns of equal centre and neighbour species vanish; their modulated copies do not
    (the two atoms of a pair carry different modulators)."""
    atoms, space = case
    zero = space.structural_zero_columns()
    assert zero.sum() == space.n_species * SETTINGS.n_radial
    p, z = space.polarization_design(atoms), space.born_charge_design(atoms)
    assert np.abs(p[:, zero]).max() <= 1e-13 * np.abs(p).max()
    assert np.abs(z[..., zero]).max() <= 1e-13 * np.abs(z).max()
    labels = space.column_labels()
    assert len(labels) == space.n_columns
    modulated = np.array([bool(multiplier) and zc == z1 and z2 < 0 for zc, multiplier, _, _, z1, _, z2, _ in labels])
    assert modulated.sum() == space.n_modulators * zero.sum()
    if space.n_modulators:
        assert np.abs(z[..., modulated]).max() > 1e-3 * np.abs(z).max()


def test_contracted_predictions_equal_design_times_weights(case):
    atoms, space = case
    weights = np.random.default_rng(1).normal(size=(space.n_species, space.n_per_species))
    expansion = space.expand(atoms, gradients=True)
    z = space.born_charge_design(atoms, expansion) @ weights.ravel()
    np.testing.assert_allclose(space.born_charges(atoms, weights, expansion), z, atol=1e-12 * np.abs(z).max())
    p = space.polarization_design(atoms) @ weights.ravel()
    np.testing.assert_allclose(space.polarization(atoms, weights), p, atol=1e-12 * np.abs(p).max())


def test_batched_expansion_equals_single():
    frames = [fluorite(seed) for seed in range(3)]
    space = FeatureSpace(SETTINGS, [8, 40])
    for single, (c, g) in zip(frames, space.expand_many(frames, gradients=True)):
        c1, g1 = space.expand(single, gradients=True)
        np.testing.assert_array_equal(g.pairs, g1.pairs)
        for l in range(SETTINGS.l_max + 1):
            np.testing.assert_array_equal(c[l], c1[l])
            np.testing.assert_array_equal(g.neighbour[l], g1.neighbour[l])
            np.testing.assert_array_equal(g.own[l], g1.own[l])


@pytest.mark.parametrize("gradients", [False, True], ids=["P", "Z"])
def test_expansions_do_not_leak(gradients):
    """Memory stays flat over many expansions (a long trajectory streamed through): the resident memory grows by
    less than 8 MB over 400 expansions of a 12-atom cell after a warm-up. Reading featomic's blocks through
    metatensor's Labels without freeing them grew it by about 35 kB an expansion with gradients here."""
    import psutil

    space = FeatureSpace(DescriptorSettings(n_radial=3, l_max=3), [8, 40])
    frames = [fluorite(seed) for seed in range(4)]
    process = psutil.Process()
    for k in range(450):
        space.expand_many([frames[k % 4]], gradients)
        if k == 49:
            start = process.memory_info().rss
    assert process.memory_info().rss - start < 8e6


def test_gradients_of_neighbours_in_their_species_channels_sum_to_minus_the_centre_gradient(case):
    """Translation invariance, d c[i] / d x_i = -sum_{j != i} d c[i] / d x_j, with each neighbour's gradient kept
    in its own species' channels only: a neighbour's gradient in another species' channels would break the sum."""
    atoms, space = case
    c, gradients = space.expand(atoms, gradients=True)
    index = space.species_index(atoms)
    centres, moved = gradients.pairs.T
    assert np.all(centres != moved) and len(gradients.pairs) > len(atoms)
    for l, (neighbour, own) in enumerate(zip(gradients.neighbour, gradients.own)):
        total = np.zeros((len(atoms), 2 * l + 1, 3, space.n_species, space.settings.n_radial))
        np.add.at(total, (centres, slice(None), slice(None), index[moved]), neighbour)
        np.testing.assert_allclose(total.reshape(own.shape), -own, atol=1e-12 * np.abs(own).max())


def test_structure_descriptors_invariant_and_errors():
    frames = [fluorite(0), fluorite(1)]
    d = structure_descriptors(frames, SETTINGS)
    turned = structure_descriptors([rotated(frames[0], 5)[0]], SETTINGS)
    assert d.shape[0] == 2 and np.abs(d[0] - d[1]).max() > 0
    np.testing.assert_allclose(turned[0], d[0], rtol=1e-10, atol=1e-14)
    with pytest.raises(ModelError, match="species"):
        FeatureSpace(SETTINGS, [8, 40]).expand(water_dimer())
    with pytest.raises(InputError):
        DescriptorSettings(cutoff=-1)

"""Selection of configurations from a pool (pure numpy): farthest point, uncertainty, random."""

import numpy as np
import pytest

from aiida_irspec.campaign.selection import choose, farthest_point, most_uncertain, random_choice, standardise
from aiida_irspec.exceptions import InputError


def clusters(seed=0):
    """Three tight, well-separated clusters of 20 points in 4 dimensions; labels (60,)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]], dtype=float)
    labels = np.repeat(np.arange(3), 20)
    return centres[labels] + 0.1 * rng.normal(size=(60, 4)), labels


def test_farthest_point_covers_every_cluster_first():
    points, labels = clusters()
    picks = farthest_point(points, 3)
    assert sorted(labels[picks]) == [0, 1, 2]
    # with cluster 0 and 1 already covered, the first new pick is in cluster 2
    covered = [0, 25]
    assert labels[farthest_point(points, 1, selected=covered)[0]] == 2


def test_farthest_point_never_rechooses_among_identical_rows():
    # a pool of repeated frames: every distance is 0, and the already chosen rows must still not come back
    points = np.repeat(np.eye(3), 4, axis=0)
    picks = farthest_point(points, 10, selected=[0, 4])
    assert sorted(picks) == sorted(set(range(12)) - {0, 4})


def test_farthest_point_is_greedy_max_min():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(40, 3))
    picks = farthest_point(points, 6, selected=[5])
    chosen = [5]
    for pick in picks:
        distance = np.min(np.linalg.norm(points[:, None] - points[chosen][None], axis=2), axis=1)
        distance[chosen] = -1
        assert np.isclose(distance[pick], distance.max())
        chosen.append(pick)
    assert len(set(chosen)) == 7


def test_uncertainty_prefers_uncertain_but_stays_diverse():
    points, labels = clusters()
    uncertainty = np.where(labels == 1, 1.0, 0.1)
    picks = most_uncertain(uncertainty, points, 3, selected=[0])
    assert labels[picks[0]] == 1
    # the batch does not fill up with neighbours of the first pick: cluster 2 (far, less uncertain) comes next
    assert labels[picks[1]] == 2
    assert len(set(picks)) == 3 and 0 not in picks


def test_uncertainty_zero_everywhere_still_returns_distinct_new_picks():
    points, _ = clusters()
    picks = most_uncertain(np.zeros(60), points, 5, selected=[1, 2])
    assert len(set(picks)) == 5 and not {1, 2} & set(picks)


def test_random_is_reproducible_and_excludes_selected():
    a = random_choice(50, 10, selected=range(10), seed=4)
    b = random_choice(50, 10, selected=range(10), seed=4)
    assert np.array_equal(a, b) and a.min() >= 10 and len(set(a)) == 10
    assert not np.array_equal(a, random_choice(50, 10, selected=range(10), seed=5))


def test_choose_dispatch_and_errors():
    points, _ = clusters()
    assert np.array_equal(choose("farthest_point", 3, n_pool=60, descriptors=points),
                          farthest_point(standardise(points), 3))
    assert np.allclose(standardise(points).std(axis=0), 1.0)
    assert np.array_equal(choose("random", 3, n_pool=60, seed=1), random_choice(60, 3, seed=1))
    with pytest.raises(InputError, match="unknown selection strategy 'best'"):
        choose("best", 3, n_pool=60, descriptors=points)
    with pytest.raises(InputError, match="needs the descriptors"):
        choose("farthest_point", 3, n_pool=60)
    with pytest.raises(InputError, match="needs the model's uncertainty"):
        choose("uncertainty", 3, n_pool=60, descriptors=points)
    with pytest.raises(InputError, match="cannot choose 59"):
        farthest_point(points, 59, selected=[0, 1])
    with pytest.raises(InputError, match="must lie in"):
        farthest_point(points, 1, selected=[60])
    with pytest.raises(InputError, match="non-negative"):
        most_uncertain(-np.ones(60), points, 1)

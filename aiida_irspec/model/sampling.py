"""Greedy farthest-point sampling of rows of a descriptor matrix (pure numpy).

Used for the sparse reference environments of the model and for choosing configurations from an MD pool
(:mod:`aiida_irspec.campaign.selection`). Distances are Euclidean.
"""

import numpy as np

from aiida_irspec.exceptions import InputError


def check_selection(n_pool, k, selected):
    """The chosen-before indices as a sorted array; InputError when k or an index does not fit the pool."""
    selected = np.unique(np.asarray(list(selected), dtype=int))
    if selected.size and (selected.min() < 0 or selected.max() >= n_pool):
        raise InputError(f"already-selected indices must lie in [0, {n_pool}), got {selected.min()}..{selected.max()}")
    if int(k) != k or k < 1:
        raise InputError(f"the number of configurations to choose must be a positive integer, got {k}")
    if k > n_pool - selected.size:
        raise InputError(f"cannot choose {k} configurations: the pool has {n_pool}, of which "
                         f"{selected.size} are already chosen")
    return selected


def distances_to(descriptors, indices):
    """(F,) Euclidean distance of each row to the nearest of the rows ``indices`` (inf when there are none)."""
    distance = np.full(len(descriptors), np.inf)
    for index in indices:
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[index], axis=1))
    return distance


def standardise(descriptors):
    """Columns divided by their standard deviation over the rows (constant columns left as they are), so
    that no descriptor component dominates the distances by its scale alone."""
    descriptors = np.asarray(descriptors, dtype=float)
    spread = descriptors.std(axis=0)
    return descriptors / np.where(spread > 0, spread, 1.0)


def farthest_point(descriptors, k, selected=()):
    """Greedy farthest-point sampling: each pick is the row farthest from everything chosen so far.

    :param descriptors: (F, D) array, one row per configuration.
    :param k: how many to choose.
    :param selected: indices chosen before (not chosen again). With none, the first pick is the row
        farthest from the mean of the pool (deterministic).
    :returns: (k,) int array of new indices, in the order picked.
    """
    descriptors = np.asarray(descriptors, dtype=float)
    selected = check_selection(len(descriptors), k, selected)
    if selected.size:
        distance = distances_to(descriptors, selected)
        distance[selected] = -np.inf  # never again, even when an unchosen row is identical (distance 0 too)
    else:
        distance = np.linalg.norm(descriptors - descriptors.mean(axis=0), axis=1)
    picks = []
    for _ in range(int(k)):
        pick = int(np.argmax(distance))
        picks.append(pick)
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[pick], axis=1))
        distance[pick] = -np.inf  # never twice, even among identical rows
    return np.array(picks, dtype=int)

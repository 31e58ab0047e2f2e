"""Choosing k configurations from a pool: farthest-point sampling, model uncertainty, or at random.

Pure numpy (no AiiDA). The pool is described by one invariant descriptor row per configuration
(``aiida_irspec.model.descriptors.structure_descriptors``: (F, D)); distances are Euclidean in that
space. Configurations already chosen (``selected``, e.g. the current training set) are never chosen
again and count as "covered" for the distance-based rules.
"""

import numpy as np

from aiida_irspec.exceptions import InputError

STRATEGIES = ("farthest_point", "uncertainty", "random")


def _check(n_pool, k, selected):
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


def _distances_to(descriptors, indices):
    """(F,) Euclidean distance of each row to the nearest of the rows ``indices`` (inf when there are none)."""
    distance = np.full(len(descriptors), np.inf)
    for index in indices:
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[index], axis=1))
    return distance


def farthest_point(descriptors, k, selected=()):
    """Greedy farthest-point sampling: each pick is the row farthest from everything chosen so far.

    :param descriptors: (F, D) array, one row per configuration.
    :param k: how many to choose.
    :param selected: indices chosen before (not chosen again). With none, the first pick is the row
        farthest from the mean of the pool (deterministic).
    :returns: (k,) int array of new indices, in the order picked.
    """
    descriptors = np.asarray(descriptors, dtype=float)
    selected = _check(len(descriptors), k, selected)
    if selected.size:
        distance = _distances_to(descriptors, selected)
    else:
        distance = np.linalg.norm(descriptors - descriptors.mean(axis=0), axis=1)
    picks = []
    for _ in range(int(k)):
        pick = int(np.argmax(distance))
        picks.append(pick)
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[pick], axis=1))
        distance[pick] = -np.inf  # never twice, even among identical rows
    return np.array(picks, dtype=int)


def most_uncertain(uncertainty, descriptors, k, selected=()):
    """Greedy batch by model uncertainty, kept diverse by the distance to what is already chosen.

    Each pick maximises ``uncertainty_i * d_i``, with ``d_i`` the descriptor distance of configuration i to
    the nearest configuration chosen before or earlier in this batch (1 for all when nothing is chosen
    yet). Within a batch the model is not refitted, so without the distance factor neighbouring MD frames
    of one uncertain region would fill the batch.

    :param uncertainty: (F,) predictive standard deviation of each configuration (>= 0).
    :param descriptors: (F, D) array.
    :returns: (k,) int array of new indices, in the order picked.
    """
    uncertainty = np.asarray(uncertainty, dtype=float)
    descriptors = np.asarray(descriptors, dtype=float)
    if uncertainty.shape != (len(descriptors),) or not np.all(np.isfinite(uncertainty)) or np.any(uncertainty < 0):
        raise InputError(f"uncertainty must be a finite, non-negative ({len(descriptors)},) array, "
                         f"got shape {uncertainty.shape}")
    selected = _check(len(descriptors), k, selected)
    distance = _distances_to(descriptors, selected) if selected.size else np.ones(len(descriptors))
    distance[selected] = -np.inf
    picks = []
    for _ in range(int(k)):
        pick = int(np.argmax(np.where(distance >= 0, uncertainty * distance, -np.inf)))
        picks.append(pick)
        distance = np.minimum(distance, np.linalg.norm(descriptors - descriptors[pick], axis=1))
        distance[pick] = -np.inf
    return np.array(picks, dtype=int)


def random_choice(n_pool, k, selected=(), seed=0):
    """k distinct indices drawn uniformly from the pool minus ``selected`` (reproducible for a seed)."""
    selected = _check(n_pool, k, selected)
    available = np.setdiff1d(np.arange(n_pool), selected)
    return np.sort(np.random.default_rng(seed).choice(available, size=int(k), replace=False))


def standardise(descriptors):
    """Columns divided by their standard deviation over the rows (constant columns left as they are), so
    that no descriptor component dominates the distances by its scale alone."""
    descriptors = np.asarray(descriptors, dtype=float)
    spread = descriptors.std(axis=0)
    return descriptors / np.where(spread > 0, spread, 1.0)


def choose(strategy, k, *, n_pool, descriptors=None, uncertainty=None, selected=(), seed=0):
    """Dispatch on ``strategy`` (one of :data:`STRATEGIES`); returns (k,) int indices into a pool of ``n_pool``.

    "farthest_point" needs ``descriptors`` (n_pool, D), which are standardised (:func:`standardise`) before
    measuring distances; "uncertainty" needs them and ``uncertainty`` (n_pool,); "random" needs neither and
    uses ``seed``.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown selection strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy == "random":
        return random_choice(n_pool, k, selected, seed)
    if descriptors is None or len(descriptors) != n_pool:
        raise InputError(f"strategy {strategy!r} needs the descriptors of the {n_pool} configurations of the pool")
    if strategy == "farthest_point":
        return farthest_point(standardise(descriptors), k, selected)
    if uncertainty is None:
        raise InputError("strategy 'uncertainty' needs the model's uncertainty on the pool")
    return most_uncertain(uncertainty, standardise(descriptors), k, selected)

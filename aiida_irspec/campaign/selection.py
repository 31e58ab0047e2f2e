"""Choosing k configurations from a pool: farthest-point sampling, model uncertainty, or at random.

Pure numpy (no AiiDA). The pool is described by one invariant descriptor row per configuration
(``aiida_irspec.model.descriptors.structure_descriptors``: (F, D)); distances are Euclidean in that
space. Configurations already chosen (``selected``, e.g. the current training set) are never chosen
again and count as "covered" for the distance-based rules.
"""

import numpy as np

from aiida_irspec.exceptions import InputError
from aiida_irspec.model.sampling import check_selection, distances_to, farthest_point, standardise

STRATEGIES = ("farthest_point", "uncertainty", "random")


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
    selected = check_selection(len(descriptors), k, selected)
    distance = distances_to(descriptors, selected) if selected.size else np.ones(len(descriptors))
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
    selected = check_selection(n_pool, k, selected)
    available = np.setdiff1d(np.arange(n_pool), selected)
    return np.sort(np.random.default_rng(seed).choice(available, size=int(k), replace=False))


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

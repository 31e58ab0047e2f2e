"""calcfunction ``select_configurations``: k frames of a TrajectoryData pool, by farthest point, uncertainty or at
random."""

from aiida import orm

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.polarization_model import PolarizationModelData


@versioned_calcfunction
def select_configurations(pool: orm.TrajectoryData, settings: orm.Dict, candidates: orm.List | None = None,
                          exclude: orm.List | None = None, model: PolarizationModelData | None = None):
    """Choose ``settings["number"]`` frames of ``pool`` (:func:`aiida_irspec.campaign.selection.choose`).

    settings: ``number`` (int), ``strategy`` ("farthest_point", "uncertainty", "random"), ``seed`` (int,
    random only) and ``descriptor`` (dict of :class:`~aiida_irspec.model.descriptors.DescriptorSettings`,
    the space in which distances are measured; the model's own settings when a model is given).
    candidates: frame indices that may be chosen (default: all). exclude: frame indices chosen before
    (e.g. the training set): never chosen again, and count as covered. model: needed for "uncertainty".

    Returns ``indices`` (List of frame indices, in the order chosen) and one StructureData per chosen frame
    as ``frame_<index>``.
    """
    import numpy as np

    from aiida_irspec.campaign.selection import choose
    from aiida_irspec.data.frames import frame_structure, trajectory_frames
    from aiida_irspec.model.descriptors import DescriptorSettings, structure_descriptors

    settings = settings.get_dict()
    candidates = list(range(pool.numsteps)) if candidates is None else [int(i) for i in candidates.get_list()]
    exclude = [] if exclude is None else [int(i) for i in exclude.get_list()]
    universe = sorted(set(candidates) | set(exclude))
    position = {frame: k for k, frame in enumerate(universe)}
    covered = [position[frame] for frame in exclude]
    frames = trajectory_frames(pool, universe)

    descriptors = uncertainty = None
    fitted = model.get_model() if model is not None else None
    if settings["strategy"] != "random":
        descriptor = (fitted.descriptor if fitted is not None
                      else DescriptorSettings(**settings.get("descriptor", {})))
        descriptors = structure_descriptors(frames, descriptor)
    if settings["strategy"] == "uncertainty":
        uncertainty = np.asarray(fitted.uncertainty(frames), dtype=float)
    picks = choose(settings["strategy"], settings["number"], n_pool=len(universe), descriptors=descriptors,
                   uncertainty=uncertainty, selected=covered, seed=settings.get("seed", 0))
    chosen = [universe[int(k)] for k in picks]
    outputs = {"indices": orm.List(chosen)}
    outputs.update({f"frame_{frame}": frame_structure(pool, frame) for frame in chosen})
    return outputs

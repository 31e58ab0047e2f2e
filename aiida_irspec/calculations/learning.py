"""calcfunctions of the active-learning loop: the model's uncertainty on the pool, and the loop's history."""

from aiida import orm

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.polarization_model import PolarizationModelData


@versioned_calcfunction
def pool_uncertainty(model: PolarizationModelData, pool: orm.TrajectoryData,
                     candidates: orm.List | None = None) -> orm.Dict:
    """The model's predictive standard deviation of Z (|e|) over the pool's candidate frames.

    Returns ``rms``, ``mean``, ``max`` (|e|), ``argmax`` (frame index) and ``n_frames``.
    """
    import numpy as np

    from aiida_irspec.data.frames import trajectory_frames

    frames = None if candidates is None else candidates.get_list()
    uncertainty = np.asarray(model.get_model().uncertainty(trajectory_frames(pool, frames)), dtype=float)
    indices = list(range(pool.numsteps)) if frames is None else frames
    return orm.Dict({"rms": float(np.sqrt(np.mean(uncertainty ** 2))), "mean": float(uncertainty.mean()),
                     "max": float(uncertainty.max()), "argmax": int(indices[int(np.argmax(uncertainty))]),
                     "n_frames": len(indices)})


@versioned_calcfunction
def learning_history(log: orm.Dict, **iterations) -> orm.Dict:
    """The history of an active-learning loop, one row per fit.

    log: ``{"rows": [{iteration, batch (frame indices), attempted, failed, error}], "holdout": [...],
    "target_error", "converged", "stop_reason"}`` as kept by the WorkChain. iterations: namespaces
    ``models`` and (optional) ``uncertainty`` keyed ``iteration_<k>``: the model fitted in iteration k and its
    pool-uncertainty summary. Each row gains, from those nodes, ``training_set_size``, ``holdout_rmse``
    (|e|, validation RMSE of Z), ``cv_rmse`` and ``uncertainty_rms`` (|e|) and ``model_uuid``.
    """
    history = log.get_dict()
    models = iterations.get("models", {})
    uncertainty = iterations.get("uncertainty", {})
    for row in history["rows"]:
        key = f"iteration_{row['iteration']}"
        model = models[key]
        validation = model.metrics.get("validation", {}).get("born_charges_rmse", {}).get("all")
        row.update(training_set_size=model.training_set_size, holdout_rmse=validation,
                   cv_rmse=model.metrics.get("cv_rmse"), model_uuid=model.uuid,
                   uncertainty_rms=uncertainty[key]["rms"] if key in uncertainty else None)
    return orm.Dict(history)

"""calcfunction ``fit_polarization_model``: reference structures + Born charges (+ P) -> PolarizationModelData."""

from aiida import orm

from aiida_irspec.calculations.versioned import versioned_calcfunction
from aiida_irspec.data.polarization_model import PolarizationModelData

MODEL_KEYS = ("kind", "baseline", "basis", "n_sparse", "regularization", "n_folds")


def reference_frames(structures, born_charges):
    """Matched keys of two namespaces -> (keys, list of ase.Atoms, list of (N, 3, 3) Born charges)."""
    from aiida_irspec.exceptions import InputError

    if set(structures) != set(born_charges):
        raise InputError(f"structures and born_charges must have the same keys; only in structures: "
                         f"{sorted(set(structures) - set(born_charges))}, only in born_charges: "
                         f"{sorted(set(born_charges) - set(structures))}")
    keys = sorted(structures)
    return keys, [born_charges[k].to_ase(structures[k]) for k in keys], [born_charges[k].born_charges for k in keys]


@versioned_calcfunction
def fit_polarization_model(settings: orm.Dict, **references) -> PolarizationModelData:
    """Fit a :class:`aiida_irspec.model.PolarizationModel` to reference Born charges (and polarizations).

    settings: ``descriptor`` (dict of DescriptorSettings), ``kind``, ``baseline``, ``basis``, ``n_sparse``,
    ``regularization``, ``n_folds`` and ``weights`` (relative row weights, e.g. {"born_charges": 1,
    "polarization": 10}); see :class:`aiida_irspec.model.PolarizationModel`.
    references, namespaces with matching keys: ``structures`` (StructureData), ``born_charges``
    (BornChargesData), optional ``polarizations`` (ArrayData ``polarization`` (3,) |e| A, per key);
    optional held-out ``holdout_structures`` + ``holdout_born_charges``, whose errors go into the output's
    ``metrics["validation"]`` and ``born_charges_rmse``.
    """
    from aiida_irspec.model import PolarizationModel
    from aiida_irspec.model.descriptors import DescriptorSettings

    settings = settings.get_dict()
    keys, frames, born_charges = reference_frames(references.get("structures", {}), references.get("born_charges", {}))
    polarizations = None
    if references.get("polarizations"):
        given = references["polarizations"]
        polarizations = [given[k].get_array("polarization") if k in given else None for k in keys]
    validation = None
    if references.get("holdout_structures"):
        _, holdout_frames, holdout_born = reference_frames(references["holdout_structures"],
                                                           references.get("holdout_born_charges", {}))
        validation = (holdout_frames, holdout_born)
    model = PolarizationModel(descriptor=DescriptorSettings(**settings.get("descriptor", {})),
                              **{key: settings[key] for key in MODEL_KEYS if key in settings})
    model.fit(frames, born_charges, polarizations, weights=settings.get("weights"), validation=validation)
    return PolarizationModelData(model)

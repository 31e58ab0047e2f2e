"""PolarizationModelData: a fitted polarization model (the file of ``PolarizationModel.save``) as an AiiDA node."""

import pathlib
import tempfile

from aiida import orm

from aiida_irspec.data.attributes import json_safe
from aiida_irspec.exceptions import InputError

FILENAME = "polarization_model.npz"


class PolarizationModelData(orm.SinglefileData):
    """A fitted :class:`aiida_irspec.model.PolarizationModel`, stored as its own file in the node repository.

    :meth:`get_model` loads it back. Attributes, for queries and reports: ``hyperparameters`` (descriptor
    settings, fitted kind, baseline, basis, n_sparse, regularization, n_folds), ``species`` (atomic numbers),
    ``baseline_charges`` (element -> |e|), ``training_set_size`` (structures fitted), ``metrics`` (the
    fit's training, cross-validation and, when the fit had held-out structures, ``validation`` errors; Born
    charges in |e|, polarization in |e| Angstrom) and ``born_charges_rmse`` (the validation RMSE of Z over
    all atoms if there was a validation set, else the cross-validation RMSE; |e|).
    """

    def __init__(self, model, **kwargs):
        """model: a fitted PolarizationModel."""
        from aiida_irspec.model import PolarizationModel

        if not isinstance(model, PolarizationModel) or not model.is_fitted:
            raise InputError(f"PolarizationModelData needs a fitted PolarizationModel, got {model!r}")
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / FILENAME
            model.save(path)
            super().__init__(file=path, filename=FILENAME, **kwargs)
        metrics = json_safe(model.metrics)
        attributes = self.base.attributes
        attributes.set("hyperparameters", json_safe({
            "descriptor": model.descriptor.to_dict(), "kind": model.fitted_kind, "baseline": model.baseline,
            "basis": model.basis,
            "n_sparse": model.n_sparse, "regularization": model.regularization, "n_folds": model.n_folds}))
        attributes.set("species", [int(z) for z in model.species])
        attributes.set("baseline_charges", metrics.get("baseline_charges"))
        attributes.set("training_set_size", metrics.get("n_structures"))
        attributes.set("metrics", metrics)
        validation = metrics.get("validation", {}).get("born_charges_rmse", {}).get("all")
        attributes.set("born_charges_rmse", validation if validation is not None else metrics.get("cv_rmse"))

    def get_model(self):
        """The stored model, loaded as a :class:`aiida_irspec.model.PolarizationModel`."""
        from aiida_irspec.model import PolarizationModel

        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / self.filename
            path.write_bytes(self.get_content(mode="rb"))
            return PolarizationModel.load(path)

    @property
    def hyperparameters(self):
        """Descriptor settings and fit settings of the model (dict)."""
        return self.base.attributes.get("hyperparameters")

    @property
    def metrics(self):
        """The fit's errors (dict; see the class docstring)."""
        return self.base.attributes.get("metrics", {})

    @property
    def training_set_size(self):
        """Number of structures the model was fitted to."""
        return self.base.attributes.get("training_set_size")

    @property
    def born_charges_rmse(self):
        """Validation RMSE of Z (|e|) when the fit had a validation set, else the cross-validation RMSE."""
        return self.base.attributes.get("born_charges_rmse")

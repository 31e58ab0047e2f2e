"""The model settings group: which polarization model to fit, and how (no AiiDA import).

One home of the defaults of :class:`~aiida_irspec.model.polarization_model.PolarizationModel`, ``aiida-irspec
fit``, the ``model`` port of ``irspec.active_learning`` and the campaign YAML.
"""

import dataclasses

from aiida_irspec.model.descriptors import DescriptorSettings
from aiida_irspec.model.kinds import KINDS
from aiida_irspec.settings import Settings, setting

BASELINES = ("auto", "formal", "mean", "zero")
BASES = ("linear", "sparse")


def check_weights(weights):
    """A message unless ``weights`` maps born_charges / polarization to non-negative numbers."""
    for key, value in weights.items():
        if key not in ("born_charges", "polarization"):
            return f"weights: unknown key {key!r}; use born_charges and polarization"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            return f"weights.{key}: expected a number >= 0, found {value!r}"
    return None


@dataclasses.dataclass(frozen=True)
class ModelSettings(Settings):
    """The polarization model: descriptor, kind of learned part, baseline, basis, regularisation."""

    descriptor: DescriptorSettings = setting(DescriptorSettings(), "The descriptor (aiida_irspec.model.descriptors).")
    kind: str = setting("combined", "Learned part: atomic dipoles, conserved charges flowing between neighbours, "
                                  "both, both with the dipoles' features times a polynomial of the centre's "
                                  "densities, or the kind with the lowest cross-validated error.",
                        choices=KINDS + ("auto",))
    baseline: str = setting("auto", "Static charges added to the learned part; auto: formal charges for periodic "
                                    "cells, for molecules the best of zero / species mean / formal by "
                                    "cross-validation.", choices=BASELINES)
    basis: str = setting("linear", "Linear features or a sparse kernel on reference environments.", choices=BASES)
    n_sparse: int | None = setting(None, "Sparse reference environments per species (sparse basis).", minimum=1,
                                   maximum=100000)
    regularization: float | str = setting("evidence", "Ridge parameter (standardised units), or how to choose it: "
                                                      "Bayesian evidence (also gives the uncertainty) or "
                                                      "cross-validation.", minimum=0, exclusive_minimum=True,
                                          also=("evidence", "cv"))
    n_folds: int = setting(5, "Cross-validation folds (kind auto, baseline auto, regularization cv).", minimum=2,
                           maximum=1000)
    weights: dict = setting({}, "Relative weights of the Born-charge and polarization rows, e.g. "
                                "{born_charges: 1, polarization: 10}; empty: the model's.", check=check_weights)

    def model_kwargs(self):
        """Keyword arguments of PolarizationModel (all but the fit weights)."""
        return {"descriptor": self.descriptor, "kind": self.kind, "baseline": self.baseline, "basis": self.basis,
                "n_sparse": self.n_sparse, "regularization": self.regularization, "n_folds": self.n_folds}

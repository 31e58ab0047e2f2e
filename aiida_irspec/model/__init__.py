"""Polarization models learned from Born effective charges (no AiiDA import).

:class:`PolarizationModel` predicts the polarization P, the Born charges Z and dP/dt of structures from
lambda = 1 equivariant 2- and 3-body descriptors (:mod:`.descriptors`) on top of fixed baseline charges
(:mod:`.baseline`), fitted by regularised least squares from streamed normal equations (:mod:`.solver`).
"""

from aiida_irspec.model.descriptors import DescriptorSettings, FeatureSpace, structure_descriptors
from aiida_irspec.model.polarization_model import PolarizationModel

__all__ = ["DescriptorSettings", "FeatureSpace", "PolarizationModel", "structure_descriptors"]

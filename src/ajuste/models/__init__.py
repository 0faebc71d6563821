"""Models: the families behind one interface, their settings, and the registry that names them."""

from __future__ import annotations

from ajuste.models.base import Family, TrainingDefaults, count_parameters
from ajuste.models.settings import BagSettings, FamilySettings, GPTSettings, PretrainedSettings

from ajuste.models.registry import FAMILIES, REGISTRY, ModelSettings, Registration, make_family  # isort: skip

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "BagSettings",
    "Family",
    "FamilySettings",
    "GPTSettings",
    "ModelSettings",
    "PretrainedSettings",
    "Registration",
    "TrainingDefaults",
    "count_parameters",
    "make_family",
]

"""Models: the families behind one interface, their settings, and the registry that names them.

The settings and the registry import no PyTorch; the families do, when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajuste.lazy import lazy_attributes
from ajuste.models.settings import BagSettings, FamilySettings, GPTSettings, PretrainedSettings

from ajuste.models.registry import FAMILIES, REGISTRY, ModelSettings, Registration, make_family  # isort: skip

if TYPE_CHECKING:
    from ajuste.models.base import Family, TrainingDefaults, count_parameters

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


#: The family interface imports PyTorch: only when it is used.
__getattr__ = lazy_attributes(__name__, {"ajuste.models.base": ("Family", "TrainingDefaults", "count_parameters")})

"""Models: the three families behind one interface, and their settings."""

from __future__ import annotations

from ajuste.models.bag import BagFamily
from ajuste.models.base import Family, TrainingDefaults, count_parameters
from ajuste.models.gpt import GPTFamily
from ajuste.models.pretrained import PretrainedFamily
from ajuste.models.settings import BagSettings, GPTSettings, ModelSettings, PretrainedSettings

__all__ = [
    "BagSettings",
    "Family",
    "GPTSettings",
    "ModelSettings",
    "PretrainedSettings",
    "TrainingDefaults",
    "count_parameters",
    "make_family",
]

AnyModelSettings = BagSettings | GPTSettings | PretrainedSettings


def make_family(settings: AnyModelSettings) -> Family:
    """The family object for validated model settings."""
    if isinstance(settings, BagSettings):
        return BagFamily(settings)
    if isinstance(settings, GPTSettings):
        return GPTFamily(settings)
    return PretrainedFamily(settings)

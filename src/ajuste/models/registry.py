"""The model families, each declared once: name, settings class, model class, default search space.

Everything that lists families — the command line's choices, settings validation, the search space,
``ajuste tune``'s default families, ``ajuste.build`` — derives it from :data:`REGISTRY`. Adding a family
is one new module (its settings, its :class:`~ajuste.models.base.Family`, its default space) plus one
line here.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from ajuste.errors import ConfigError
from ajuste.models.settings import (
    BagSettings,
    FamilySettings,
    GPTSettings,
    LinearSettings,
    PretrainedSettings,
    StaticSettings,
)

if TYPE_CHECKING:
    from ajuste.models.base import Family

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "AnyModelSettings",
    "ModelSettings",
    "Registration",
    "default_families",
    "families_with",
    "is_named_family",
    "make_family",
    "named_families",
    "registration",
    "student_families",
]


@dataclass(frozen=True)
class Registration:
    """One model family: how it is named, configured, built and searched."""

    name: str
    settings: type[FamilySettings]
    #: The module that defines the family (its ``Family`` class and ``DEFAULT_SPACE``), imported on first
    #: use: listing the families (the command line's choices) does not import PyTorch.
    module: str
    family_class: str
    summary: str
    #: Needs a ``checkpoint`` besides its name (so ``--model NAME`` alone cannot choose it).
    needs_checkpoint: bool = False
    #: Searched by ``ajuste tune`` when no family is named.
    searched_by_default: bool = True
    #: Settings besides the defaults that are strong for text classification in general, tried early by
    #: every search of the family (each a change to the default settings; training defaults follow it).
    portfolio: tuple[Mapping[str, Any], ...] = ()
    #: A cheap model to distil a teacher into (trained by gradient descent): what ``ajuste tune
    #: --distill-from`` searches when no family is named.
    student: bool = False
    #: Its module is a bag of embeddings that predicts in NumPy, without importing PyTorch (fp32 only).
    numpy: bool = False
    #: Where its defaults come in a new study's first trials, cheapest training first: a solver's one pass (0),
    #: a bag of embeddings (1), a frozen encoder's pass computed once and a small part trained (2), a
    #: transformer trained through every layer from scratch (3). Under a time budget the strong pretrained
    #: defaults then run before the slow from-scratch one (bench_families: gpt's defaults take 1.3x and 2.5x
    #: minilm's on sms-spam and AG News).
    cost_rank: int = 0
    #: Fitted by a solver in one pass, so it learns from labels only, never from a teacher's probabilities (the
    #: family class's own ``solver``, declared here so that listing the students imports no family module).
    solver: bool = False

    def family(self, settings: FamilySettings) -> Family:
        """The family object for ``settings``."""
        family: Family = getattr(importlib.import_module(self.module), self.family_class)(settings)
        return family

    @property
    def space(self) -> Mapping[str, Any]:
        """The family's default search space."""
        space: Mapping[str, Any] = importlib.import_module(self.module).DEFAULT_SPACE
        return space


REGISTRY: tuple[Registration, ...] = (
    Registration(
        "linear",
        LinearSettings,
        "ajuste.models.linear",
        "LinearFamily",
        "TF-IDF + linear classifier",
        # Word and character n-grams with a linear SVM: the strongest of the classic TF-IDF baselines
        # (character n-grams survive misspellings and rare word forms; hinge loss with calibration).
        portfolio=({"model.classifier": "svm", "model.analyzer": "word+char"},),
        solver=True,
    ),
    Registration(
        "bag",
        BagSettings,
        "ajuste.models.bag",
        "BagFamily",
        "fastText-style bag of embeddings",
        student=True,
        numpy=True,
        cost_rank=1,
    ),
    Registration(
        "static",
        StaticSettings,
        "ajuste.models.static",
        "StaticFamily",
        "a pretrained encoder's piece vectors, averaged",
        # Searched only when named: it needs an encoder's pass over the training texts first (a search of the
        # default families has minilm for that knowledge), and as a student a teacher with an encoder, which a
        # `bag` or `gpt` teacher has not (`tune --distill-from T --model static` names it).
        searched_by_default=False,
        numpy=True,
        cost_rank=2,
    ),
    Registration(
        "gpt",
        GPTSettings,
        "ajuste.models.gpt",
        "GPTFamily",
        "GPT-style transformer trained from scratch",
        student=True,
        cost_rank=3,
    ),
    Registration(
        "minilm",
        PretrainedSettings,
        "ajuste.models.pretrained",
        "PretrainedFamily",
        "bundled all-MiniLM-L6-v2",
        # Fine-tuning every layer is the standard recipe for encoders (BERT's own paper): slower, usually best.
        portfolio=({"model.trainable": "all"},),
        cost_rank=2,
    ),
    Registration(
        "pretrained",
        PretrainedSettings,
        "ajuste.models.pretrained",
        "PretrainedFamily",
        "any checkpoint folder or hub id",
        needs_checkpoint=True,
        searched_by_default=False,
        portfolio=({"model.trainable": "all"},),
        cost_rank=2,
    ),
)
FAMILIES: dict[str, Registration] = {entry.name: entry for entry in REGISTRY}

if TYPE_CHECKING:
    AnyModelSettings = FamilySettings
    ModelSettings = FamilySettings
else:
    #: The settings classes of the registry, validated by their ``family`` field.
    AnyModelSettings = Union[tuple(dict.fromkeys(entry.settings for entry in REGISTRY))]  # noqa: UP007
    ModelSettings = Annotated[AnyModelSettings, Field(discriminator="family")]


def named_families() -> tuple[str, ...]:
    """Families chosen by their name alone (``--model bag``), not by a checkpoint."""
    return tuple(entry.name for entry in REGISTRY if not entry.needs_checkpoint)


def default_families() -> list[str]:
    return [entry.name for entry in REGISTRY if entry.searched_by_default]


def student_families() -> list[str]:
    return [entry.name for entry in REGISTRY if entry.student]


def is_named_family(name: object) -> bool:
    return isinstance(name, str) and name in FAMILIES and not FAMILIES[name].needs_checkpoint


def registration(name: str) -> Registration:
    """The family called ``name``; an unknown name is refused with the closest known one."""
    if name in FAMILIES:
        return FAMILIES[name]
    guess = difflib.get_close_matches(name, list(FAMILIES), n=1)
    raise ConfigError(
        f"unknown model family '{name}'",
        expected=", ".join(FAMILIES),
        fix=f"Did you mean '{guess[0]}'?" if guess else None,
    )


def make_family(settings: FamilySettings) -> Family:
    """The family object for validated model settings."""
    return registration(settings.family).family(settings)


def families_with(setting: str) -> tuple[str, ...]:
    """The families whose settings have ``setting`` (a command-line flag applies to those only)."""
    return tuple(entry.name for entry in REGISTRY if setting in entry.settings.model_fields)

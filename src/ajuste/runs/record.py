"""The typed content of a run folder's files: ``run.yaml`` (settings + what happened) and ``tune.json``.

One shape, written and read by the same classes, so a record written in one shape and read in another is
a type error, not a bug found later. ``run.yaml`` keeps the settings at its top level (``data``, ``model``,
``train``, ``seed``, ``out``), so that ``ajuste train --config RUN/run.yaml`` reproduces a run, and adds
``ajuste`` (library versions) and ``record`` (what happened, with every access to the test split).
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ajuste.config import RunConfig

__all__ = [
    "CrossValidationRecord",
    "DistillRecord",
    "EnsembleMember",
    "EnsembleRecord",
    "ExportRecord",
    "RescoreRecord",
    "RescoredTrial",
    "RunFile",
    "RunRecord",
    "SearchInfo",
    "SearchRecord",
    "TestAccess",
    "environment",
    "now",
]


def now() -> str:
    """The time of an event, as recorded: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, str]:
    """Library versions and platform, recorded in every run.yaml."""
    import torch

    from ajuste import __version__

    versions = {"ajuste": __version__, "python": platform.python_version(), "torch": str(torch.__version__)}
    for name in ("transformers", "tokenizers", "peft"):
        try:
            versions[name] = str(__import__(name).__version__)
        except ImportError:
            continue
    versions["platform"] = platform.platform()
    return versions


class _Record(BaseModel):
    # Unknown keys are kept, not refused: a newer ajuste may record more, and an older one must still
    # read the folder (and write it back without losing them).
    model_config = ConfigDict(extra="allow")


class TestAccess(_Record):
    """One evaluation of the test split: the protocol allows one per final model."""

    __test__ = False  # not a pytest test class, whatever its name

    split: Literal["test"] = "test"
    at: str = Field(default_factory=now)
    texts: int
    purpose: str


class EnsembleMember(_Record):
    """One member of a final ensemble: its trial, settings, weight, and its validation loss on its own."""

    trial: int
    weight: float
    settings: dict[str, Any]
    val_loss: float
    epochs: int | None = None


class EnsembleRecord(_Record):
    """How a search's final ensemble was chosen, and how it compares with the single best trial on validation.

    ``candidates`` are the trials it was chosen from: a resumed search whose choice gives the same members and
    weights (for the same ``size``) keeps the ensemble already tested rather than touch the test split again."""

    size: int
    candidates: list[int]
    members: list[EnsembleMember]
    chosen_by: str
    #: Validation metrics (accuracy, macro_f1, loss) of the best trial's model alone and of the ensemble, both
    #: trained on the training split (what the members were chosen with).
    single_best: dict[str, float]
    ensemble: dict[str, float]

    @property
    def averages(self) -> bool:
        """Whether the final model averages several trials' models (the selection may keep the best trial's alone)."""
        return len(self.members) > 1


class CrossValidationRecord(_Record):
    """How a trial scored under ``--cv K``: each fold's validation score, their mean and spread (population
    standard deviation), and each fold's best epoch. In run.yaml, the best trial's."""

    folds: int
    scores: list[float]
    mean: float
    std: float
    best_epochs: list[int]


class RescoredTrial(_Record):
    """One of the best trials scored again under ``--rescore N``: its score in the search, and on the folds."""

    trial: int
    value: float | None
    cv: CrossValidationRecord
    #: The folds' mean validation loss (what breaks ties between equal fold means).
    loss: float | None = None


class RescoreRecord(_Record):
    """How ``--rescore N`` chose the final trial: the candidates, each scored on the same folds, and the choice."""

    size: int
    folds: int
    candidates: list[RescoredTrial]
    chosen: int
    chosen_by: str


class SearchRecord(_Record):
    """What a search found, in run.yaml's record of a tuning run."""

    study: str
    metric: str
    direction: Literal["minimize", "maximize"]
    sampler: str
    pruner: str
    fingerprint: str
    trials: dict[str, int]
    best_trial: int
    best_value: float | None
    best_params: dict[str, Any]
    importances: dict[str, float] = Field(default_factory=dict)
    chosen_by: str | None = None
    refit: str
    how: str
    epochs: int | None = None
    ensemble: EnsembleRecord | None = None
    cv: CrossValidationRecord | None = None
    rescore: RescoreRecord | None = None


class ExportRecord(_Record):
    """How an exported run was made from its source run (which keeps the PyTorch weights)."""

    source: str
    format: Literal["onnx"]
    quantize: str | None = None
    at: str = Field(default_factory=now)
    opset: int
    checked_texts: int
    max_probability_difference: float
    same_labels: int


class DistillRecord(_Record):
    """How a distilled run was made: its teacher (and the teacher's recorded accuracy), and the texts it learnt on."""

    teacher: str
    teacher_family: str
    teacher_val_accuracy: float | None = None
    teacher_test_accuracy: float | None = None
    labelled_texts: int
    augmented_texts: int
    unlabeled_texts: int
    unlabeled_left_out: int = 0
    teacher_cached: bool
    teacher_seconds: float


class RunRecord(_Record):
    """What happened in a run: when, how long, the data report, the model, and every test access."""

    created: str = Field(default_factory=now)
    seconds: float
    data: dict[str, Any]
    model: dict[str, Any]
    best_epoch: int | None = None
    epochs_run: int | None = None
    test_accesses: list[TestAccess] = Field(default_factory=list)
    search: SearchRecord | None = None
    export: ExportRecord | None = None
    distillation: DistillRecord | None = None


class RunFile(BaseModel):
    """``run.yaml``: the resolved settings at the top level, then library versions and the record."""

    model_config = ConfigDict(extra="forbid")

    config: RunConfig
    ajuste: dict[str, str] = Field(default_factory=environment)
    record: RunRecord

    def to_data(self) -> dict[str, Any]:
        settings = self.config.model_dump(mode="json")
        if settings.get("distill") is None:  # a run without a teacher: no distill section at all
            settings.pop("distill", None)
        return {
            **settings,
            "ajuste": self.ajuste,
            "record": self.record.model_dump(mode="json", exclude_none=True),
        }

    @classmethod
    def from_data(cls, content: dict[str, Any]) -> RunFile:
        settings = {k: v for k, v in content.items() if k not in ("ajuste", "record")}
        return cls.model_validate(
            {"config": settings, "ajuste": content.get("ajuste") or {}, "record": content["record"]}
        )


class SearchInfo(BaseModel):
    """``tune.json``: which search a tuning folder holds and where its study lives.

    ``storage`` is set only for a shared database (a URL); unset, the study is ``study.db`` in the run
    folder itself, wherever the folder is now: a moved folder resumes where it is, a copied one never
    writes into the original.
    """

    model_config = ConfigDict(extra="allow")

    fingerprint: str
    study: str
    storage: str | None = None
    metric: str
    direction: Literal["minimize", "maximize"]
    sampler: str
    pruner: str
    data: str | None = None
    created: str = Field(default_factory=now)

"""Settings of the training stage: what ``compile`` and ``fit`` take, and the two together."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ajuste.fields import Settings

__all__ = [
    "DESCENT_SETTINGS",
    "MAX_SEED",
    "METRICS",
    "CompileSettings",
    "DistillSettings",
    "FitSettings",
    "TrainSettings",
    "unused_by_solver",
]

METRICS = ("accuracy", "macro_f1")
#: The largest seed that every random generator a run seeds takes (NumPy's RandomState, in Optuna's samplers).
MAX_SEED = 2**32 - 1


class CompileSettings(Settings):
    """Optimizer, learning-rate schedule, loss and metrics: what ``compile`` configures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="Optimizer.")
    lr: float | None = Field(None, gt=0, le=10, description="Peak learning rate; unset: the family's default.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="Decoupled weight decay (L2 for sgd).")
    scheduler: Literal["constant", "linear", "cosine"] = Field(
        "linear", description="Learning-rate decay after warmup."
    )
    warmup: float = Field(0.0, ge=0, lt=1, description="Fraction of the training steps spent warming up.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm; unset: no clipping.")
    metrics: tuple[str, ...] = Field(METRICS, description="Metrics reported per epoch.")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {', '.join(unknown)}; known: {', '.join(METRICS)}")
        return value


class FitSettings(Settings):
    """Epochs, batches and early stopping: what ``fit`` takes besides the data and the seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int | None = Field(
        None, ge=1, le=10_000, description="Passes over the training split; unset: family default."
    )
    batch_size: int | None = Field(None, ge=1, le=65_536, description="Texts per batch; unset: family default.")
    grad_accum: int = Field(1, ge=1, le=1024, description="Batches whose gradients add up before a step.")
    early_stopping: int | None = Field(
        None, ge=1, description="Stop after this many epochs without improvement of `monitor`; unset: never."
    )
    monitor: Literal["val_loss", "val_accuracy", "val_macro_f1"] = Field(
        "val_loss", description="Validation metric that early stopping and restore_best follow."
    )
    restore_best: bool = Field(True, description="End with the weights of the best validation epoch.")


class TrainSettings(CompileSettings, FitSettings):
    """Everything about training in one object: the ``train:`` section of a run configuration."""

    subset: int | None = Field(
        None,
        ge=1,
        description="Train on this many of the training texts, every class in proportion, drawn with the seed "
        "(validation and test unchanged); unset: every training text.",
    )

    def compile_settings(self) -> CompileSettings:
        return CompileSettings(**{k: getattr(self, k) for k in CompileSettings.model_fields})

    def fit_settings(self) -> FitSettings:
        return FitSettings(**{k: getattr(self, k) for k in FitSettings.model_fields})


#: What a gradient descent's schedule takes and a family fitted by a solver in one pass does not use (its
#: batch size only groups the texts whose features are computed together).
DESCENT_SETTINGS = (
    "optimizer",
    "lr",
    "weight_decay",
    "scheduler",
    "warmup",
    "label_smoothing",
    "max_grad_norm",
    "grad_accum",
    "early_stopping",
    "monitor",
    "restore_best",
)


def unused_by_solver(train: TrainSettings) -> list[str]:
    """The settings of ``train`` that ask a gradient descent for something (away from their defaults, or more than
    one epoch): a family fitted by a solver in one pass would ignore them."""
    defaults = TrainSettings()
    epochs = ["epochs"] if train.epochs not in (None, 1) else []
    return epochs + [name for name in DESCENT_SETTINGS if getattr(train, name) != getattr(defaults, name)]


class DistillSettings(Settings):
    """How a student learns from a teacher run: the ``distill:`` section of a distilled run's run.yaml.

    The defaults are the common ones of the literature, not tuned to a dataset: a temperature of 2 softens the
    teacher's probabilities enough to show which wrong classes it finds plausible (Hinton et al., 2015, used
    1–20), and ``alpha`` 0.5 weighs the true labels as much as the teacher where both exist, so that a teacher's
    mistakes on the training texts are not copied whole.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: str = Field(description="The teacher's run folder (written by `ajuste train` or `ajuste tune`).")
    temperature: float = Field(2.0, gt=0, le=100, description="Softening of both models' probabilities.")
    alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the true label against the teacher, on texts that have one."
    )
    augment: int = Field(
        0, ge=0, le=100, description="Augmented copies of each training text, labelled by the teacher alone."
    )
    unlabeled: str | None = Field(
        None, description="A file of texts without labels (one per line, or a column): labelled by the teacher."
    )
    unlabeled_col: str | None = Field(None, description="Column of the texts in `unlabeled` (guessed when obvious).")

    @model_validator(mode="after")
    def _column_of_a_file(self) -> DistillSettings:
        if self.unlabeled_col is not None and self.unlabeled is None:
            raise ValueError("unlabeled_col names a column of the unlabeled file, and no unlabeled file is given")
        return self

"""Training: compile, fit, evaluate and predict, through one loop for every family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajuste.lazy import lazy_attributes

if TYPE_CHECKING:
    from ajuste.training.callbacks import Callback, EarlyStopping, History, ProgressBar
    from ajuste.training.classifier import TextClassifier, load_model
    from ajuste.training.distillation import TeacherTargets
    from ajuste.training.light import Predictions
    from ajuste.training.settings import CompileSettings, DistillSettings, FitSettings, TrainSettings

__all__ = [
    "Callback",
    "CompileSettings",
    "DistillSettings",
    "EarlyStopping",
    "FitSettings",
    "History",
    "Predictions",
    "ProgressBar",
    "TeacherTargets",
    "TextClassifier",
    "TrainSettings",
    "load_model",
]

#: Imported on first use: PyTorch only for what needs it.
__getattr__ = lazy_attributes(
    __name__,
    {
        "ajuste.training.callbacks": ("Callback", "EarlyStopping", "History", "ProgressBar"),
        "ajuste.training.classifier": ("TextClassifier", "load_model"),
        "ajuste.training.light": ("Predictions",),
        "ajuste.training.distillation": ("TeacherTargets",),
        "ajuste.training.settings": ("CompileSettings", "DistillSettings", "FitSettings", "TrainSettings"),
    },
)

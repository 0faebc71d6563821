"""Training: compile, fit, evaluate and predict, through one loop for every family."""

from ajuste.training.callbacks import Callback, EarlyStopping, History, ProgressBar
from ajuste.training.classifier import Predictions, TextClassifier, load_model
from ajuste.training.settings import CompileSettings, FitSettings, TrainSettings

__all__ = [
    "Callback",
    "CompileSettings",
    "EarlyStopping",
    "FitSettings",
    "History",
    "Predictions",
    "ProgressBar",
    "TextClassifier",
    "TrainSettings",
    "load_model",
]

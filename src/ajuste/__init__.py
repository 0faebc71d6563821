"""ajuste: from a file of labelled texts to a tested text classifier, and the hyperparameters that make it best.

The six steps, from Python::

    import ajuste

    data = ajuste.load_data(ajuste.DataSettings(dataset="sms-spam"))          # prepare
    model = ajuste.build("bag", embed_dim=64)                                 # build
    model.compile(optimizer="adamw", lr=5e-3)                                 # compile
    history = model.fit(data.train, validation_data=data.val, epochs=10)      # fit
    model.evaluate(data.test)                                                 # evaluate
    model.predict(["WINNER! Claim your free prize now"])                      # predict

and the search: ``ajuste.tune("sms-spam", model="bag", trials=30)`` (see :func:`ajuste.search.tune.tune`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ajuste.errors import (  # light: the errors are what `except ajuste.ConfigError` needs
    AjusteError,
    ConfigError,
    DataError,
    ModelError,
    NotFittedError,
    RunFolderError,
    SearchError,
    TrainingError,
)
from ajuste.lazy import lazy_attributes

if TYPE_CHECKING:
    from ajuste.config import RunConfig
    from ajuste.data import DataSettings, PreparedData, TextDataset, load_data
    from ajuste.models import BagSettings, GPTSettings, PretrainedSettings
    from ajuste.runs.distill import DistillResult, distill
    from ajuste.runs.folder import load
    from ajuste.runs.train import RunResult, train
    from ajuste.training import (
        Callback,
        CompileSettings,
        DistillSettings,
        EarlyStopping,
        FitSettings,
        History,
        Predictions,
        TextClassifier,
        TrainSettings,
    )

__version__ = "0.1.0"

__all__ = [
    "AjusteError",
    "BagSettings",
    "Callback",
    "CompileSettings",
    "ConfigError",
    "DataError",
    "DataSettings",
    "DistillResult",
    "DistillSettings",
    "EarlyStopping",
    "FitSettings",
    "GPTSettings",
    "History",
    "ModelError",
    "NotFittedError",
    "Predictions",
    "PreparedData",
    "PretrainedSettings",
    "RunConfig",
    "RunFolderError",
    "RunResult",
    "SearchError",
    "TextClassifier",
    "TextDataset",
    "TrainSettings",
    "TrainingError",
    "build",
    "distill",
    "load",
    "load_data",
    "train",
    "tune",
]


#: Each public name imported on first use, so that ``import ajuste`` (and a command that needs no PyTorch, as
#: predicting with a bag model) stays light.
__getattr__ = lazy_attributes(
    __name__,
    {
        "ajuste.config": ("RunConfig",),
        "ajuste.data": ("DataSettings", "PreparedData", "TextDataset", "load_data"),
        "ajuste.models": ("BagSettings", "GPTSettings", "PretrainedSettings"),
        "ajuste.runs.distill": ("DistillResult", "distill"),
        "ajuste.runs.folder": ("load",),
        "ajuste.runs.train": ("RunResult", "train"),
        "ajuste.search.tune": ("TuneResult", "tune"),
        "ajuste.training": (
            "Callback",
            "CompileSettings",
            "DistillSettings",
            "EarlyStopping",
            "FitSettings",
            "History",
            "Predictions",
            "TextClassifier",
            "TrainSettings",
        ),
    },
    submodules=True,
)


def build(model: str | os.PathLike[str] = "bag", **architecture: Any) -> TextClassifier:
    """A new, untrained classifier: ``model`` is a family (linear, bag, gpt, minilm) or a checkpoint folder / hub id.

    ``architecture`` takes that family's settings, e.g. ``build("gpt", num_layers=2, emb_dim=128)`` or
    ``build("minilm", trainable="last_block")``. Everything is validated now; weights come in ``fit``.
    """
    from ajuste.models.pretrained import check_checkpoint
    from ajuste.models.registry import FAMILIES
    from ajuste.training import TextClassifier
    from ajuste.validation import model_settings

    if isinstance(model, os.PathLike):  # a checkpoint folder given as a pathlib.Path
        model = os.fspath(model)
    if not isinstance(model, str) or not model:
        from ajuste.models.settings import FamilySettings

        settings_object = isinstance(model, FamilySettings)
        raise ConfigError(
            "build takes a family name or a checkpoint",
            expected="one of " + ", ".join(f for f in FAMILIES if f != "pretrained") + ", or a checkpoint folder",
            found=type(model).__name__ if model != "" else "an empty name",
            fix="Pass the settings object to TextClassifier(settings) instead." if settings_object else None,
        )
    if "family" in architecture and architecture["family"] != (model if model in FAMILIES else "pretrained"):
        raise ConfigError(
            f"build({model!r}) was also given family={architecture['family']!r}",
            fix="Give the family once, as build's first argument.",
        )
    if model in FAMILIES:
        values = {"family": model, **architecture}
    else:
        values = {"family": "pretrained", "checkpoint": model, **architecture}
    settings = model_settings(values)
    check_checkpoint(settings)  # a checkpoint that does not load is refused here, not in fit
    return TextClassifier(settings)

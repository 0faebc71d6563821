"""What predicting needs before, or instead of, PyTorch: the model folder's config, and a NumPy bag model.

``model/config.json`` is read and checked here (format, runtime, labels, settings), for every model. For the
``bag`` and ``static`` families the forward pass is the mean of a few embedding rows and one matrix product:
:class:`NumpyBag` computes it in NumPy from the same files (``vocabulary.json``, ``model.safetensors``, and a
static model's ``tokenizer.json``), so that ``ajuste predict RUN "text"`` on such a run answers without importing
PyTorch, which alone takes about a second.
``tests/test_light.py`` holds it to the PyTorch model's probabilities.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from ajuste.errors import ConfigError, RunFolderError, first_line
from ajuste.models.files import ONNX_FILE, WEIGHTS_FILE
from ajuste.texts import valid_text

__all__ = [
    "ENSEMBLE_RUNTIME",
    "FORMAT",
    "FORMAT_VERSION",
    "MEMBERS_DIR",
    "MODEL_CONFIG",
    "ONNX_RUNTIME",
    "NumpyBag",
    "Predictions",
    "is_model_folder",
    "light_model",
    "read_model_config",
    "text_items",
]

MODEL_CONFIG = "config.json"
FORMAT = "ajuste-model"
FORMAT_VERSION = 1
#: ``config.json``'s ``runtime`` for an exported model (a PyTorch model folder has none).
ONNX_RUNTIME = "onnx"
#: ``config.json``'s ``runtime`` for an ensemble: no weights of its own, its members in ``members/<i>/``.
ENSEMBLE_RUNTIME = "ensemble"
MEMBERS_DIR = "members"
RUNTIMES = (None, ONNX_RUNTIME, ENSEMBLE_RUNTIME)


@dataclass(frozen=True)
class Predictions:
    """Predicted labels and class probabilities, in the order of the input texts."""

    labels: list[str]
    probabilities: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[str]:
        """The predicted labels, as ``for label in model.predict(texts)`` reads them."""
        return iter(self.labels)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Predictions: ...
    def __getitem__(self, index: int | slice) -> str | Predictions:
        """The label of one text, or the predictions of a slice of them."""
        if isinstance(index, slice):
            return Predictions(self.labels[index], self.probabilities[index], self.classes)
        return self.labels[index]

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per text: ``label`` and ``probabilities`` by class."""
        return [
            {"label": label, "probabilities": {c: float(p) for c, p in zip(self.classes, row)}}
            for label, row in zip(self.labels, self.probabilities)
        ]

    @classmethod
    def of(cls, probabilities: np.ndarray, classes: Sequence[str]) -> Predictions:
        """The most probable class of each row, with the probabilities."""
        labels = [classes[i] for i in probabilities.argmax(axis=1)] if len(probabilities) else []
        return cls(labels, probabilities, list(classes))


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a model written by ajuste (its config names the format; any version)."""
    try:
        config = json.loads((folder / MODEL_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def read_model_config(folder: Path) -> dict[str, Any]:
    """``model/config.json``, checked: written by this version, its weights present, labels and settings."""
    config_file = folder / MODEL_CONFIG
    if not config_file.is_file():
        raise RunFolderError(
            f"{folder} is not a model folder",
            expected=f"{config_file}",
            fix="Point at a folder written by `ajuste train` or TextClassifier.save().",
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(
            f"{config_file} is not valid JSON",
            found=first_line(exc),
            fix="The model folder is damaged: train again, or restore it from a copy.",
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        found = (
            config if not isinstance(config, dict) else f"{config.get('format')} version {config.get('format_version')}"
        )
        raise RunFolderError(
            f"{folder} was not written by this version of ajuste",
            expected=f"format {FORMAT} version {FORMAT_VERSION}",
            found=str(found)[:120],
            fix="Use the ajuste version that wrote it (run.yaml's `ajuste` section names it), or train again; a "
            "damaged folder can be restored from a copy.",
        )
    runtime = config.get("runtime")
    if runtime not in RUNTIMES:
        raise RunFolderError(
            f"{config_file} names an unknown runtime", expected="none, onnx or ensemble", found=repr(runtime)
        )
    if runtime == ENSEMBLE_RUNTIME:
        return _ensemble_config(folder, config)
    weights = ONNX_FILE if runtime == ONNX_RUNTIME else WEIGHTS_FILE
    if not (folder / weights).is_file():
        raise RunFolderError(
            f"run folder {folder} is incomplete",
            expected=weights,
            found="no weights file",
            fix=f"{'Export' if runtime else 'Train'} again: the run was not written completely.",
        )
    labels, settings = config.get("labels"), config.get("settings")
    if not _distinct_labels(labels) or not isinstance(settings, dict):
        found = f"labels {str(labels)[:80]}" if not _distinct_labels(labels) else f"settings {str(settings)[:80]}"
        raise RunFolderError(
            f"{config_file} is damaged",
            expected="settings and at least two labels, each once",
            found=found,
            fix="Train again, or restore the run folder from a copy.",
        )
    return config


def _distinct_labels(labels: Any) -> bool:
    """Whether a config's labels are a list of two classes or more, none twice (a class twice splits its
    probability between two columns of which only the first can ever be its answer)."""
    return isinstance(labels, list) and len(labels) >= 2 and len({str(label) for label in labels}) == len(labels)


def _ensemble_config(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """An ensemble's config, checked: its labels, and one positive weight per member folder (named by its index,
    never by a path the file gives), the weights summing to one. The members themselves are checked as they load."""
    config_file = folder / MODEL_CONFIG
    labels, members = config.get("labels"), config.get("members")
    if not _distinct_labels(labels) or not isinstance(members, list) or not members:
        raise RunFolderError(
            f"{config_file} is damaged",
            expected="at least two labels, each once, and a list of members",
            fix="Tune again, or restore the run folder from a copy.",
        )
    weights: list[Any] = [m.get("weight") if isinstance(m, dict) else None for m in members]
    valid = all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w <= 1 for w in weights)
    if not valid or abs(sum(weights) - 1) > 1e-6:
        raise RunFolderError(
            f"{config_file} is damaged",
            expected="one weight in (0, 1] per member, summing to 1",
            found=str(weights)[:120],
            fix="Tune again, or restore the run folder from a copy.",
        )
    missing = [str(i) for i in range(len(members)) if not (folder / MEMBERS_DIR / str(i) / MODEL_CONFIG).is_file()]
    if missing:
        raise RunFolderError(
            f"run folder {folder} is incomplete",
            expected=f"{len(members)} member folders {MEMBERS_DIR}/0..{len(members) - 1} with {MODEL_CONFIG}",
            found=f"no {MODEL_CONFIG} in {', '.join(f'{MEMBERS_DIR}/{i}' for i in missing)}",
            fix="Tune again, or restore the run folder from a copy.",
        )
    return config


def _damaged(path: Path, what: str, exc: Exception) -> RunFolderError:
    return RunFolderError(
        f"{what} {path} is damaged or belongs to another model",
        found=first_line(exc),
        fix="Train again, or restore the run folder from a copy.",
    )


class NumpyBag:
    """A trained ``bag`` model computed in NumPy: mean of the text's embedding rows, then the linear layer."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from ajuste.tokenize.pieces import TOKENIZER_FILE, PieceVocabulary
        from ajuste.tokenize.words import WordVocabulary

        self.classes_ = [str(label) for label in config["labels"]]
        self.max_length: int | None = config["settings"].get("max_length")
        self.vocabulary: WordVocabulary | PieceVocabulary
        try:
            entries = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
            pieces = isinstance(entries, dict) and entries.get("kind") == "pieces"  # a static model: its encoder's
            # tokenizer, beside it
            if not pieces:
                self.vocabulary = WordVocabulary.from_dict(entries)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _damaged(folder / "vocabulary.json", "the vocabulary file", exc) from None
        if pieces:
            self.vocabulary = PieceVocabulary.from_file(folder / TOKENIZER_FILE)
        try:
            weights = load_file(str(folder / WEIGHTS_FILE))
            self.embedding, self.weight = weights["embedding.weight"], weights["fc.weight"]
            self.bias = weights["fc.bias"]
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            raise _damaged(folder / WEIGHTS_FILE, "the weights file", exc) from None
        width = config["settings"].get("embed_dim")  # a bag's; a static model's is its encoder's
        if (
            self.embedding.shape != (self.vocabulary.size, self.weight.shape[1])
            or self.weight.shape[0] != len(self.classes_)
            or (width is not None and self.embedding.shape[1] != width)
        ):
            raise RunFolderError(
                f"the weights in {folder} do not match its settings, vocabulary and labels",
                found=f"{self.embedding.shape[0]:,} rows {self.embedding.shape[1]} wide and {self.weight.shape[0]} "
                f"classes, for {self.vocabulary.size:,} vocabulary entries, embed_dim {width} and "
                f"{len(self.classes_)} labels",
                fix="Train again, or restore the run folder from a copy.",
            )
        # The layer is linear, so the mean of the rows times the weights is the mean of each row's scores: one
        # score per class and row, computed once, and a text costs a few additions per class, whatever the width.
        self.scores = self.embedding @ self.weight.T

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, (str, bytes)):
            raise ConfigError("predict takes a list of texts", found="a single string", fix="Wrap it in a list.")
        if not hasattr(texts, "__iter__"):  # predict(None): "'NoneType' object is not iterable"
            raise ConfigError("predict takes a list of texts", found=type(texts).__name__)
        encoded = self.vocabulary.encode_batch(text_items(texts, "predict"))
        bags = [ids[: self.max_length or None] for ids in encoded]
        lengths = np.array([len(ids) for ids in bags], dtype=np.int64)
        means = np.zeros((len(bags), self.scores.shape[1]), dtype=np.float32)
        filled = lengths > 0  # an empty bag is zeros, as in EmbeddingBag
        if filled.any():
            flat = np.fromiter((i for ids in bags for i in ids), dtype=np.int64, count=int(lengths.sum()))
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
            means[filled] = np.add.reduceat(self.scores[flat], starts, axis=0) / lengths[filled, None]
        logits = means + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return probabilities

    def predict(self, texts: Sequence[str], batch_size: int | None = None, **_: Any) -> Predictions:
        check_batch_size(batch_size)  # all texts at once, but a wrong size is still refused
        return Predictions.of(self.predict_proba(texts), self.classes_)


def text_items(values: Iterable[object], what: str) -> list[str]:
    """The items of ``values`` as texts for a model: a missing one (None, NaN) is empty, a number its digits; a
    list, mapping or bytes is refused with a ConfigError naming its row (its ``str`` would be read as words)."""
    texts = []
    for row, value in enumerate(values):
        if isinstance(value, float) and value != value:  # NaN: pandas' and NumPy's missing text
            value = None
        elif not isinstance(value, (str, numbers.Number)) and value is not None:  # NumPy's numbers too
            bytes_like = isinstance(value, (bytes, bytearray))
            raise ConfigError(
                f"{what}: text {row} is {'bytes' if bytes_like else 'a ' + type(value).__name__}, not a text",
                found=repr(value)[:60],
                fix="Decode it first (value.decode('utf-8'))." if bytes_like else "Give each text as a string.",
            )
        texts.append(valid_text(value))
    return texts


def check_batch_size(batch_size: int | None) -> int | None:
    """A prediction's batch size, or None for the model's default; ConfigError below 1."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(
            "the batch size must be at least 1",
            found=str(batch_size),
            fix="Give a positive batch size ([[--batch-size N||batch_size=N]]), or none.",
        )
    return batch_size


def light_model(folder: Path, precision: str | None = None) -> NumpyBag | None:
    """The model of ``folder`` computed without PyTorch where its family allows it (``bag`` in fp32), else None."""
    config = read_model_config(folder)
    if config.get("runtime") is not None:
        return None
    settings = config["settings"]
    from ajuste.models.registry import FAMILIES

    entry = FAMILIES.get(str(settings.get("family")))
    if entry is None or not entry.numpy:
        return None
    if (precision or settings.get("precision") or "fp32") != "fp32":
        return None
    return NumpyBag(folder, config)

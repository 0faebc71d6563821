"""A model folder exported to ONNX, used like any trained classifier: ``predict``, ``evaluate``, ``describe``.

The folder is the one :meth:`TextClassifier.write_model` writes, with ``model.onnx`` in place of the
safetensors weights and ``"runtime": "onnx"`` in its ``config.json``; the family's own preprocessing files
(vocabulary, tokenizer) sit beside it and turn texts into the graph's inputs exactly as in training. ONNX
Runtime computes the logits on the CPU; everything after them (probabilities, metrics) is shared with
PyTorch models, so both report the same numbers the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ajuste.errors import ConfigError, NotFittedError, RunFolderError
from ajuste.models import Family
from ajuste.runtime import physical_cores
from ajuste.tokenize.batching import sorted_batches, token_batches
from ajuste.training.classifier import TextClassifier
from ajuste.training.light import ONNX_RUNTIME

__all__ = ["OnnxClassifier", "onnx_session"]

log = logging.getLogger(__name__)

#: Padded tokens per batch: ONNX Runtime on the CPU is fastest on smaller batches than PyTorch (a sweep by hand
#: of 256 to 4,096 tokens, MiniLM int8 on sms-spam, 2 cores: 512 was fastest, 4,096 about 12% slower).
TOKENS_PER_BATCH = 512


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session on the CPU, one thread per physical core; a damaged file is a RunFolderError."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            f"{path.parent} holds an ONNX model, and ONNX Runtime is not installed",
            fix='Install it: pip install "ajuste[onnx]".',
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = physical_cores()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...) for a bad file
        raise RunFolderError(
            f"the ONNX model {path} is damaged or not a model",
            found=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            fix="Export the run again with `ajuste export`.",
        ) from None


class OnnxClassifier(TextClassifier):
    """A trained classifier whose logits ONNX Runtime computes; it predicts and evaluates, never trains."""

    runtime = ONNX_RUNTIME

    def __init__(self, classifier: TextClassifier, family: Family, session: Any, export: dict[str, Any]) -> None:
        super().__init__(classifier.settings, labels=classifier.labels)
        self.family_, self.classes_ = family, list(classifier.labels or [])
        self.session = session
        self.export = export
        self._inputs = [i.name for i in session.get_inputs()]

    @property
    def is_fitted(self) -> bool:
        return True

    def _require_fitted(self, action: str) -> tuple[Family, nn.Module, list[str]]:
        if action not in ("predict", "evaluate", "describe"):
            raise ConfigError(
                f"cannot {action} an exported (ONNX) model",
                fix="Use the run it was exported from: `ajuste train` and fit() work on PyTorch models.",
            )
        family, classes = self.family_, self.classes_
        if family is None or classes is None:
            raise NotFittedError(f"cannot {action}: the exported model was not opened", fix="Use ajuste.load(RUN).")
        return family, nn.Identity(), classes

    def compile(self, *args: Any, **kwargs: Any) -> TextClassifier:
        self._require_fitted("compile")
        return self

    def _logits(
        self, family: Family, module: nn.Module, texts: Sequence[str], batch_size: int | None, precision: str | None
    ) -> torch.Tensor:
        if precision is not None:
            self._precision(precision)  # still refused when unknown
            log.info("precision %s ignored: an exported model computes in the precision of its export", precision)
        sequences = family.encode(texts)
        if not sequences:
            return torch.empty(0, 0)
        lengths = [len(s) for s in sequences]
        batches = (
            sorted_batches(lengths, self._batch_size(batch_size) or 1)
            if batch_size
            else token_batches(lengths, TOKENS_PER_BATCH)
        )
        logits = np.empty((len(sequences), len(self.classes_ or [])), dtype=np.float32)
        for batch in batches:
            feed = family.export_inputs([sequences[i] for i in batch])
            logits[batch] = self.session.run(["logits"], {name: feed[name] for name in self._inputs})[0]
        return torch.from_numpy(logits)

    def write_model(self, folder: Path) -> None:
        self._require_fitted("save")

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.settings.family,
            "labels": self.classes_,
            "runtime": ONNX_RUNTIME,
            "quantize": self.export.get("quantize"),
            "parameters": self.export.get("parameters"),
            "trainable_parameters": 0,
            **(self.family_.describe() if self.family_ is not None else {}),
        }

    def __repr__(self) -> str:
        quantized = self.export.get("quantize")
        return f"OnnxClassifier(family={self.settings.family!r}{', ' + quantized if quantized else ''})"

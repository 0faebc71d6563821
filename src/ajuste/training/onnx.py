"""A model folder exported to ONNX, used like any trained classifier: ``predict``, ``evaluate``, ``describe``.

The folder is the one :meth:`TextClassifier.write_model` writes, with ``model.onnx`` in place of the
safetensors weights and ``"runtime": "onnx"`` in its ``config.json``; the family's own preprocessing files
(vocabulary, tokenizer) sit beside it and turn texts into the graph's inputs exactly as in training. ONNX
Runtime computes the logits on the CPU; everything after them (probabilities, metrics) is shared with
PyTorch models, so both report the same numbers the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ajuste.errors import ConfigError, NotFittedError, RunFolderError, first_line
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
#: Graph rewrites of ONNX Runtime's that make the model slower: its fused residual-add + layer norm
#: ("SkipLayerNormalization") is slower in an int8 MiniLM than the two operators it replaces (ONNX Runtime
#: 1.32; bench/bench_export.py measures it as an ablation).
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def onnx_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU, ``threads`` threads per call (default: one per physical core).

    A damaged file is a RunFolderError.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            f"{path.parent} holds an ONNX model, and ONNX Runtime is not installed",
            fix='Install it: pip install "ajuste[onnx]".',
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    try:
        return ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
        )
    except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...) for a bad file
        raise RunFolderError(
            f"the ONNX model {path} is damaged or not a model",
            found=first_line(exc),
            fix="Export the run again with `ajuste export`.",
        ) from None


class OnnxClassifier(TextClassifier):
    """A trained classifier whose logits ONNX Runtime computes; it predicts and evaluates, never trains.

    A call of one batch runs on ``session`` (one thread per physical core inside each operator). A call of
    several batches runs them side by side, one per core, on a second session of one thread each, made on
    first use: ONNX Runtime's operators on a few hundred tokens share out poorly between threads, whole
    batches do not need to (bench/bench_export.py measures both, as an ablation). The second session holds
    its own copy of the weights.
    """

    runtime = ONNX_RUNTIME

    def __init__(
        self, classifier: TextClassifier, family: Family, session: Any, export: dict[str, Any], path: Path
    ) -> None:
        super().__init__(classifier.settings, labels=classifier.labels)
        self.family_, self.classes_ = family, list(classifier.labels or [])
        self.session = session
        self.export = export
        self.path = path
        self.cores = physical_cores()
        self._inputs = [i.name for i in session.get_inputs()]
        width = session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.classes_):  # fixed at export: a class per logit
            raise RunFolderError(
                f"the ONNX model in {path.parent} gives {width} scores a text, and its config.json names "
                f"{len(self.classes_)} labels",
                fix="Export the run again with `ajuste export`.",
            )
        self._single: Any = None
        self._single_lock = threading.Lock()
        self._precision_told = False  # a precision asked of an exported model is said to be ignored once

    def _single_thread_session(self) -> Any:
        """The session of one thread per call that runs batches side by side (made once, on first use)."""
        with self._single_lock:
            if self._single is None:
                self._single = onnx_session(self.path, threads=1)
            return self._single

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
            level = logging.INFO if self._precision_told else logging.WARNING
            self._precision_told = True
            log.log(level, "precision %s ignored: an exported model computes in the precision of its export", precision)
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
        parallel = self.cores > 1 and len(batches) > 1
        session = self._single_thread_session() if parallel else self.session

        def run(batch: list[int]) -> None:
            feed = family.export_inputs([sequences[i] for i in batch])
            logits[batch] = session.run(["logits"], {name: feed[name] for name in self._inputs})[0]

        if parallel:
            with ThreadPoolExecutor(min(self.cores, len(batches)), thread_name_prefix="ajuste-onnx") as pool:
                list(pool.map(run, batches))  # list(): a batch's error is raised here
        else:
            for batch in batches:
                run(batch)
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

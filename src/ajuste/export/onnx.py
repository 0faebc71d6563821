"""``ajuste export RUN --format onnx [--quantize int8]``: a run folder whose model ONNX Runtime computes.

The exported folder is a run folder like any other (``predict``, ``evaluate``, ``serve`` and ``ajuste.load``
open it, choosing ONNX Runtime by themselves): the source run's metrics, history and split are copied, its
``run.yaml`` gains an ``export`` record, and ``model/`` holds the family's preprocessing files beside
``model.onnx`` (for a tuned ensemble, each member's folder in ``members/<i>/`` so, beside the ensemble's weights).
The graph takes a padded batch (batch and sequence length both dynamic): for the ``bag`` and
``linear`` families, whose PyTorch modules use ``EmbeddingBag``, the same sum is written over padded ids
(an exported ``EmbeddingBag`` is a loop over the texts). int8 is ONNX Runtime's dynamic quantization: weights
stored as int8, activations quantized per batch.

Every export is checked before it is put in place: the exported and the PyTorch model predict a fixed set of
texts (short, long, empty), and the largest difference in probability and the labels that agree are
recorded; an fp32 graph that disagrees beyond rounding is refused.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ajuste.errors import ConfigError, RunFolderError
from ajuste.models.base import count_parameters
from ajuste.models.files import ONNX_FILE, WEIGHTS_FILE
from ajuste.runs.folder import RunFolder
from ajuste.runs.record import ExportRecord, RunFile
from ajuste.training.classifier import TextClassifier
from ajuste.training.ensemble import EnsembleClassifier
from ajuste.training.light import MEMBERS_DIR, MODEL_CONFIG, ONNX_RUNTIME
from ajuste.training.onnx import OnnxClassifier

__all__ = ["CHECK_TEXTS", "FORMATS", "QUANTIZATIONS", "ExportResult", "export_run"]

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
#: ONNX operator set: 17 has LayerNormalization as one operator, and every runtime of the last years reads it.
OPSET = 17
#: The largest difference in probability between an fp32 graph and its PyTorch model that counts as rounding.
FP32_TOLERANCE = 1e-3

#: What every export is checked on: short and long texts, an empty one, repeated words, digits, other scripts.
CHECK_TEXTS = (
    "",
    "ok",
    "Hello, how are you today?",
    "WINNER!! You have been selected to receive a £900 prize reward. Call 09061701461 now to claim.",
    "The central bank raised interest rates by a quarter point on Tuesday, citing persistent inflation "
    "in services and a labour market that remains tight despite slower growth.",
    "free free free free free free free free",
    "Je serai là demain vers 10h, on se retrouve devant la gare ?",
    "数字 123 456 テスト",
    " ".join(["a long text that goes on"] * 120),
)


@dataclass
class ExportResult:
    """What ``ajuste export`` made: where, how, how big, and how closely it agrees with the PyTorch model."""

    run_dir: Path
    source: Path
    quantize: str | None
    bytes: int
    seconds: float
    record: ExportRecord

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "source": str(self.source),
            "format": "onnx",
            "quantize": self.quantize,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "checked_texts": self.record.checked_texts,
            "max_probability_difference": self.record.max_probability_difference,
            "same_labels": self.record.same_labels,
        }


def default_out(run: Path, quantize: str | None) -> Path:
    """``RUN-onnx`` or ``RUN-onnx-int8``, beside the run."""
    return run.parent / f"{run.name}-onnx{'-' + quantize if quantize else ''}"


def _check_choices(file_format: str, quantize: str | None) -> None:
    if file_format not in FORMATS:
        raise ConfigError("unknown export format", expected=" or ".join(FORMATS), found=repr(file_format))
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(
            "unknown quantization", expected=" or ".join(QUANTIZATIONS), found=repr(quantize), fix="Or leave it out."
        )


def _write_graph(classifier: TextClassifier, path: Path) -> None:
    """The classifier's module as an ONNX graph at ``path``, fp32, batch and sequence length dynamic."""
    family, module, _ = classifier._require_fitted("export")
    graph = family.export_module(module).float().eval()
    example = family.export_inputs(family.encode(["an example", "a somewhat longer example text"]))
    names = list(example)
    dynamic = {name: {0: "batch", 1: "length"} for name in names if example[name].ndim == 2}
    dynamic["logits"] = {0: "batch"}
    with warnings.catch_warnings():  # the exporter's notes on tracing (constant shapes, Python ints) are ours
        warnings.simplefilter("ignore")
        with torch.inference_mode():
            torch.onnx.export(
                graph,
                (),
                str(path),
                kwargs={name: torch.from_numpy(value) for name, value in example.items()},
                input_names=names,
                output_names=["logits"],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )


def _quantize(fp32: Path, int8: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs advice on the root logger (run its optional shape pre-processing first): not a
    # problem of the user's, whose int8 model is checked below and measured by bench/bench_export.py.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def _compare(reference: TextClassifier, exported: TextClassifier) -> tuple[float, int]:
    """The largest difference in probability and the number of equal labels over :data:`CHECK_TEXTS`."""
    expected = reference.predict_proba(list(CHECK_TEXTS), precision="fp32")
    found = exported.predict_proba(list(CHECK_TEXTS))
    difference = float(np.abs(expected - found).max())
    same = int((expected.argmax(axis=1) == found.argmax(axis=1)).sum())
    return difference, same


def _export_model(classifier: TextClassifier, source: Path, folder: Path, quantize: str | None) -> None:
    """The model of model folder ``source`` (loaded as ``classifier``) into ``folder``: the family's
    preprocessing files, the graph, and the config with its runtime and export settings."""
    for item in source.iterdir():  # the family's preprocessing files: all but the weights
        if item.name in (WEIGHTS_FILE, MODEL_CONFIG):
            continue
        copy = shutil.copytree if item.is_dir() else shutil.copyfile
        copy(item, folder / item.name)
    if quantize:
        fp32 = folder / f".fp32.{ONNX_FILE}"
        _write_graph(classifier, fp32)
        _quantize(fp32, folder / ONNX_FILE)
        fp32.unlink()
    else:
        _write_graph(classifier, folder / ONNX_FILE)
    config = json.loads((source / MODEL_CONFIG).read_text(encoding="utf-8"))
    config["runtime"] = ONNX_RUNTIME
    config["export"] = {
        "quantize": quantize,
        "opset": OPSET,
        "parameters": count_parameters(classifier._require_fitted("export")[1])[1],
    }
    (folder / MODEL_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")


def export_run(
    run: str | Path,
    out: str | Path | None = None,
    *,
    file_format: str = "onnx",
    quantize: str | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> ExportResult:
    """Export the model of run folder ``run`` to ONNX (``quantize="int8"`` for int8 weights) as a new run folder.

    ``out`` defaults to ``RUN-onnx`` (``RUN-onnx-int8``) beside the run. Returns where it went, its size, and
    how closely the exported model agrees with the PyTorch one.
    """
    started = time.perf_counter()
    _check_choices(file_format, quantize)
    source = RunFolder.open(run)
    target = RunFolder(out if out is not None else default_out(source.path, quantize))
    target.check_target(overwrite, [source.path])
    classifier = source.load(trust_remote_code=trust_remote_code)
    members = classifier.members if isinstance(classifier, EnsembleClassifier) else [classifier]
    if any(isinstance(member, OnnxClassifier) for member in members):
        raise ConfigError(
            f"{source.path} is already an exported model",
            fix="Export the run it came from (its run.yaml names it under record.export.source).",
        )
    run_file = source.read_run_file()
    if run_file is None:
        raise RunFolderError(
            f"{source.path} has no {source.run_file.name}", fix="Export a folder written by `ajuste train` or `tune`."
        )
    checked: dict[str, Any] = {}

    def write_model(folder: Path) -> None:
        if isinstance(classifier, EnsembleClassifier):
            for index, member in enumerate(members):  # each member as a model is exported; the weights as they are
                target = folder / MEMBERS_DIR / str(index)
                target.mkdir(parents=True)
                _export_model(member, source.model_dir / MEMBERS_DIR / str(index), target, quantize)
            shutil.copyfile(source.model_dir / MODEL_CONFIG, folder / MODEL_CONFIG)
        else:
            _export_model(classifier, source.model_dir, folder, quantize)
        from ajuste.training.classifier import load_model

        difference, same = _compare(classifier, load_model(folder, trust_remote_code=trust_remote_code))
        if quantize is None and difference > FP32_TOLERANCE:
            raise RunFolderError(
                "the exported graph does not compute what the model computes",
                expected=f"probabilities within {FP32_TOLERANCE} of PyTorch's",
                found=f"a difference of {difference:.3g}",
                fix="Report this as a bug, with the run's family and settings.",
            )
        checked.update(difference=difference, same=same)

    def exported_run_file() -> RunFile:
        record = run_file.record.model_copy(deep=True)
        record.export = ExportRecord(
            source=str(source.path.resolve()),
            format="onnx",
            quantize=quantize,
            opset=OPSET,
            checked_texts=len(CHECK_TEXTS),
            max_probability_difference=checked["difference"],
            same_labels=checked["same"],
        )
        checked["record"] = record.export
        return RunFile(config=run_file.config, ajuste=run_file.ajuste, record=record)

    target.write_derived(source, write_model, exported_run_file, overwrite=overwrite)
    size = sum(p.stat().st_size for p in target.model_dir.rglob("*") if p.is_file())
    return ExportResult(target.path, source.path, quantize, size, time.perf_counter() - started, checked["record"])

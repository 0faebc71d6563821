"""The teacher of a distillation: a finished run folder, its split checked, its probabilities computed once.

The teacher's probabilities of a list of texts are kept in the freeze-boundary cache (``ajuste cache``),
keyed by the teacher's model files and the exact texts: a second distillation from the same teacher, a
resumed search over students, or another worker on the machine reads them instead of running the teacher.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ajuste.data.prepare import PreparedData
from ajuste.errors import DataError, RunFolderError
from ajuste.runs.folder import RunFolder
from ajuste.runs.record import RunFile
from ajuste.runs.seen import differing_splits

__all__ = ["Teacher", "TeacherOutput"]

log = logging.getLogger(__name__)

#: Texts the teacher predicts at a time: the progress bar moves, and each call still has enough texts to batch
#: by length.
CHUNK = 2048


@dataclass
class TeacherOutput:
    """The teacher's probabilities of some texts, and whether they came from the cache or how fast it ran."""

    probabilities: np.ndarray
    cached: bool
    seconds: float


@dataclass
class Teacher:
    """A trained run used as a teacher: its folder, its run.yaml and its recorded metrics."""

    folder: RunFolder
    run_file: RunFile
    metrics: dict[str, Any]
    _model: Any = None
    _fingerprint: str | None = None

    @classmethod
    def open(cls, path: str | Path) -> Teacher:
        folder = RunFolder.open(path)
        run_file = folder.read_run_file()
        if run_file is None:
            raise RunFolderError(
                f"{folder.path} has no run.yaml",
                expected="a run folder written by `ajuste train` or `ajuste tune`",
                fix="Point at a complete run folder: its run.yaml says which data and split the teacher saw.",
            )
        return cls(folder, run_file, folder.read_metrics() or {})

    @functools.cached_property
    def labels(self) -> list[str]:
        """The teacher's classes, in the order of its probabilities' columns (read from its model folder once)."""
        from ajuste.training.light import read_model_config

        return [str(label) for label in read_model_config(self.folder.model_dir)["labels"]]

    @property
    def model(self) -> Any:
        """The teacher's classifier (a PyTorch or an ONNX run), loaded on first use."""
        if self._model is None:
            self._model = self.folder.load()
        return self._model

    def check_split(self, data: PreparedData) -> None:
        """Refuse data whose split is not the one the teacher was trained and tested on: the student is chosen on
        the teacher's validation split and tested on its test split, or the comparison means nothing."""
        recorded = self.folder.read_split()
        if recorded is None:
            raise RunFolderError(
                f"the teacher {self.folder.path} has no split.json, which says which texts it was tested on",
                fix="Restore the run folder from a copy, or train the teacher again.",
            )
        current = data.split_record()
        differs = differing_splits(recorded, current, ("train", "val", "test"))
        if differs:
            raise DataError(
                f"the data no longer splits as the teacher's did ({', '.join(differs)} differ)",
                expected=f"the rows of the teacher's split ({self.folder.path}/split.json)",
                found=f"{len(current['train'])} train, {len(current['val'])} val, {len(current['test'])} test rows",
                fix="Distil with the data file the teacher was trained on, unchanged (see its run.yaml).",
            )

    def fingerprint(self) -> str:
        """A hash of every file of the teacher's model folder: the same weights, tokenizer and labels exactly."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            for path in sorted(p for p in self.folder.model_dir.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(self.folder.model_dir)).encode() + b"\0")
                with path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def probabilities(self, texts: Sequence[str], classes: Sequence[str], *, show: bool = False) -> TeacherOutput:
        """The teacher's class probabilities of ``texts``, columns in the order of ``classes`` (the student's), from
        the cache when this teacher has computed them for these very texts before; ``show``: a progress bar."""
        output = self._probabilities(texts, show)
        mine = self.labels
        if sorted(mine) != sorted(classes):
            raise DataError(
                "the teacher's classes are not the data's",
                expected=", ".join(classes),
                found=", ".join(mine),
                fix="Distil with the data the teacher was trained on.",
            )
        output.probabilities = output.probabilities[:, [mine.index(label) for label in classes]]
        return output

    def _probabilities(self, texts: Sequence[str], show: bool = False) -> TeacherOutput:
        from ajuste import cache
        from ajuste.models.boundary import BoundaryStates

        key = cache.make_key(
            {"kind": "teacher-probabilities", "teacher": self.fingerprint(), "texts": cache.fingerprint_texts(texts)}
        )
        found = cache.get(key)
        if found is not None and tuple(found.values.shape) == (len(texts), len(self.labels)):
            log.info("teacher probabilities of %d texts read from the cache", len(texts))
            return TeacherOutput(found.values.double().numpy(), cached=True, seconds=0.0)
        import torch

        from ajuste.training.callbacks import frozen_pass_progress

        started = time.perf_counter()
        parts = []
        with frozen_pass_progress("teacher", len(texts), show) as advance:
            for start in range(0, len(texts), CHUNK):
                chunk = list(texts[start : start + CHUNK])
                parts.append(np.asarray(self.model.predict(chunk).probabilities, dtype=np.float32))
                if advance is not None:
                    advance(len(chunk))
        probabilities = np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), dtype=np.float32)
        seconds = time.perf_counter() - started
        meta = {"kind": "teacher probabilities", "teacher": str(self.folder.path), "texts": len(texts)}
        cache.put(key, BoundaryStates(torch.from_numpy(probabilities.copy())), meta, seconds=seconds)
        return TeacherOutput(probabilities.astype(np.float64), cached=False, seconds=seconds)

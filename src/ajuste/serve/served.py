"""The models a server answers with: each run folder opened once, named, and described for ``GET /v1/models``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ajuste.errors import ConfigError
from ajuste.runs.folder import RunFolder
from ajuste.training.classifier import TextClassifier
from ajuste.training.metrics import json_safe

__all__ = ["ServedModel", "open_runs"]


@dataclass(frozen=True)
class ServedModel:
    """A run folder's model under the name clients give in ``"model"``, and what is said of it."""

    name: str
    folder: RunFolder
    classifier: TextClassifier
    #: family, labels, runtime, parameters, metrics and settings: read once, when the folder is opened
    #: (the event loop never touches the model while a batch computes in its thread).
    summary: dict[str, Any]

    @classmethod
    def open(cls, name: str, folder: RunFolder, *, trust_remote_code: bool = False) -> ServedModel:
        classifier = folder.load(trust_remote_code=trust_remote_code)
        described = classifier.describe()
        summary = {
            "family": described["family"],
            "labels": list(described["labels"]),
            "runtime": described["runtime"],
            "parameters": described.get("parameters"),
            "metrics": json_safe(folder.read_metrics()),
            "settings": json_safe(classifier.settings.model_dump(mode="json")),
        }
        return cls(name, folder, classifier, summary)

    @property
    def has_report(self) -> bool:
        """Whether the folder holds report.html (a tuning run's): looked at on each request, as
        ``ajuste report`` may rebuild it while the server runs."""
        return self.folder.report_file.is_file()

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says of this model."""
        report = f"/v1/models/{quote(self.name, safe='')}/report" if self.has_report else None
        return {"name": self.name, **self.summary, "report": report}


def _unique(names: Sequence[str]) -> list[str]:
    """The folders' names, made unique by a suffix: runs/a/model and other/model serve as model and model-2."""
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}"
        taken.add(candidate)
        unique.append(candidate)
    return unique


def open_runs(paths: Sequence[str | Path], *, trust_remote_code: bool = False) -> list[ServedModel]:
    """Each run folder opened and its model loaded, named after its folder as given (a link keeps its own
    name); a bad folder is a one-line error, before any model is read."""
    given = [Path(os.path.abspath(path)) for path in paths]  # ".." and "." resolved, links kept
    real = [path.resolve() for path in given]
    repeated = next((path for path, target in zip(given, real) if real.count(target) > 1), None)
    if repeated is not None:
        raise ConfigError(f"run folder {repeated} is given twice", fix="Give each run folder once.")
    folders = [RunFolder.open(path) for path in given]
    names = _unique([path.name or "model" for path in given])
    return [ServedModel.open(name, folder, trust_remote_code=trust_remote_code) for name, folder in zip(names, folders)]

"""Run folders: everything a run produced, written atomically, read back without unpickling anything.

Layout: ``run.yaml`` (resolved settings, seed, versions, and the record of what happened, including
every access to the test split), ``model/`` (weights as safetensors, tokenizer, labels, config),
``metrics.json``, ``history.json`` and ``split.json`` (row ids of each split). The folder is assembled
under a hidden name beside its target and renamed into place only when complete, so a crash never
leaves a half-written run that looks finished.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ajuste.config import RunConfig, to_yaml
from ajuste.errors import RunFolderError
from ajuste.training.classifier import TextClassifier, load, model_folder, replace_folder, staging_folder

__all__ = [
    "RunFolder",
    "check_target",
    "default_run_dir",
    "environment",
    "read_run",
    "write_files",
    "write_run",
]

RUN_FILE = "run.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
SPLIT_FILE = "split.json"


def environment() -> dict[str, Any]:
    """Library versions and platform, recorded in every run.yaml."""
    import torch

    from ajuste import __version__

    versions = {"ajuste": __version__, "python": platform.python_version(), "torch": str(torch.__version__)}
    for name in ("transformers", "tokenizers", "peft"):
        try:
            versions[name] = str(__import__(name).__version__)
        except ImportError:
            continue
    versions["platform"] = platform.platform()
    return versions


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<data>-<family>-<time>``."""
    source = config.data.dataset or Path(config.data.path or "data").stem
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{source}-{config.model.family}-{stamp}")
    return Path(root) / name


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing folder unless asked to."""
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise RunFolderError(
            f"the output folder {target} already exists",
            fix="Choose another --out, or pass --overwrite to replace it.",
        )


def write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=2, allow_nan=True), encoding="utf-8")


def write_files(
    folder: Path,
    classifier: TextClassifier,
    config: RunConfig,
    *,
    metrics: dict[str, Any],
    split: dict[str, Any],
    record: dict[str, Any],
) -> None:
    """The files of a run (model/, metrics, history, split, run.yaml) into an empty ``folder``."""
    (folder / "model").mkdir()
    classifier.write_model(folder / "model")
    write_json(folder / METRICS_FILE, metrics)
    write_json(folder / HISTORY_FILE, classifier.history_.to_dict() if classifier.history_ else {})
    write_json(folder / SPLIT_FILE, split)
    extra = {"ajuste": environment(), "record": record}
    (folder / RUN_FILE).write_text(to_yaml(config, extra), encoding="utf-8")


def write_run(
    target: Path,
    classifier: TextClassifier,
    config: RunConfig,
    *,
    metrics: dict[str, Any],
    split: dict[str, Any],
    record: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write a complete run folder at ``target`` in one atomic rename."""
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(target, "partial.")
    try:
        write_files(staging, classifier, config, metrics=metrics, split=split, record=record)
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


@dataclass
class RunFolder:
    """A run folder read back: the classifier, its run.yaml and its metrics."""

    path: Path
    classifier: TextClassifier
    run: dict[str, Any]
    metrics: dict[str, Any]


def read_run(path: str | Path) -> RunFolder:
    """A run folder (or a bare model folder) and what it records."""
    folder = model_folder(path)
    root = folder.parent if folder.name == "model" else folder
    classifier = load(folder)
    run: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if (root / RUN_FILE).is_file():
        try:
            run = yaml.safe_load((root / RUN_FILE).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise RunFolderError(f"{root / RUN_FILE} is not valid YAML", found=str(exc).splitlines()[0]) from None
    if (root / METRICS_FILE).is_file():
        metrics = json.loads((root / METRICS_FILE).read_text(encoding="utf-8"))
    return RunFolder(root, classifier, run, metrics)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 3)

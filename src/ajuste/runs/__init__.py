"""Runs: the whole pipeline for one configuration, and the run folders it writes and reads."""

from ajuste.runs.folder import RunFolder, default_run_dir, load
from ajuste.runs.record import RunFile, RunRecord, SearchInfo, SearchRecord, TestAccess
from ajuste.runs.train import RunResult, train

__all__ = [
    "RunFile",
    "RunFolder",
    "RunRecord",
    "RunResult",
    "SearchInfo",
    "SearchRecord",
    "TestAccess",
    "default_run_dir",
    "load",
    "train",
]

"""Runs: the whole pipeline for one configuration, and the run folders it writes and reads."""

from ajuste.runs.folder import RunFolder, read_run, write_run
from ajuste.runs.train import RunResult, train

__all__ = ["RunFolder", "RunResult", "read_run", "train", "write_run"]

"""Callbacks: hooks into the training loop, Keras-style, and the History that ``fit`` returns."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

    from ajuste.training.classifier import TextClassifier

__all__ = ["Callback", "EarlyStopping", "History", "ProgressBar", "frozen_pass_progress", "is_improvement"]

Logs = dict[str, Any]


def is_improvement(monitor: str, row: Logs, best: Logs | None) -> bool:
    """Whether epoch ``row`` beats the ``best`` so far on ``monitor``: lower is better for losses, higher for
    everything else. An accuracy or F1 equal to the best's is an improvement when the loss beside it (``val_loss``
    for ``val_*``) is lower: on a small validation split accuracy often stays the same for several epochs while
    the model still improves, and the first of the tied epochs is the least trained."""
    value = float(row[monitor])
    if math.isnan(value):
        return False
    if best is None:
        return True
    previous = float(best[monitor])
    if monitor.endswith("loss") or value != previous:
        return value < previous if monitor.endswith("loss") else value > previous
    loss = ("val_" if monitor.startswith("val_") else "") + "loss"
    if row.get(loss) is None or best.get(loss) is None:
        return False
    return float(row[loss]) < float(best[loss])


class Callback:
    """Base class: override the hooks you need. ``self.model`` is the classifier being trained."""

    model: TextClassifier

    def set_model(self, model: TextClassifier) -> None:
        self.model = model

    def on_train_begin(self, logs: Logs) -> None:
        """Before the first epoch; ``logs`` holds ``epochs`` and ``steps_per_epoch``."""

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        """Before each epoch (1-based)."""

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        """After each training batch; ``logs`` holds the batch ``loss``."""

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """After each epoch's validation; ``logs`` holds the epoch's row of the history."""

    def on_train_end(self, logs: Logs) -> None:
        """After the last epoch, whatever stopped training."""


class History:
    """Per-epoch training and validation loss and metrics, learning rate and seconds."""

    def __init__(self) -> None:
        self.epochs: list[Logs] = []
        self.best_epoch: int | None = None
        self.stopped_early = False

    def append(self, row: Logs) -> None:
        self.epochs.append(dict(row))

    @property
    def history(self) -> dict[str, list[Any]]:
        """Keras's shape: one list per key, e.g. ``history.history["val_loss"]``."""
        keys = [k for k in self.epochs[0] if k != "epoch"] if self.epochs else []
        return {key: [row.get(key) for row in self.epochs] for key in keys}

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        history = cls()
        history.epochs = list(data.get("epochs", []))
        history.best_epoch = data.get("best_epoch")
        history.stopped_early = bool(data.get("stopped_early", False))
        return history

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[Logs]:
        """One row per epoch: ``epoch``, ``loss``, ``val_accuracy``, ``lr``, ``seconds``..."""
        return iter(self.epochs)

    def __getitem__(self, index: int) -> Logs:
        """The row of one epoch, in order (``history[-1]`` is the last)."""
        return self.epochs[index]

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epochs)}, best_epoch={self.best_epoch})"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 2) -> None:
        self.monitor = monitor
        self.patience = patience
        self.best: Logs | None = None
        self.wait = 0

    def on_train_begin(self, logs: Logs) -> None:
        self.best, self.wait = None, 0

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if logs.get(self.monitor) is None:
            return
        if is_improvement(self.monitor, logs, self.best):
            self.best, self.wait = dict(logs), 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training = True


class ProgressBar(Callback):
    """A rich progress bar over the batches of each epoch, and one summary line per epoch, on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None
        self._epochs = 0
        self._steps = 0

    def on_train_begin(self, logs: Logs) -> None:
        from rich.progress import TextColumn

        self._epochs, self._steps = int(logs["epochs"]), int(logs["steps_per_epoch"])
        self._progress = _progress_bar(TextColumn("{task.fields[loss]}"))
        self._progress.start()

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(f"epoch {epoch}/{self._epochs}", total=self._steps, loss="")

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"loss {logs['loss']:.4f}")

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self._progress is None:
            return
        self._progress.remove_task(self._task)
        shown = "  ".join(
            f"{key} {value:.4f}"
            for key, value in logs.items()
            if key not in ("epoch", "seconds", "seconds_validating", "lr") and isinstance(value, float)
        )
        self._progress.console.print(f"epoch {epoch}/{self._epochs}  {shown}  {logs['seconds']:.1f}s")

    def on_train_end(self, logs: Logs) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def shows_progress(verbose: bool | str) -> bool:
    """Whether ``verbose`` (True, False or "auto": when stderr is a terminal) asks for progress bars."""
    return verbose is True or (verbose == "auto" and sys.stderr.isatty())


@contextmanager
def frozen_pass_progress(description: str, total: int, show: bool) -> Iterator[Callable[[int], None] | None]:
    """A transient progress bar over the texts of a frozen-layer pass; yields its ``advance`` or ``None``."""
    if not show:
        yield None
        return
    with _progress_bar() as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, advance=done)


def _progress_bar(*extra: Any) -> Progress:
    """A transient rich progress bar on stderr: description, bar, done/total, time left, then ``extra`` columns."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), *extra)
    return Progress(*columns, console=Console(stderr=True), transient=True)

"""What the command line shows: rich tables for people, one JSON line for programs."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import IO, Any, cast

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ajuste.training.metrics import json_safe

__all__ = ["Output", "plain"]


def plain(value: object) -> str:
    """``value`` as text that rich shows as it is: a label ``[spam]`` or a text holding ``[/]`` is the user's, not
    markup (the one vanished, the other stopped the command)."""
    return escape(str(value))


class WholeWrites:
    """A text stream (stdout) whose every write is written whole or raises.

    Python's buffered writer can return after the part of a large write that a pipe took, dropping the rest
    without an error when the reader stopped early (``| head``): the command would then exit 0 with its output cut
    short. Here each part the system took is followed by the rest, so a reader that is gone raises
    BrokenPipeError, which the command line answers with exit status 141 as a Unix tool killed by SIGPIPE.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        raw = getattr(self.stream, "buffer", None)
        if raw is None:  # a stream of text only (a test's StringIO): its writes are whole
            return int(self.stream.write(text))
        self.stream.flush()
        left = memoryview(text.encode(self.stream.encoding or "utf-8", self.stream.errors or "strict"))
        while left:
            taken = raw.write(left)
            raw.flush()
            if not taken:  # a non-blocking stream that would block: said, never a silent loss
                raise BlockingIOError("the output took none of the bytes written")
            left = left[taken:]
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader stopped early (``| head``): rich's own answer exits 1, as a failure; the command line's ends
        quietly, as a Unix tool killed by SIGPIPE does."""
        raise BrokenPipeError


class Output:
    """Human output on stdout (or nothing with ``--quiet``; stderr with ``--json``) and the JSON line."""

    def __init__(self, *, json_mode: bool, quiet: bool) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.console = _Console(
            file=sys.stderr if json_mode else cast(IO[str], WholeWrites(sys.stdout)), highlight=False, soft_wrap=True
        )
        self.errors = _Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def show_progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def table(self, table: Table) -> None:
        if not self.quiet:
            self.console.print(table)

    def result(self, table: Table) -> None:
        """The table that is the command's result (predictions, scores, a listing): shown under ``--quiet`` too,
        unless ``--json`` gives the result as JSON."""
        if not (self.quiet and self.json_mode):
            self.console.print(table)

    def metrics_table(self, metrics: Mapping[str, Mapping[str, Any]], *, result: bool = False) -> None:
        """Accuracy with its interval, macro-F1 and loss per split; ``result``: the command's result (evaluate's)."""
        table = Table(box=None, pad_edge=False)
        for column in ("split", "texts", "accuracy", "95% interval", "macro-F1", "loss"):
            table.add_column(column, justify="left" if column == "split" else "right")
        for split, values in metrics.items():
            low, high = values.get("accuracy_ci95", [math.nan, math.nan])
            table.add_row(
                split,
                str(values.get("n", "")),
                f"{values['accuracy']:.4f}",
                f"[{low:.3f}, {high:.3f}]",
                f"{values['macro_f1']:.4f}",
                f"{values['loss']:.4f}",
            )
        (self.result if result else self.table)(table)

    def json(self, content: Mapping[str, Any]) -> None:
        if self.json_mode:
            WholeWrites(sys.stdout).write(json.dumps(json_safe(content), ensure_ascii=False) + "\n")

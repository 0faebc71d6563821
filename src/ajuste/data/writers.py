"""Writing predictions: every input row, in order, with its row number and id; atomically."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ajuste.atomic import remove_leftovers, staged_file
from ajuste.errors import ConfigError, DataError, checked_switch

__all__ = ["check_output", "write_predictions"]

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def check_output(path: str | Path, overwrite: bool = False) -> str:
    """The format of the predictions file ``path``, once it is known that it can be written there.

    Called before any work, so that a bad ``--output`` is refused before predicting rather than after.
    Its folder is not created: a typo in it would otherwise leave a new folder somewhere unexpected.
    """
    checked_switch(overwrite, "overwrite")
    path = Path(path)
    if path.is_dir():
        raise DataError(
            f"cannot write {path}",
            expected="a file name for --output",
            found="a folder",
            fix=f"Name a file inside it, such as {path / 'predictions.csv'}.",
        )
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        json = path.suffix.lower() == ".json"  # one JSON document is not what is written: a line per row
        raise ConfigError(
            f"cannot tell the output format of {path}",
            expected="a name ending in .csv, .tsv or .jsonl",
            found=f"'{path.suffix}'",
            fix=f"Name it {path.with_suffix('.jsonl').name} (one JSON object per row)."
            if json
            else "Choose an --output such as predictions.csv.",
        )
    parent = path.parent
    if not parent.is_dir():
        raise DataError(
            f"cannot write {path}",
            expected="an --output inside an existing folder",
            found=f"no folder {parent}" if not parent.exists() else f"{parent} is not a folder",
            fix=f"Create it first (mkdir -p {parent}), or choose another --output.",
        )
    if path.exists() and not overwrite:
        raise DataError(
            f"{path} already exists",
            expected="a new --output file",
            found="an existing file",
            fix="Choose another --output, or pass --overwrite.",
        )
    # root may write anywhere, so this catches only what the system would refuse anyway; a refusal
    # met later while writing gets the same message from write_predictions.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _unwritable(path, PermissionError())
    return kind


def _unwritable(path: Path, exc: OSError) -> DataError:
    denied = isinstance(exc, PermissionError)
    return DataError(
        f"cannot write {path}",
        expected=f"a folder this user may write to ({path.parent} holds the file and its staging copy)",
        found="permission denied" if denied else (exc.strerror or type(exc).__name__),
        fix="Choose an --output in a folder you own, or give this user write permission there."
        if denied
        else "Choose an --output in a folder of files you own, and check its free space.",
    )


def write_predictions(
    path: str | Path,
    texts: Sequence[str | None],
    ids: Sequence[object] | None,
    labels: Sequence[str],
    probabilities: Sequence[Sequence[float]],
    classes: Sequence[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write one prediction per input row; the file appears only once complete."""
    path = Path(path)
    kind = check_output(path, overwrite)
    remove_leftovers(path)  # staged copies of an earlier write that was killed
    records: list[dict[str, Any]] = []
    for row, (text, label, probs) in enumerate(zip(texts, labels, probabilities)):
        record: dict[str, Any] = {"row": row}
        if ids is not None:
            record["id"] = ids[row]
        record.update({"text": text, "label": label})
        record.update({f"p_{c}": round(float(p), 6) for c, p in zip(classes, probs)})
        records.append(record)
    try:
        with staged_file(path, newline="") as handle:  # appears complete, with the user's umask, or not at all
            if kind == "jsonl":
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                fields = list(records[0]) if records else ["row", "text", "label"]
                writer = csv.DictWriter(
                    handle, fieldnames=fields, delimiter="," if kind == "csv" else "\t", quoting=csv.QUOTE_MINIMAL
                )
                writer.writeheader()
                # a JSON id of true or false is written as JSON writes it, not as Python does (True)
                writer.writerows(
                    {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in record.items()}
                    for record in records
                )
    except OSError as exc:  # a folder that refuses writing, a full disk: the user's to fix
        raise _unwritable(path, exc) from None
    return path

"""Writing predictions: every input row, in order, with its row number and id; atomically."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ajuste.errors import ConfigError, DataError

__all__ = ["write_predictions"]

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def write_predictions(
    path: str | Path,
    texts: Sequence[str | None],
    ids: Sequence[str] | None,
    labels: Sequence[str],
    probabilities: Sequence[Sequence[float]],
    classes: Sequence[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write one prediction per input row; the file appears only once complete."""
    path = Path(path)
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"cannot tell the output format of {path}",
            expected="a name ending in .csv, .tsv or .jsonl",
            found=f"'{path.suffix}'",
        )
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists", fix="Choose another --output, or pass --overwrite.")
    path.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for row, (text, label, probs) in enumerate(zip(texts, labels, probabilities)):
        record: dict[str, Any] = {"row": row}
        if ids is not None:
            record["id"] = ids[row]
        record.update({"text": text, "label": label})
        record.update({f"p_{c}": round(float(p), 6) for c, p in zip(classes, probs)})
        records.append(record)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline="", dir=path.parent, prefix=f".{path.name}.", delete=False
    )
    try:
        with handle:
            if kind == "jsonl":
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                fields = list(records[0]) if records else ["row", "text", "label"]
                writer = csv.DictWriter(
                    handle, fieldnames=fields, delimiter="," if kind == "csv" else "\t", quoting=csv.QUOTE_MINIMAL
                )
                writer.writeheader()
                writer.writerows(records)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path

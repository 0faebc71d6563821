"""The names of a model's weight files (no PyTorch here: reading a folder's layout needs none)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["ONNX_FILE", "WEIGHTS_FILE", "ajuste_model_dir"]

#: Weights are stored as safetensors: loading them never runs code, unlike a pickle.
WEIGHTS_FILE = "model.safetensors"
#: The graph of an exported model (``ajuste export``), in place of the weights.
ONNX_FILE = "model.onnx"


def ajuste_model_dir(path: Path) -> Path | None:
    """The model folder of a run folder (or the model folder itself) written by ajuste; None for anything else,
    a transformers checkpoint among them."""
    for folder in (path / "model", path):
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(config, dict) and config.get("format") == "ajuste-model":
            return folder
    return None

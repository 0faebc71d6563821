"""The small interface through which every model family plugs into the one training loop.

A family knows how to learn its preprocessing from the training texts (a vocabulary, a BPE tokenizer,
or nothing for a pretrained checkpoint), how to turn texts into token ids and ids into a padded batch,
how to build its ``nn.Module`` (whose ``forward(**batch)`` returns logits), and how to save and load
its own files. Everything else — optimisation, batching, metrics, early stopping — is shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ajuste.atomic import plain_permissions
from ajuste.errors import RunFolderError, first_line
from ajuste.models.boundary import BoundaryStates
from ajuste.models.files import WEIGHTS_FILE

__all__ = [
    "WEIGHTS_FILE",
    "Bars",
    "Family",
    "PaddedSum",
    "TrainingDefaults",
    "count_parameters",
    "load_weights",
    "padded_bags",
    "save_weights",
]

#: Progress bars as the caller shows them (or not): ``bars(description, total)`` is a context manager that yields
#: the ``advance(done)`` of a bar over ``total`` steps, or None when no bar is shown.
Bars = Callable[[str, int], AbstractContextManager[Callable[[int], None] | None]]


def save_weights(module: nn.Module, folder: Path) -> None:
    from safetensors.torch import save_model

    save_model(module, str(folder / WEIGHTS_FILE))
    plain_permissions(folder / WEIGHTS_FILE)  # safetensors makes it 0600: a shared run must stay readable


def load_weights(module: nn.Module, folder: Path) -> None:
    """The weights of ``folder`` into ``module``; a damaged or foreign file is a RunFolderError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = folder / WEIGHTS_FILE
    try:
        load_model(module, str(path), strict=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:  # truncated, random bytes, other shapes
        # PyTorch's first line only heads the list ("Error(s) in loading state_dict for ..."): its first item says
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise RunFolderError(
            f"the weights file {path} is damaged or belongs to another model",
            found=details[0][:200] if details else first_line(exc),
            fix="Train again, or restore the run folder from a copy.",
        ) from None


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


@dataclass(frozen=True)
class TrainingDefaults:
    """What a family trains with when the user does not say: the learning rate, epochs and batch size
    (no learning rate for a family that is solved rather than trained by gradient descent)."""

    lr: float | None
    epochs: int
    batch_size: int


class Family(ABC):
    """How one model family turns texts into batches and batches into logits."""

    #: The ``family`` name in settings and run folders.
    name: str
    #: Fitted in one pass by a solver (:meth:`solve`) instead of by gradient descent over epochs.
    solver: bool = False

    @abstractmethod
    def fit_preprocessing(self, texts: Sequence[str], bars: Bars | None = None) -> None:
        """Learn what preprocessing needs from the *training* texts only, and fix the maximum length. A family
        whose preprocessing is a long pass (an encoder's over the texts) shows it with ``bars``."""

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to the maximum length."""

    @abstractmethod
    def collate(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """The keyword arguments of the module's ``forward`` for one batch."""

    @abstractmethod
    def build(self, num_labels: int) -> nn.Module:
        """A new module with one output per class (weights initialised from the current torch seed)."""

    @abstractmethod
    def defaults(self) -> TrainingDefaults:
        """Training settings that suit this family when the user gives none."""

    @abstractmethod
    def save(self, folder: Path, module: nn.Module) -> dict[str, Any]:
        """Write the weights and the family's own files into ``folder``; return entries for its config."""

    @abstractmethod
    def restore(self, folder: Path, entries: dict[str, Any], num_labels: int) -> nn.Module:
        """Read back what :meth:`save` wrote: the module with its trained weights."""

    @abstractmethod
    def restore_preprocessing(self, folder: Path, entries: dict[str, Any]) -> None:
        """Read back only the preprocessing :meth:`save` wrote (vocabulary, tokenizer, maximum length): what
        :meth:`encode` and :meth:`export_inputs` need when another runtime (ONNX) computes the logits."""

    # -- export: fixed-shape inputs that an ONNX graph takes ----------------------------------------

    def export_inputs(self, sequences: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The exported graph's inputs for one batch: every tensor has the batch as its first dimension.

        Families whose batch is already padded (``input_ids`` and ``attention_mask``) use it as is."""
        return {name: tensor.numpy() for name, tensor in self.collate(sequences).items()}

    def export_module(self, module: nn.Module) -> nn.Module:
        """The module to export: ``forward`` takes :meth:`export_inputs` by name and returns the logits."""
        return module

    @property
    @abstractmethod
    def max_length(self) -> int | None:
        """The maximum length in tokens, known once preprocessing is fitted."""

    def describe(self) -> dict[str, Any]:
        """Facts about the built model for reports (sizes, resolved choices)."""
        return {}

    def solve(
        self, module: nn.Module, texts: Sequence[str], targets: torch.Tensor, class_weights: torch.Tensor | None
    ) -> None:
        """Fit ``module`` on the training texts in one pass (families with ``solver = True`` only)."""
        raise NotImplementedError(f"the {self.name} family is trained by gradient descent, not solved")

    def frozen_features(
        self,
        module: nn.Module,
        sequences: Sequence[Sequence[int]],
        progress: Callable[[int], None] | None = None,
        *,
        compute: bool = True,
    ) -> BoundaryStates | None:
        """The frozen part's output for every sequence, from the cache or (``compute``) computed and cached;
        ``None`` when every layer trains (or the cache is off, or a lookup missed): the whole model then runs."""
        return None


def padded_bags(ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """A flat bag batch (``EmbeddingBag``'s ids and offsets) as a padded ``ids`` and ``weights`` pair.

    Without ``weights`` each bag is a mean: every id of a bag of ``n`` weighs ``1/n``. Padding weighs 0, so an
    empty bag sums to zeros, as ``EmbeddingBag`` returns for it.
    """
    ends = torch.cat([offsets[1:], torch.tensor([len(ids)], dtype=torch.long)])
    lengths = (ends - offsets).tolist()
    width = max(1, max(lengths, default=1))
    padded_ids = np.zeros((len(lengths), width), dtype=np.int64)
    padded_weights = np.zeros((len(lengths), width), dtype=np.float32)
    flat_ids = ids.numpy()
    flat_weights = None if weights is None else weights.numpy()
    for row, (start, length) in enumerate(zip(offsets.tolist(), lengths)):
        padded_ids[row, :length] = flat_ids[start : start + length]
        if flat_weights is None:
            padded_weights[row, :length] = 1.0 / length if length else 0.0
        else:
            padded_weights[row, :length] = flat_weights[start : start + length]
    return {"ids": padded_ids, "weights": padded_weights}


class PaddedSum(nn.Module):
    """``EmbeddingBag``'s weighted sum over padded ids: the form an ONNX graph computes fast (an
    ``EmbeddingBag`` exports as a loop over the bags). ``then`` maps the summed vectors to the logits."""

    def __init__(self, table: torch.Tensor, then: nn.Module) -> None:
        super().__init__()
        self.table = nn.Parameter(table.detach(), requires_grad=False)
        self.then = then

    def forward(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        summed = (nn.functional.embedding(ids, self.table) * weights.unsqueeze(-1)).sum(dim=1)
        return self.then(summed)

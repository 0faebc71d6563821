"""Hidden states at the freeze boundary: what the frozen part of a model computes, kept per text.

When only the top of a pretrained model trains (``head``, ``last_block``, ``last_n:K``), the layers
below never change: their output for a text is the same in every epoch and every trial. It is
computed once (frozen modules in eval mode, no gradients, length-sorted batches) and stored flat —
``values`` holds every text's real tokens one after another, ``offsets`` where each text starts — so
that a training batch is gathered and padded to its own longest text in a few copies.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from ajuste.tokenize.batching import token_batches

__all__ = ["BoundaryStates", "autocast", "bf16_supported", "compute_states", "effective_precision"]

log = logging.getLogger(__name__)

Collate = Callable[[Sequence[Sequence[int]]], dict[str, torch.Tensor]]


class BoundaryStates:
    """The frozen part's output for a list of texts: one vector per text, or one per real token.

    Pooled (``offsets is None``): ``values`` is ``(texts, hidden)``. Per token: ``values`` is
    ``(tokens, hidden)`` and text ``i`` is ``values[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, values: torch.Tensor, offsets: torch.Tensor | None = None) -> None:
        self.values = values
        self.offsets = offsets
        self._starts: list[int] = offsets.tolist() if offsets is not None else []

    def __len__(self) -> int:
        return len(self._starts) - 1 if self.offsets is not None else int(self.values.shape[0])

    @property
    def nbytes(self) -> int:
        extra = self.offsets.numel() * self.offsets.element_size() if self.offsets is not None else 0
        return int(self.values.numel() * self.values.element_size() + extra)

    def gather(self, indices: Sequence[int], width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The states of ``indices`` as one batch: ``(batch, hidden)``, or ``(batch, width, hidden)`` zero-padded."""
        if self.offsets is None:
            return self.values[list(indices)].to(dtype)
        batch = torch.zeros((len(indices), width, self.values.shape[1]), dtype=dtype)
        starts = self._starts
        for row, i in enumerate(indices):
            length = min(starts[i + 1] - starts[i], width)
            batch[row, :length] = self.values[starts[i] : starts[i] + length]
        return batch


def effective_precision(precision: str) -> str:
    """The arithmetic that ``precision`` really gets here: bf16 only where the CPU has it natively.

    What was computed, not what was asked for, is what a cached result is filed under: bf16 asked for
    on a CPU without it computes fp32 values, the same as an fp32 run's.
    """
    return "bf16" if precision == "bf16" and bf16_supported() else "fp32"


def autocast(precision: str) -> AbstractContextManager[Any]:
    """bf16 matrix products on the CPU when asked for and the hardware has them; fp32 otherwise."""
    if effective_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


@functools.cache
def bf16_supported() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_states(
    module: Any,
    sequences: Sequence[Sequence[int]],
    collate: Collate,
    precision: str = "fp32",
    progress: Callable[[int], None] | None = None,
) -> BoundaryStates:
    """Run the frozen part of ``module`` (a BackboneClassifier with a boundary) over every sequence once."""
    lengths = [len(s) for s in sequences]
    pooled = module.boundary == -1
    rows: list[torch.Tensor | None] = [None] * len(sequences)
    was_training = module.training
    module.eval()
    try:
        with autocast(precision):
            for batch in token_batches(lengths):
                inputs = collate([sequences[i] for i in batch])
                states = module.frozen_states(inputs["input_ids"], inputs["attention_mask"])
                dtype = torch.bfloat16 if states.dtype == torch.bfloat16 else torch.float32
                for row, i in enumerate(batch):
                    rows[i] = (states[row] if pooled else states[row, : lengths[i]]).to(dtype).clone()
                if progress is not None:
                    progress(len(batch))
    finally:
        module.train(was_training)
    tensors = [r for r in rows if r is not None]
    if pooled:
        return BoundaryStates(torch.stack(tensors) if tensors else torch.zeros(0, 0))
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
    return BoundaryStates(torch.cat(tensors) if tensors else torch.zeros(0, 0), offsets)

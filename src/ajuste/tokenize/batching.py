"""Batches grouped by length and padded to their own longest sequence, not the dataset's.

Padding every text to the longest in the data made the reference experiment 8.8x slower; grouping
texts of similar length into a batch makes nearly every token in a batch a real one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["TOKENS_PER_BATCH", "length_grouped_batches", "pad_sequences", "sorted_batches", "token_batches"]

#: Padded tokens per batch when no batch size is given (evaluation, prediction, the frozen pass): large
#: matrix products whatever the lengths of the texts.
TOKENS_PER_BATCH = 8192

#: How many batches' worth of texts are sorted together before batching: large enough to group
#: lengths well, small enough that every epoch still sees batches in a different mix.
_POOL_BATCHES = 50


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Training batches: shuffle, sort pools of ``50 * batch_size`` texts by length, cut, shuffle the batches."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    pool = batch_size * _POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool].tolist(), key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: all texts sorted by length (stable), cut into batches; callers restore order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def token_batches(lengths: Sequence[int], tokens: int = TOKENS_PER_BATCH) -> list[list[int]]:
    """Evaluation batches of at most ``tokens`` padded tokens each (one text alone may exceed it), sorted by length."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and (len(current) + 1) * max(1, lengths[i]) > tokens:  # sorted: the width is the last text's
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and the matching ``attention_mask`` (1 for real tokens)."""
    width = max(1, max((len(s) for s in sequences), default=1))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids, mask

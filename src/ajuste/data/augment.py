"""Augmented copies of texts for distillation, after Tang et al. (2019), "Distilling task-specific knowledge
from BERT into simple neural networks": word dropout, swaps of nearby words, and n-gram sampling.

A copy keeps no label: the teacher labels it. So the copies need not preserve the class, only stay in the
texts' distribution, where the teacher's probabilities teach the student what the labelled texts alone do not
(how much each word and phrase counts). Pure Python, seeded, no global random state.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["augment_texts", "augmented_copy"]

#: Tang et al.'s probabilities: each word is dropped with P_DROP (their masking, for a model without a mask
#: token) or swapped with a word at most SWAP_WINDOW positions away with P_SWAP; with P_NGRAM the copy is then
#: a random n-gram of itself, n from 1 to MAX_NGRAM.
P_DROP = 0.1
P_SWAP = 0.1
SWAP_WINDOW = 3
P_NGRAM = 0.25
MAX_NGRAM = 5


def augmented_copy(text: str, rng: random.Random) -> str:
    """One augmented copy of ``text`` (words split on white space)."""
    words = text.split()
    kept = [word for word in words if rng.random() >= P_DROP] or words[:1]
    for i in range(len(kept)):
        if rng.random() < P_SWAP and len(kept) > 1:
            low, high = max(0, i - SWAP_WINDOW), min(len(kept) - 1, i + SWAP_WINDOW)
            j = rng.choice([k for k in range(low, high + 1) if k != i])
            kept[i], kept[j] = kept[j], kept[i]
    if rng.random() < P_NGRAM and len(kept) > 1:
        n = rng.randint(1, min(MAX_NGRAM, len(kept)))
        start = rng.randint(0, len(kept) - n)
        kept = kept[start : start + n]
    return " ".join(kept)


def augment_texts(texts: Sequence[str], copies: int, seed: int) -> list[str]:
    """Up to ``copies`` distinct augmented copies of each text, none equal to a text given or to another copy,
    in a fixed order (text by text); a short text may have fewer (few distinct copies of it exist)."""
    rng = random.Random(seed)
    seen = {" ".join(text.split()) for text in texts}
    out: list[str] = []
    for text in texts:
        made = 0
        for _ in range(copies * 3):  # bounded: a three-word text has few distinct copies
            if made == copies:
                break
            copy = augmented_copy(text, rng)
            if copy and copy not in seen:
                seen.add(copy)
                out.append(copy)
                made += 1
    return out

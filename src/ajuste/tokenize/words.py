"""Word vocabulary and hashed word n-grams for the fastText-style bag-of-embeddings family."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WordVocabulary", "split_words"]

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
UNKNOWN = "<unk>"


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, each its own token."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class WordVocabulary:
    """Words seen at least ``min_freq`` times in training, plus ``buckets`` hash slots for n-grams.

    Ids: 0 is the unknown word, 1..len(words) the words, then the n-gram buckets. N-grams are hashed
    with CRC-32 of their text, which is stable across processes and machines (Python's ``hash`` is not).
    """

    words: tuple[str, ...]
    ngrams: int
    buckets: int

    @classmethod
    def fit(cls, texts: Sequence[str], *, min_freq: int, ngrams: int, buckets: int) -> WordVocabulary:
        counts = Counter(word for text in texts for word in split_words(text))
        words = tuple(sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w)))
        return cls(words, ngrams, buckets)

    @property
    def size(self) -> int:
        """Number of embedding rows: unknown word, words, n-gram buckets."""
        return 1 + len(self.words) + (self.buckets if self.ngrams > 1 else 0)

    def encode(self, text: str) -> list[int]:
        index = self._index
        tokens = split_words(text)
        ids = [index.get(word, 0) for word in tokens]
        offset = 1 + len(self.words)
        for n in range(2, self.ngrams + 1):
            for start in range(len(tokens) - n + 1):
                gram = " ".join(tokens[start : start + n]).encode("utf-8")
                ids.append(offset + zlib.crc32(gram) % self.buckets)
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    @property
    def _index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {word: i + 1 for i, word in enumerate(self.words)}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        return {"words": list(self.words), "ngrams": self.ngrams, "buckets": self.buckets, "unknown": UNKNOWN}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordVocabulary:
        """The vocabulary that :meth:`to_dict` gave; ValueError, saying what was found, for anything else."""
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            kinds = {type(None): "null", list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
            found = f"a JSON {kinds.get(type(data), 'value')}" if not isinstance(data, dict) else f"keys {sorted(data)}"
            raise ValueError(f"{found}, not an object with a list of words, ngrams and buckets")
        return cls(tuple(words), int(data["ngrams"]), int(data["buckets"]))

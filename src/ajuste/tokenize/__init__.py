"""Tokenize: words and n-grams, byte-level BPE, and length-grouped dynamic padding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajuste.lazy import lazy_attributes

if TYPE_CHECKING:
    from ajuste.tokenize.batching import length_grouped_batches, pad_sequences, sorted_batches
    from ajuste.tokenize.bpe import END_OF_TEXT, train_bpe
    from ajuste.tokenize.words import WordVocabulary, split_words

__all__ = [
    "END_OF_TEXT",
    "WordVocabulary",
    "length_grouped_batches",
    "pad_sequences",
    "sorted_batches",
    "split_words",
    "train_bpe",
]

#: Imported on first use: PyTorch only for what needs it.
__getattr__ = lazy_attributes(
    __name__,
    {
        "ajuste.tokenize.batching": ("length_grouped_batches", "pad_sequences", "sorted_batches"),
        "ajuste.tokenize.bpe": ("END_OF_TEXT", "train_bpe"),
        "ajuste.tokenize.words": ("WordVocabulary", "split_words"),
    },
)

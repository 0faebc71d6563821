"""Tokenize: words and n-grams, byte-level BPE, and length-grouped dynamic padding."""

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

"""A pretrained model's own tokenizer (a ``tokenizer.json`` of the ``tokenizers`` library) as a bag's vocabulary.

The ``static`` family reads texts as its encoder does, into the encoder's sub-word pieces: a word that training
never saw still splits into pieces the encoder knows, so the model has a vector for it. Only the Rust
``tokenizers`` library is needed (not ``transformers``), so a ``static`` run predicts without importing PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ajuste.errors import RunFolderError, first_line

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["TOKENIZER_FILE", "PieceVocabulary"]

#: The tokenizer's file, in a model folder as in a ``transformers`` checkpoint.
TOKENIZER_FILE = "tokenizer.json"


class PieceVocabulary:
    """Ids of a tokenizer's pieces, without its special tokens; one embedding row per piece."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        # the file may carry the checkpoint's truncation and padding: a bag takes every piece, unpadded
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> PieceVocabulary:
        """A vocabulary over a copy of ``tokenizer`` (which stays as it is)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(tokenizer.to_str()))

    @classmethod
    def from_file(cls, path: Path) -> PieceVocabulary:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as exc:  # the Rust library raises a bare Exception for a missing or damaged file
            raise RunFolderError(
                f"the tokenizer file {path} is damaged or missing",
                found=first_line(exc),
                fix="Train again, or restore the run folder from a copy.",
            ) from None

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))

    @property
    def size(self) -> int:
        """Number of embedding rows: every piece of the tokenizer, added tokens included."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The pieces of every text, tokenized in parallel by the Rust library."""
        return [list(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pieces", "file": TOKENIZER_FILE}

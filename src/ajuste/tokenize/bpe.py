"""Byte-level BPE tokenizers trained on the training split, for the from-scratch GPT family."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["END_OF_TEXT", "train_bpe"]

END_OF_TEXT = "<|endoftext|>"


def train_bpe(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A GPT-2-style byte-level BPE tokenizer learned from ``texts`` only, with ``<|endoftext|>`` as id 0."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer

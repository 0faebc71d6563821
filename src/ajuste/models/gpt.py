"""A GPT-2-style decoder trained from scratch; its architecture comes straight from the hyperparameters.

The model is a ``transformers`` GPT-2 built from a configuration (no pretrained weights); the tokenizer
is a byte-level BPE trained on the training split only, so nothing about validation or test texts
leaks into it. Every text ends with ``<|endoftext|>``, and the classifier reads the hidden state of
that last real token, which has attended to the whole text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ajuste.models.base import Bars, Family, TrainingDefaults, load_weights, save_weights
from ajuste.models.memory import check_memory
from ajuste.models.settings import GPTSettings
from ajuste.models.transformer import BackboneClassifier, eager_copy
from ajuste.tokenize.batching import pad_sequences
from ajuste.tokenize.bpe import END_OF_TEXT, train_bpe

__all__ = ["GPTFamily"]

TOKENIZER_FILE = "tokenizer.json"


#: The default search space of the family (see ajuste.search.space for the format).
DEFAULT_SPACE: dict[str, Any] = {
    "model.num_layers": {"low": 1, "high": 4},
    "model.num_heads": [2, 4, 8],
    "model.emb_dim": {"low": 64, "high": 256, "step": 32},
    "model.context_length": [64, 128, 256],
    "model.dropout": {"low": 0.0, "high": 0.3},
    "model.activation": ["gelu", "relu", "silu"],
    "model.vocab_size": [1024, 2048, 4096, 8192],
    "train.lr": {"low": 1e-4, "high": 3e-3, "log": True},
    "train.batch_size": [16, 32, 64],
    "train.epochs": {"low": 3, "high": 20},  # up to the default's 20: the defaults must lie inside the space
    "train.weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
    "train.warmup": {"low": 0.0, "high": 0.2},
    "constraints": ["model.emb_dim % model.num_heads == 0"],
}


class GPTFamily(Family):
    name = "gpt"

    def __init__(self, settings: GPTSettings) -> None:
        self.settings = settings
        self.tokenizer: Any = None  # tokenizers.Tokenizer, once trained or loaded
        self._max_length: int | None = settings.max_length

    @property
    def max_length(self) -> int | None:
        return self._max_length

    @property
    def end_id(self) -> int:
        return int(self.tokenizer.token_to_id(END_OF_TEXT))

    def fit_preprocessing(self, texts: Sequence[str], bars: Bars | None = None) -> None:
        self.tokenizer = train_bpe(texts, self.settings.vocab_size)
        if self._max_length is None:
            longest = max((len(e.ids) + 1 for e in self.tokenizer.encode_batch(list(texts))), default=1)
            self._max_length = min(longest, self.settings.context_length)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self.tokenizer is None or self._max_length is None:
            raise RuntimeError("fit_preprocessing() must run before encode()")
        keep = self._max_length - 1
        end = self.end_id
        return [[*e.ids[:keep], end] for e in self.tokenizer.encode_batch(list(texts))]

    def collate(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_sequences(sequences, self.end_id)
        return {"input_ids": ids, "attention_mask": mask}

    def _config(self) -> Any:
        from transformers import GPT2Config

        s = self.settings
        return GPT2Config(
            vocab_size=self.tokenizer.get_vocab_size(),
            n_positions=s.context_length,
            n_embd=s.emb_dim,
            n_layer=s.num_layers,
            n_head=s.num_heads,
            n_inner=4 * s.emb_dim,
            activation_function=s.activation,
            resid_pdrop=s.dropout,
            embd_pdrop=s.dropout,
            attn_pdrop=s.dropout,
            bos_token_id=self.end_id,
            eos_token_id=self.end_id,
            pad_token_id=self.end_id,
        )

    def parameter_count(self, num_labels: int) -> int:
        """The parameters :meth:`build` will allocate, from the settings and the trained tokenizer."""
        s, width = self.settings, self.settings.emb_dim
        # GPT-2: token and position embeddings; per block two layer norms (2d each), attention
        # (qkv d×3d + 3d, projection d×d + d) and the feed-forward layer (d×4d + 4d, 4d×d + d),
        # which is 12d² + 13d; a final layer norm; the head.
        block = 12 * width * width + 13 * width
        embeddings = (self.tokenizer.get_vocab_size() + s.context_length) * width
        return embeddings + s.num_layers * block + 2 * width + width * num_labels + num_labels

    def _check_memory(self, num_labels: int, training: bool) -> None:
        # refused before allocating: a model too large for memory would otherwise swap, then be killed
        smaller = "Use a smaller [[--emb-dim||emb_dim]], [[--num-layers||num_layers]] or [[--vocab-size||vocab_size]]"
        check_memory(self.name, self.parameter_count(num_labels), smaller, training=training)

    def build(self, num_labels: int) -> nn.Module:
        self._check_memory(num_labels, training=True)
        return self._module(num_labels)

    def _module(self, num_labels: int) -> BackboneClassifier:
        from transformers import GPT2Model

        config = self._config()
        return BackboneClassifier(GPT2Model(config), config.n_embd, num_labels, "last", self.settings.dropout)

    def defaults(self) -> TrainingDefaults:
        return TrainingDefaults(lr=1e-3, epochs=20, batch_size=32)

    def save(self, folder: Path, module: nn.Module) -> dict[str, Any]:
        self.tokenizer.save(str(folder / TOKENIZER_FILE))
        save_weights(module, folder)
        return {"max_length": self._max_length}

    def restore_preprocessing(self, folder: Path, entries: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._max_length = int(entries["max_length"])

    def restore(self, folder: Path, entries: dict[str, Any], num_labels: int) -> nn.Module:
        self.restore_preprocessing(folder, entries)
        self._check_memory(num_labels, training=False)  # predicting: the weights only
        module = self._module(num_labels)
        load_weights(module, folder)
        return module

    def export_module(self, module: nn.Module) -> nn.Module:
        return eager_copy(module)

    def describe(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.get_vocab_size(), "max_length": self._max_length}

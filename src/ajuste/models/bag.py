"""fastText-style classifier: the mean of word and hashed n-gram embeddings, then one linear layer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ajuste.errors import ConfigError
from ajuste.models.base import Bars, Family, PaddedSum, TrainingDefaults, load_weights, padded_bags, save_weights
from ajuste.models.memory import check_memory
from ajuste.models.settings import BagSettings, FamilySettings
from ajuste.tokenize.words import WordVocabulary

__all__ = ["BagFamily", "BagOfEmbeddings", "EmbeddingBagFamily", "Vocabulary"]

VOCAB_FILE = "vocabulary.json"


#: The default search space of the family (see ajuste.search.space for the format).
DEFAULT_SPACE: dict[str, Any] = {
    "model.embed_dim": {"low": 16, "high": 256, "step": 16},
    "model.ngrams": {"low": 1, "high": 3},
    "model.min_freq": [1, 2],
    "train.lr": {"low": 1e-3, "high": 0.3, "log": True},
    "train.batch_size": [16, 32, 64, 128],
    "train.epochs": {"low": 3, "high": 20},
    "train.weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
    "train.warmup": {"low": 0.0, "high": 0.2},
}


class BagOfEmbeddings(nn.Module):
    """``EmbeddingBag`` (mean) → ``Linear``; weights uniform in ±0.5 and bias zero, as in the seed text."""

    def __init__(self, num_embeddings: int, embed_dim: int, num_labels: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(num_embeddings, embed_dim, mode="mean")
        self.fc = nn.Linear(embed_dim, num_labels)
        init_range = 0.5
        nn.init.uniform_(self.embedding.weight, -init_range, init_range)
        nn.init.uniform_(self.fc.weight, -init_range, init_range)
        nn.init.zeros_(self.fc.bias)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(ids, offsets))


class Vocabulary(Protocol):
    """How a bag reads a text: one embedding row per id (words and n-grams, or an encoder's pieces)."""

    @property
    def size(self) -> int: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def to_dict(self) -> dict[str, Any]: ...


class EmbeddingBagFamily(Family):
    """What every family whose module is a :class:`BagOfEmbeddings` shares: truncated ids, bags as batches,
    restoring, export. A subclass says how texts become ids and how the embedding table starts."""

    settings: FamilySettings
    vocabulary: Vocabulary | None

    @property
    def max_length(self) -> int | None:
        return self.settings.max_length

    def _vocabulary(self) -> Vocabulary:
        if self.vocabulary is None:
            raise RuntimeError("fit_preprocessing() must run before encode()")
        return self.vocabulary

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        limit = self.settings.max_length
        encoded = self._vocabulary().encode_batch(texts)
        return [ids[:limit] for ids in encoded] if limit else encoded

    def collate(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        offsets = torch.zeros(len(sequences), dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)[:-1]
        ids = torch.tensor([i for s in sequences for i in s], dtype=torch.long)
        return {"ids": ids, "offsets": offsets}

    @property
    def width(self) -> int:
        """Width of the embedding table's rows."""
        raise NotImplementedError

    def parameter_count(self, num_labels: int) -> int:
        """The parameters :meth:`build` will allocate: the embedding table and the head."""
        width = self.width
        return self._vocabulary().size * width + width * num_labels + num_labels

    def _check_memory(self, num_labels: int, training: bool) -> None:
        raise NotImplementedError

    def _module(self, num_labels: int) -> BagOfEmbeddings:
        return BagOfEmbeddings(self._vocabulary().size, self.width, num_labels)

    def restore(self, folder: Path, entries: dict[str, Any], num_labels: int) -> nn.Module:
        self.restore_preprocessing(folder, entries)
        self._check_memory(num_labels, training=False)  # predicting: the weights only
        module = self._module(num_labels)
        load_weights(module, folder)
        return module

    def export_inputs(self, sequences: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        batch = self.collate(sequences)
        return padded_bags(batch["ids"], batch["offsets"])

    def export_module(self, module: nn.Module) -> nn.Module:
        if not isinstance(module, BagOfEmbeddings):
            raise TypeError(f"expected a BagOfEmbeddings module, got {type(module).__name__}")
        return PaddedSum(module.embedding.weight, module.fc)


class BagFamily(EmbeddingBagFamily):
    name = "bag"

    def __init__(self, settings: BagSettings) -> None:
        self.settings: BagSettings = settings
        self.vocabulary: WordVocabulary | None = None

    def fit_preprocessing(self, texts: Sequence[str], bars: Bars | None = None) -> None:
        s = self.settings
        vocabulary = WordVocabulary.fit(texts, min_freq=s.min_freq, ngrams=s.ngrams, buckets=s.buckets)
        if not vocabulary.words and not any(any(vocabulary.encode(text)) for text in texts):
            # every text would be the unknown word alone: a model that answers one class for all
            raise ConfigError(
                "the bag vocabulary of the training texts is empty: "
                + (f"no word seen at least min_freq={s.min_freq} times" if s.min_freq > 1 else "no words in the texts"),
                fix="Lower [[--min-freq||min_freq]]." if s.min_freq > 1 else "Give texts with words.",
            )
        self.vocabulary = vocabulary

    @property
    def width(self) -> int:
        return self.settings.embed_dim

    def _check_memory(self, num_labels: int, training: bool) -> None:
        # refused before allocating: a table too large for memory would otherwise swap, then be killed
        smaller = (
            "Use a smaller [[--buckets||buckets]] or [[--embed-dim||embed_dim]] (or [[--ngrams 1||ngrams=1]], which "
            "needs no buckets)"
        )
        check_memory(self.name, self.parameter_count(num_labels), smaller, training=training)

    def build(self, num_labels: int) -> nn.Module:
        self._check_memory(num_labels, training=True)
        return self._module(num_labels)

    def defaults(self) -> TrainingDefaults:
        return TrainingDefaults(lr=5e-3, epochs=10, batch_size=32)

    def save(self, folder: Path, module: nn.Module) -> dict[str, Any]:
        (folder / VOCAB_FILE).write_text(json.dumps(self._vocabulary().to_dict()), encoding="utf-8")
        save_weights(module, folder)
        return {}

    def restore_preprocessing(self, folder: Path, entries: dict[str, Any]) -> None:
        self.vocabulary = WordVocabulary.from_dict(json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8")))

    def describe(self) -> dict[str, Any]:
        vocabulary = self.vocabulary
        if vocabulary is None:
            raise RuntimeError("fit_preprocessing() must run before describe()")
        return {"words": len(vocabulary.words), "embedding_rows": vocabulary.size}

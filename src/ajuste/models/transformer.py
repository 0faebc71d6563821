"""A transformer backbone with a new classification head, shared by the ``gpt`` and pretrained families.

The head sees one vector per text, chosen by the pooling: the last real token for decoders (the
position that has attended to the whole text), the mean of the real tokens, the first token, or the
backbone's own pooled output. Padding is always on the right, so the attention mask alone tells where
each text ends, whatever the pad token is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["BackboneClassifier", "Pooling", "eager_copy", "find_blocks", "freeze_below"]

Pooling = Literal["cls", "mean", "pooler", "last"]


class _Reached(Exception):
    """Raised by the hook on the first trainable block: the frozen part has run, the rest need not."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def _hidden_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


class BackboneClassifier(nn.Module):
    """``backbone`` → pooling → dropout → ``Linear(hidden, num_labels)``."""

    def __init__(
        self, backbone: nn.Module, hidden_size: int, num_labels: int, pooling: Pooling, dropout: float
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling: Pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_labels)
        # Modules below the freeze boundary stay in eval mode while the rest trains, so that their
        # dropout is off: a frozen layer then computes the same function in every epoch.
        self._frozen: list[nn.Module] = []
        #: Where the frozen part ends: ``None`` (nothing frozen to skip: ``all``, ``lora``), ``-1`` (the
        #: whole backbone: ``head``, the pooled vector is the boundary) or the number of frozen blocks.
        self.boundary: int | None = None
        self._blocks: list[nn.Module] = []  # the backbone's block stack (a plain list: not registered twice)
        self._block_returns_tuple: bool | None = None  # older transformers return (hidden,) from a block
        #: A hash of the frozen weights, set by the first user of the cache (they never change).
        self.frozen_fingerprint: str | None = None

    @property
    def frozen_modules(self) -> list[nn.Module]:
        return list(self._frozen)

    def set_frozen(self, modules: list[nn.Module], boundary: int | None = None) -> None:
        self._frozen = modules
        self.boundary = boundary
        if boundary is not None and boundary >= 0:
            self._blocks = list(find_blocks(self.backbone)[1])
        self.train(self.training)

    def train(self, mode: bool = True) -> BackboneClassifier:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, boundary_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits; given ``boundary_states`` (what :meth:`frozen_states` returned), only the trainable part runs."""
        if boundary_states is None:
            pooled = self._pooled(input_ids, attention_mask)
        elif self.boundary == -1:
            pooled = boundary_states
        else:
            if self._block_returns_tuple is None and self.boundary:  # learn it from one token's frozen pass
                self.frozen_states(input_ids[:1, :1], attention_mask[:1, :1])
            with self._from_boundary(boundary_states):
                pooled = self._pooled(input_ids, attention_mask)
        return self.head(self.dropout(pooled))

    def _pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return outputs.pooler_output
        return pool(outputs.last_hidden_state, attention_mask, self.pooling)

    # -- the freeze boundary ------------------------------------------------------------------------

    def frozen_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What the frozen part computes for a batch: the pooled vectors (``head``) or the hidden states
        entering the first trainable block, ``(batch, width, hidden)``. Frozen modules run in eval mode."""
        if self.boundary is None:
            raise RuntimeError("this model has no freeze boundary: every layer trains")
        with torch.no_grad():
            if self.boundary == -1:
                return self._pooled(input_ids, attention_mask)
            blocks = self._blocks

            def reached(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                raise _Reached(_hidden_argument(args, kwargs))

            def returned(_module: nn.Module, _args: Any, output: Any) -> None:
                self._block_returns_tuple = isinstance(output, tuple)

            handles = [blocks[self.boundary].register_forward_pre_hook(reached, with_kwargs=True)]
            if self.boundary > 0:
                handles.append(blocks[self.boundary - 1].register_forward_hook(returned))
            try:
                self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            except _Reached as stop:
                return stop.hidden
            finally:
                for handle in handles:
                    handle.remove()
        raise RuntimeError("the backbone never called its block stack")

    @contextmanager
    def _from_boundary(self, states: torch.Tensor) -> Iterator[None]:
        """Run the backbone's own forward, which builds the masks and positions for the batch as always, with
        the frozen blocks passing their input through and ``states`` put in front of the first trainable one."""
        blocks, boundary = self._blocks, self.boundary or 0
        as_tuple = bool(self._block_returns_tuple)

        def skip(*args: Any, **kwargs: Any) -> Any:
            hidden = _hidden_argument(args, kwargs)
            return (hidden,) if as_tuple else hidden

        def inject(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (states.to(args[0].dtype), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": states.to(kwargs["hidden_states"].dtype)}

        skipped = list(blocks[:boundary])
        for block in skipped:
            block.forward = skip
        handle = blocks[boundary].register_forward_pre_hook(inject, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
            for block in skipped:
                del block.forward


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One vector per sequence from right-padded hidden states."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = attention_mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def find_blocks(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's stack of transformer blocks: its longest ``ModuleList`` of same-class modules."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) == 1 and (best is None or len(module) > len(best[1])):
                best = (name, module)
    if best is None:
        raise ValueError(f"no stack of transformer blocks found in {type(backbone).__name__}")
    return best


def freeze_below(backbone: nn.Module, trainable_blocks: int) -> list[nn.Module]:
    """Freeze everything that runs before the last ``trainable_blocks`` blocks; return the frozen modules.

    "Before" follows registration order, which in transformer implementations is the order of the
    forward pass: embeddings, then blocks, then the final norm or pooler. Modules after the block stack
    (GPT-2's ``ln_f``, BERT's pooler) stay trainable, as does everything above the boundary.
    """
    path, blocks = find_blocks(backbone)
    boundary = len(blocks) - trainable_blocks
    frozen: list[nn.Module] = []
    parent = backbone
    for part in path.split(".") if path else []:
        for name, child in parent.named_children():
            if name == part:
                break
            frozen.append(child)
        parent = getattr(parent, part)
    frozen.extend(blocks[:boundary])
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def eager_copy(module: nn.Module) -> nn.Module:
    """A copy of a :class:`BackboneClassifier` whose attention is written out in plain operators ("eager").

    For an exported graph: ONNX Runtime runs the eager attention of MiniLM faster than the exported
    scaled-dot-product attention (measured by bench/bench_export.py), and its int8 quantization covers it.
    """
    if not isinstance(module, BackboneClassifier):
        raise TypeError(f"expected a BackboneClassifier, got {type(module).__name__}")
    copy = deepcopy(module)
    setter = getattr(copy.backbone, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    return copy

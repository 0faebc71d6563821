"""A transformer backbone with a new classification head, shared by the ``gpt`` and pretrained families.

The head sees one vector per text, chosen by the pooling: the last real token for decoders (the
position that has attended to the whole text), the mean of the real tokens, the first token, or the
backbone's own pooled output. Padding is always on the right, so the attention mask alone tells where
each text ends, whatever the pad token is.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["BackboneClassifier", "Pooling", "find_blocks", "freeze_below"]

Pooling = Literal["cls", "mean", "pooler", "last"]


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

    def set_frozen(self, modules: list[nn.Module]) -> None:
        self._frozen = modules
        self.train(self.training)

    def train(self, mode: bool = True) -> BackboneClassifier:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            pooled = outputs.pooler_output
        else:
            pooled = pool(outputs.last_hidden_state, attention_mask, self.pooling)
        return self.head(self.dropout(pooled))


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

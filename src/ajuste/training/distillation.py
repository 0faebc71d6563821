"""Learning from a teacher: the teacher's probabilities as targets, and the loss that mixes them with the labels.

The loss is Hinton et al.'s (2015), per text: the KL divergence between the teacher's and the student's
distributions, both softened by the temperature ``T`` and scaled by ``T²`` (so that its gradients keep the
size of a plain cross-entropy's whatever ``T``), mixed with the cross-entropy on the true label with weight
``alpha``. A text without a true label (an augmented copy, an unlabelled text) learns from the teacher alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ajuste.errors import ConfigError

__all__ = ["DistillationLoss", "SoftTargets", "TeacherTargets"]


@dataclass(frozen=True)
class TeacherTargets:
    """What a student learns from beside the labels: the teacher's class probabilities of every training text
    (columns in the student's class order), whether each text carries a true label, and the loss's settings."""

    probabilities: np.ndarray
    labelled: Sequence[bool]
    temperature: float = 2.0
    alpha: float = 0.5

    def soft_targets(self, texts: int, classes: int) -> SoftTargets:
        """The targets as tensors, checked against the training texts and the classes."""
        probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if probabilities.shape != (texts, classes):
            raise ConfigError(
                "the teacher's probabilities do not match the training data",
                expected=f"one row per training text and one column per class: ({texts}, {classes})",
                found=str(probabilities.shape),
            )
        if len(self.labelled) != texts:
            raise ConfigError(
                "the teacher's labelled flags do not match the training data",
                expected=f"{texts} flags",
                found=str(len(self.labelled)),
            )
        if not self.temperature > 0 or not 0 <= self.alpha <= 1:
            raise ConfigError(
                "invalid distillation settings",
                expected="temperature > 0 and alpha between 0 and 1",
                found=f"temperature {self.temperature}, alpha {self.alpha}",
            )
        # Log-probabilities stand for the teacher's logits: softmax(log p / T) == softmax(logits / T).
        log_probs = torch.from_numpy(np.log(np.clip(probabilities, 1e-12, 1.0))).float()
        labelled = torch.tensor([bool(flag) for flag in self.labelled], dtype=torch.bool)
        return SoftTargets(log_probs, labelled)


@dataclass(frozen=True)
class SoftTargets:
    """The teacher's log-probabilities and labelled flags of the training texts, as the training loop uses them."""

    log_probs: torch.Tensor
    labelled: torch.Tensor


class DistillationLoss(nn.Module):
    """``(1 - alpha·l)·T²·KL(teacher_T ‖ student_T) + alpha·l·CE(student, label)`` per text (``l``: whether the
    text has a true label), averaged over the batch; ``hard`` is the compiled cross-entropy (class weights and
    label smoothing apply to the true labels)."""

    def __init__(self, temperature: float, alpha: float, hard: nn.CrossEntropyLoss) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.hard = nn.CrossEntropyLoss(weight=hard.weight, label_smoothing=hard.label_smoothing, reduction="none")

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, teacher_log_probs: torch.Tensor, labelled: torch.Tensor
    ) -> torch.Tensor:
        t = self.temperature
        student = torch.log_softmax(logits / t, dim=1)
        teacher = torch.log_softmax(teacher_log_probs / t, dim=1)
        soft = nn.functional.kl_div(student, teacher, reduction="none", log_target=True).sum(dim=1) * (t * t)
        mix = self.alpha * labelled.float()
        return ((1.0 - mix) * soft + mix * self.hard(logits, targets)).mean()

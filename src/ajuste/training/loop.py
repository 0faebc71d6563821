"""The one training loop, shared by every model family and every fine-tuning style.

A family supplies token ids and a collate function; this module batches by length, runs the forward
and backward passes, steps the optimizer and schedule, validates after each epoch, keeps the best
weights, and calls the callbacks. Nothing here knows which family it is training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ajuste.errors import TrainingError
from ajuste.models.boundary import BoundaryStates, autocast
from ajuste.tokenize.batching import length_grouped_batches, sorted_batches, token_batches
from ajuste.training.callbacks import Callback, History, is_improvement
from ajuste.training.distillation import SoftTargets
from ajuste.training.metrics import epoch_metrics

__all__ = ["Batches", "EpochPlan", "EpochStep", "GradientEpochs", "SolvedEpoch", "predict_logits", "run_training"]

Collate = Callable[[Sequence[Sequence[int]]], dict[str, torch.Tensor]]


@dataclass
class Batches:
    """Encoded texts, their targets, the family's collate function, when the model has a freeze boundary the
    frozen part's output for every text (then only the trainable part runs), and when a student learns from a
    teacher the teacher's soft targets."""

    sequences: list[list[int]]
    targets: torch.Tensor
    collate: Collate
    features: BoundaryStates | None = None
    soft: SoftTargets | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    def lengths(self) -> list[int]:
        return [len(s) for s in self.sequences]

    def inputs(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The module's keyword arguments for the texts ``indices``, padded to the longest of them."""
        return batch_inputs(self.sequences, self.collate, self.features, indices)


def batch_inputs(
    sequences: Sequence[Sequence[int]], collate: Collate, features: BoundaryStates | None, indices: Sequence[int]
) -> dict[str, torch.Tensor]:
    inputs = collate([sequences[i] for i in indices])
    if features is not None:
        inputs["boundary_states"] = features.gather(indices, int(inputs["input_ids"].shape[1]))
    return inputs


@dataclass
class EpochPlan:
    """What the loop needs beyond the data: the numbers of ``fit`` and the objects of ``compile``."""

    epochs: int
    batch_size: int
    grad_accum: int
    max_grad_norm: float | None
    monitor: str
    restore_best: bool
    seed: int
    precision: str = "fp32"


def predict_logits(
    module: nn.Module,
    sequences: Sequence[Sequence[int]],
    collate: Collate,
    batch_size: int | None = None,
    *,
    features: BoundaryStates | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits of every sequence, in input order, computed in eval mode in length-sorted batches
    (of ``batch_size`` texts, or unset: of about ``TOKENS_PER_BATCH`` padded tokens)."""
    was_training = module.training
    module.eval()
    outputs: list[torch.Tensor] = []
    order: list[int] = []
    with torch.inference_mode(), autocast(precision):
        lengths = [len(s) for s in sequences]
        batches = sorted_batches(lengths, batch_size) if batch_size else token_batches(lengths)
        for batch in batches:
            outputs.append(module(**batch_inputs(sequences, collate, features, batch)).float())
            order.extend(batch)
    module.train(was_training)
    if not outputs:
        return torch.empty(0, 0)
    logits = torch.cat(outputs)
    result = torch.empty_like(logits)
    result[torch.tensor(order)] = logits
    return result


def _validate(module: nn.Module, data: Batches, num_labels: int, precision: str) -> dict[str, float]:
    logits = predict_logits(module, data.sequences, data.collate, features=data.features, precision=precision)
    loss = float(nn.functional.cross_entropy(logits, data.targets))
    scores = epoch_metrics(data.targets.tolist(), logits.argmax(dim=1).tolist(), num_labels)
    return {"val_loss": loss, **{f"val_{k}": v for k, v in scores.items()}}


def run_training(
    module: nn.Module,
    step: EpochStep,
    val: Batches | None,
    plan: EpochPlan,
    callbacks: Sequence[Callback],
    should_stop: Callable[[], bool],
    num_labels: int,
) -> History:
    """Train ``module`` for ``plan.epochs`` epochs (or until a callback stops it) and return the history."""
    history = History()
    best_row: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    for callback in callbacks:
        callback.on_train_begin({"epochs": plan.epochs, "steps_per_epoch": step.steps})
    for epoch in range(1, plan.epochs + 1):
        started = time.perf_counter()
        for callback in callbacks:
            callback.on_epoch_begin(epoch, {})
        row: dict[str, Any] = {"epoch": epoch, **step(epoch)}
        if val is not None and len(val):
            validating = time.perf_counter()
            row.update(_validate(module, val, num_labels, plan.precision))
            row["seconds_validating"] = time.perf_counter() - validating
        if step.lr is not None:
            row["lr"] = step.lr
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        if row.get(plan.monitor) is not None and is_improvement(plan.monitor, row, best_row):
            best_row = row
            history.best_epoch = epoch
            if plan.restore_best:
                best_state = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
        for callback in callbacks:
            callback.on_epoch_end(epoch, row)
        if should_stop():
            history.stopped_early = epoch < plan.epochs
            break
    if plan.restore_best and best_state is not None and history.best_epoch != len(history.epochs):
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if name in best_state:
                    parameter.copy_(best_state[name])
    for callback in callbacks:
        callback.on_train_end({"best_epoch": history.best_epoch})
    return history


class EpochStep(Protocol):
    """One epoch of training: returns the epoch's training loss and scores."""

    @property
    def steps(self) -> int: ...

    def __call__(self, epoch: int) -> dict[str, float]: ...

    @property
    def lr(self) -> float | None: ...


@dataclass
class GradientEpochs:
    """Epochs of minibatch gradient descent over length-grouped batches (every family but the solved ones)."""

    module: nn.Module
    train: Batches
    plan: EpochPlan
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    callbacks: Sequence[Callback]
    num_labels: int

    @property
    def steps(self) -> int:
        return math.ceil(len(self.train) / self.plan.batch_size)

    @property
    def lr(self) -> float | None:
        return float(self.optimizer.param_groups[0]["lr"])

    def __call__(self, epoch: int) -> dict[str, float]:
        module, train, plan = self.module, self.train, self.plan
        module.train()
        total_loss, seen = 0.0, 0
        predicted: list[int] = []
        truth: list[int] = []
        batches = length_grouped_batches(train.lengths(), plan.batch_size, seed=plan.seed * 10_007 + epoch)
        trainable = [p for p in module.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(batches, start=1):
            targets = train.targets[batch]
            with autocast(plan.precision):  # bf16 matrix products, fp32 weights, optimizer and loss
                logits = module(**train.inputs(batch)).float()
            if train.soft is None:
                loss = self.loss_fn(logits, targets)
            else:
                loss = self.loss_fn(logits, targets, train.soft.log_probs[batch], train.soft.labelled[batch])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the training loss became {loss.item()} at epoch {epoch}, batch {step}",
                    fix="Lower the learning rate ([[--lr||lr]]) or enable gradient clipping "
                    "([[--max-grad-norm||max_grad_norm]]).",
                )
            (loss / plan.grad_accum).backward()
            if step % plan.grad_accum == 0 or step == len(batches):
                if plan.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(trainable, plan.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            total_loss += loss.item() * len(batch)
            seen += len(batch)
            predicted += logits.argmax(dim=1).tolist()
            truth += targets.tolist()
            for callback in self.callbacks:
                callback.on_train_batch_end(step, {"loss": loss.item()})
        scores = epoch_metrics(truth, predicted, self.num_labels)
        return {"loss": total_loss / max(1, seen), **scores}


@dataclass
class SolvedEpoch:
    """The one "epoch" of a family fitted by a solver: ``solve`` fits the module, then the training split
    is scored like any epoch's, so the history, validation, callbacks and pruning are the same."""

    module: nn.Module
    train: Batches
    solve: Callable[[], None]
    num_labels: int
    precision: str = "fp32"
    steps: int = 1
    lr: float | None = None

    def __call__(self, epoch: int) -> dict[str, float]:
        self.solve()
        scores = _validate(self.module, self.train, self.num_labels, self.precision)
        return {name.removeprefix("val_"): value for name, value in scores.items()}

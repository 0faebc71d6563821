"""``EnsembleClassifier``: several trained classifiers whose class probabilities are averaged, with weights.

It is used like any classifier (``predict``, ``predict_proba``, ``evaluate``, ``describe``, ``save``) and its
model folder is data like any other: ``config.json`` says ``"runtime": "ensemble"`` and gives one weight per
member, and each member is an ordinary model folder in ``members/<i>/`` (safetensors and JSON). The average is
taken in log space (a log-sum-exp of the members' log-probabilities plus the log-weights), so that
``evaluate``'s loss is the exact cross-entropy of the averaged probabilities, however confident a member is.
An ensemble predicts and evaluates; it is never trained (its members were) nor exported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ajuste.errors import ConfigError, NotFittedError, RunFolderError
from ajuste.models import Family
from ajuste.training.classifier import TextClassifier, load_model
from ajuste.training.light import ENSEMBLE_RUNTIME, FORMAT, FORMAT_VERSION, MEMBERS_DIR, MODEL_CONFIG

__all__ = ["EnsembleClassifier", "load_ensemble", "log_probabilities"]


def log_probabilities(
    classifier: TextClassifier, texts: Sequence[str], *, batch_size: int | None = None, precision: str | None = None
) -> torch.Tensor:
    """The classifier's log-probabilities of ``texts`` in float64, one row per text (columns: ``classes_``).

    Taken from the logits, not from ``predict_proba``: a confident member's float32 probabilities round to 0,
    whose logarithm would make an average's loss infinite."""
    family, module, classes = classifier._require_fitted("predict")
    logits = classifier._logits(family, module, list(texts), batch_size, precision)
    if logits.numel() == 0:
        return torch.zeros((0, len(classes)), dtype=torch.float64)
    return torch.log_softmax(logits.double(), dim=1)


class EnsembleClassifier(TextClassifier):
    """The weighted average of the class probabilities of ``members`` (trained classifiers of the same classes)."""

    def __init__(self, members: Sequence[TextClassifier], weights: Sequence[float]) -> None:
        if not members or len(members) != len(weights):
            raise ConfigError(
                "an ensemble needs one weight per member",
                found=f"{len(members)} members and {len(weights)} weights",
            )
        if any(not math.isfinite(w) or w <= 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
            raise ConfigError(
                "ensemble weights must be positive and sum to 1", found=", ".join(f"{w:g}" for w in weights)
            )
        classes = [member._require_fitted("predict")[2] for member in members]  # any model that predicts, exported too
        if any(c != classes[0] for c in classes):
            raise ConfigError(
                "the members of an ensemble must predict the same classes, in the same order",
                found="; ".join(", ".join(c) for c in classes)[:200],
            )
        # The first member (the best trial's model) stands for the ensemble where one setting is asked for.
        super().__init__(members[0].settings, labels=classes[0])
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.family_, self.classes_ = members[0].family_, list(classes[0])

    @property
    def is_fitted(self) -> bool:
        return True

    def _require_fitted(self, action: str) -> tuple[Family, nn.Module, list[str]]:
        if action not in ("predict", "evaluate", "describe", "save"):
            raise ConfigError(
                f"cannot {action} an ensemble",
                fix="Use one of its members (ajuste.load(RUN/model/members/0) is the best trial's model), or a run "
                "tuned with [[--ensemble 1||ensemble=1]]; `ajuste export` exports each member.",
            )
        if self.family_ is None or self.classes_ is None:
            raise NotFittedError(f"cannot {action}: the ensemble was not opened", fix="Use ajuste.load(RUN).")
        return self.family_, nn.Identity(), self.classes_

    def _logits(
        self, family: Family, module: nn.Module, texts: Sequence[str], batch_size: int | None, precision: str | None
    ) -> torch.Tensor:
        """The logarithm of the averaged probabilities: softmax gives the average back, and cross-entropy its
        exact loss."""
        parts = [
            log_probabilities(member, texts, batch_size=batch_size, precision=precision) + math.log(weight)
            for member, weight in zip(self.members, self.weights)
        ]
        return torch.logsumexp(torch.stack(parts), dim=0).float()

    def write_model(self, folder: Path) -> None:
        """Each member's own model folder into ``members/<i>/``, then the ensemble's config.json (its weights)."""
        _, _, classes = self._require_fitted("save")
        for index, member in enumerate(self.members):
            target = folder / MEMBERS_DIR / str(index)
            target.mkdir(parents=True)
            member.write_model(target)
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "runtime": ENSEMBLE_RUNTIME,
            "labels": classes,
            "members": [{"weight": weight} for weight in self.weights],
        }
        (folder / MODEL_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    def describe(self) -> dict[str, Any]:
        described = [member.describe() for member in self.members]
        return {
            "family": "ensemble",
            "runtime": ENSEMBLE_RUNTIME,
            "labels": list(self.classes_ or []),
            "parameters": sum(int(d.get("parameters") or 0) for d in described),
            "trainable_parameters": 0,
            "members": [
                {"family": d["family"], "weight": weight, "parameters": d.get("parameters")}
                for d, weight in zip(described, self.weights)
            ],
        }

    def __repr__(self) -> str:
        members = ", ".join(f"{m.settings.family} x{w:.2f}" for m, w in zip(self.members, self.weights))
        return f"EnsembleClassifier({members})"


def load_ensemble(folder: Path, config: dict[str, Any], *, trust_remote_code: bool = False) -> EnsembleClassifier:
    """The ensemble of model folder ``folder`` (its config already checked by ``read_model_config``): every
    member loaded as any model folder is, and refused when it is itself an ensemble or predicts other classes."""
    labels = [str(label) for label in config["labels"]]
    members = []
    for index in range(len(config["members"])):
        path = folder / MEMBERS_DIR / str(index)
        member = load_model(path, trust_remote_code=trust_remote_code)
        if isinstance(member, EnsembleClassifier) or member.classes_ != labels:
            raise RunFolderError(
                f"the ensemble member {path} is damaged or belongs to another model",
                expected=f"a single model of the classes {', '.join(labels)}",
                found="an ensemble" if isinstance(member, EnsembleClassifier) else ", ".join(member.classes_ or []),
                fix="Tune again, or restore the run folder from a copy.",
            )
        members.append(member)
    return EnsembleClassifier(members, [float(m["weight"]) for m in config["members"]])

"""Classification metrics, pure functions of true and predicted labels (scikit-learn does the counting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["accuracy_interval", "classification_metrics", "epoch_metrics", "json_safe"]

#: How many bootstrap draws are held at once (8 bytes each, twice: the indices and the outcomes they pick).
_DRAWS_PER_BLOCK = 1 << 21


def accuracy_interval(correct: np.ndarray, seed: int = 0, resamples: int = 2000, level: float = 0.95) -> list[float]:
    """A percentile bootstrap interval for accuracy: how sure the number is, given how few texts it saw.

    A function of how many texts were right and how many were seen alone (the 0/1 outcomes are sorted before the
    resampling): the same model on the same texts, in any order, from ``train``, ``tune`` or ``evaluate``, gets
    the same interval."""
    if len(correct) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    outcomes = np.sort(correct)
    # Resamples drawn a block of rows at a time (the same stream as one draw of them all): at 2,000 resamples,
    # one array of every draw would take 16 bytes a text a resample, 4.5 GB for a training split of 140,000.
    rows = max(1, _DRAWS_PER_BLOCK // len(correct))
    scores = np.concatenate(
        [
            outcomes[rng.integers(0, len(correct), size=(min(rows, resamples - start), len(correct)))].mean(axis=1)
            for start in range(0, resamples, rows)
        ]
    )
    tail = (1 - level) / 2
    return [float(np.quantile(scores, tail)), float(np.quantile(scores, 1 - tail))]


def epoch_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> dict[str, float]:
    """The cheap metrics reported after every epoch: accuracy and macro-F1."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=list(range(num_labels)), zero_division=0)),
    }


def classification_metrics(
    y_true: Sequence[int], probabilities: np.ndarray, labels: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """Accuracy (with a 95% bootstrap interval), macro-F1, per-class precision/recall/F1, confusion matrix, loss."""
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    truth = np.asarray(y_true, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=indices, zero_division=0)
    result: dict[str, Any] = epoch_metrics(truth.tolist(), predicted.tolist(), len(labels))
    result["accuracy_ci95"] = accuracy_interval((truth == predicted).astype(np.float64), seed)
    result["loss"] = float(log_loss(truth, probabilities, labels=indices)) if len(truth) else float("nan")
    result["n"] = len(truth)
    result["per_class"] = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    }
    result["labels"] = list(labels)
    result["confusion_matrix"] = confusion_matrix(truth, predicted, labels=indices).tolist()
    return result


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN (an F1 of a class never predicted is one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

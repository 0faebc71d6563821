"""Which trials make the final ensemble, and with which weights: greedy selection on validation.

Caruana et al. (2004), "Ensemble selection from libraries of models": start from the best model, then add,
with replacement, the candidate whose addition most lowers the ensemble's validation log-loss without
lowering its validation score (the search metric), until no addition does; a member's weight is how often
it was picked. Starting from the best trial and adding only what improves makes the ensemble at least as
good as the best trial on validation, by the loss and by the metric the search chose it with; picking with
replacement (a member picked twice weighs twice) lets the weights settle without fitting them freely to a
small validation split. The loss leads rather than accuracy: on a few hundred validation texts accuracy
ties too often to tell two additions apart, and averaging probabilities is what lowers it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from ajuste.search.study import best_trials
from ajuste.training.metrics import epoch_metrics

__all__ = [
    "CHOSEN_BY",
    "PICKS_PER_MEMBER",
    "VAL_LOG_PROBABILITIES",
    "candidates",
    "encode",
    "greedy_counts",
    "log_loss",
    "stored",
    "val_metrics",
]

#: How the members were chosen, as run.yaml records it.
CHOSEN_BY = (
    "greedy selection with replacement (Caruana et al., 2004) among the best trials with distinct settings, "
    "starting from the best trial: each pick lowers the validation log-loss without lowering the search's "
    "validation score; weights: how often each member was picked"
)
#: Picks allowed per member: enough for weights finer than 1/K, few enough not to fit validation noise.
PICKS_PER_MEMBER = 4
#: Where each trial keeps its model's validation log-probabilities (float32, base64), so that the members of an
#: ensemble are chosen without training any candidate again.
VAL_LOG_PROBABILITIES = "val_log_probabilities"


def candidates(study: optuna.Study, size: int) -> list[FrozenTrial]:
    """The best completed trials with distinct settings, best first: at most ``2 * size`` of them (a trial
    repeated with the same settings and seed is the same model, and adds nothing to an average)."""
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for trial in best_trials(study, len(study.get_trials(deepcopy=False))):
        key = json.dumps(trial.user_attrs.get("settings") or trial.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == 2 * size:
            break
    return chosen


def encode(log_probabilities: np.ndarray) -> dict[str, object]:
    """A trial's validation log-probabilities (one row per validation text), as its user attribute keeps them:
    float32, a few kilobytes for a thousand texts, exact enough for the loss to agree with an evaluation's."""
    rows = np.ascontiguousarray(log_probabilities, dtype="<f4")
    return {"shape": list(rows.shape), "float32": base64.b64encode(rows.tobytes()).decode("ascii")}


def stored(trial: FrozenTrial, texts: int, classes: int) -> np.ndarray | None:
    """The probabilities a trial's model gave the validation texts, as :func:`encode` kept them; None when the trial
    kept none (a study from before they were kept, a cross-validated trial) or kept them for other texts."""
    kept = trial.user_attrs.get(VAL_LOG_PROBABILITIES)
    if not isinstance(kept, dict) or kept.get("shape") != [texts, classes]:
        return None
    try:
        rows = np.frombuffer(base64.b64decode(str(kept["float32"]), validate=True), dtype="<f4")
    except (KeyError, ValueError):
        return None
    if rows.size != texts * classes:
        return None
    return np.exp(rows.astype(np.float64).reshape(texts, classes))


def val_metrics(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and loss of probability rows against target class indices: what the record compares."""
    predicted = probabilities.argmax(axis=1)
    return {
        **epoch_metrics(targets.tolist(), predicted.tolist(), probabilities.shape[1]),
        "loss": log_loss(probabilities, targets),
    }


def log_loss(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of probability rows against target class indices."""
    picked = probabilities[np.arange(len(targets)), targets]
    return float(-np.mean(np.log(np.maximum(picked, np.finfo(np.float64).tiny))))


def _score(probabilities: np.ndarray, targets: np.ndarray, metric: str) -> float:
    """The search's validation score of probability rows, higher is better (the loss counts as its negative)."""
    if metric == "loss":
        return -log_loss(probabilities, targets)
    predicted = probabilities.argmax(axis=1)
    return epoch_metrics(targets.tolist(), predicted.tolist(), probabilities.shape[1])[metric]


def greedy_counts(probabilities: Sequence[np.ndarray], targets: np.ndarray, size: int, metric: str) -> list[int]:
    """How often each candidate is picked (the first is the best trial's, picked first): at most ``size``
    distinct members and ``PICKS_PER_MEMBER * size`` picks; a pick is made only when it lowers the log-loss of
    the average and does not lower its ``metric`` (ties go to the earlier, better-ranked candidate)."""
    counts = [0] * len(probabilities)
    counts[0] = 1
    total = np.array(probabilities[0], dtype=np.float64)
    loss, score = log_loss(total, targets), _score(total, targets, metric)
    for picks in range(1, PICKS_PER_MEMBER * size):
        members = sum(1 for c in counts if c)
        allowed = range(len(probabilities)) if members < size else [i for i, c in enumerate(counts) if c]
        best: tuple[int, float, float] | None = None
        for index in allowed:
            average = (total + probabilities[index]) / (picks + 1)
            new_loss, new_score = log_loss(average, targets), _score(average, targets, metric)
            if new_loss < (best[1] if best else loss) and new_score >= score:
                best = (index, new_loss, new_score)
        if best is None:
            break
        index, loss, score = best
        counts[index] += 1
        total = total + probabilities[index]
    return counts

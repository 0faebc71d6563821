"""The study: where it is stored, which trials count, how interrupted trials are recovered, and what it found.

A trial counts towards ``--trials`` when it completed, was pruned, or failed for a reason of its own.
Trials that were interrupted (Ctrl-C, a killed process) or stopped by a bug in ajuste do not count: they
are queued again with the same settings, so the same command resumes the study where it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from ajuste.data.prepare import PreparedData
from ajuste.search.settings import TuneConfig
from ajuste.search.space import SearchSpace

__all__ = [
    "CHOSEN_BY",
    "CUT",
    "OUT_OF_TIME",
    "RESCORED",
    "SCREEN",
    "SCREENED_OUT",
    "STARTING_POINT",
    "FamilyShare",
    "Unreached",
    "best_trials",
    "by_family",
    "cohort",
    "cohort_of",
    "complete_trials",
    "count_states",
    "counted",
    "counts_towards_budget",
    "cut_phrase",
    "how_pruned",
    "importances",
    "max_epochs",
    "ranking",
    "recover",
    "recover_dead_workers",
    "retried",
    "screen_only",
    "screen_rank",
    "screened_out",
    "study_identity",
    "unreached",
    "unreached_text",
    "validation_loss",
]

log = logging.getLogger(__name__)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: Where ``--rescore`` keeps each candidate's folds in the study (by trial number).
RESCORED = "ajuste:rescored"
#: Where a screened trial keeps its screen: the texts it was screened on, its score and loss there, its best epoch.
SCREEN = "screen"
#: Where a trial screened in that trained on every text for fewer epochs than planned (those that fitted in the
#: time budget left) says so: its planned epochs, the epochs it trained, why.
CUT = "cut"
#: How the reason of a trial that its screen stopped begins (its ``stopped`` attribute).
SCREENED_OUT = "screened out"
#: The reason of a trial that the time budget stopped between two epochs (or folds).
OUT_OF_TIME = "the search's time budget ran out"
#: Where a queued starting point (a family's defaults, or an entry of its portfolio) says which it is.
STARTING_POINT = "portfolio"


def retried(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of trials that were queued again because their worker died (the copy names them)."""
    return {int(number) for t in trials for number in t.system_attrs.get("retry_history", ())}


def counts_towards_budget(trial: FrozenTrial, again: Set[int] = frozenset()) -> bool:
    """Finished, pruned, or failed for a reason of its own (not interrupted, not stopped by a bug, not failed
    with its dead worker and run again: ``again`` holds those, see :func:`retried`)."""
    return trial.state in COUNTED and not trial.user_attrs.get("interrupted") and trial.number not in again


def counted(study: optuna.Study) -> int:
    """How many trials count towards the budget."""
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    return sum(1 for t in trials if counts_towards_budget(t, again))


def count_states(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    found = Counter(t.state.name.lower() for t in trials)
    return {state: found.get(state, 0) for state in ("complete", "pruned", "fail", "running", "waiting")}


def _key(params: dict[str, object]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _interrupt(study: optuna.Study, trials: Sequence[FrozenTrial], reason: Callable[[FrozenTrial], str]) -> None:
    """Fail running trials whose process is gone, marked interrupted (they do not count)."""
    for trial in trials:
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_user_attr(trial._trial_id, "error", reason(trial))
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _requeue_interrupted(study: optuna.Study) -> None:
    """Queue the settings of every interrupted trial once again, unless they are queued or already ran; a starting
    point stays one."""
    trials = study.get_trials(deepcopy=False)
    waiting = {_key(t.params) for t in trials if t.state == TrialState.WAITING}
    done = {_key(t.params) for t in trials if counts_towards_budget(t)}
    for trial in trials:
        key = _key(trial.params)
        if trial.user_attrs.get("interrupted") and trial.params and key not in waiting and key not in done:
            what = trial.user_attrs.get(STARTING_POINT)
            study.enqueue_trial(trial.params, user_attrs={STARTING_POINT: what} if what else None, skip_if_exists=False)
            waiting.add(key)


def recover(study: optuna.Study, local: bool, enqueue: bool) -> int:
    """Trials left running by a crash (local storage only) are failed as interrupted; every interrupted
    trial's settings are queued once again unless they already ran. Returns how many were left running."""
    if not local:  # a shared study: heartbeats and the workers' own retries recover trials there
        return 0
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    _interrupt(study, stale, lambda _: "interrupted: the process stopped")
    if enqueue:
        _requeue_interrupted(study)
    return len(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def recover_dead_workers(study: optuna.Study, host: str, enqueue: bool) -> int:
    """Trials left running by workers of this machine whose process is gone (a journal file has no
    heartbeats): failed as interrupted, their settings queued again (as :func:`recover` does). Returns how many."""

    def dead(trial: FrozenTrial) -> bool:
        name, _, pid = str(trial.user_attrs.get("worker") or "").rpartition(":")
        return name == host and pid.isdigit() and not _alive(int(pid))

    found = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if dead(t)]
    _interrupt(study, found, lambda t: f"interrupted: worker {t.user_attrs['worker']} stopped")
    if enqueue:
        _requeue_interrupted(study)
    return len(found)


def _digest(content: object) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]


def study_identity(
    config: TuneConfig, data: PreparedData, space: SearchSpace, teacher: str | None = None
) -> dict[str, str]:
    """What makes workers' studies one study, part by part: the labelled texts (wherever the file is), their
    split, the search space and the search settings (the budget, where results go, the size of the final
    ensemble and the re-scoring may differ); and for students, the teacher (``teacher``: its model's
    fingerprint, wherever its folder is) and how it teaches."""
    splits = [(s.texts, s.labels) for s in (data.train, data.val, data.test)]
    everything = sorted((t, label) for texts, labels in splits for t, label in zip(texts, labels))
    search = config.tune.model_dump(
        mode="json", exclude={"trials", "timeout", "storage", "study", "heartbeat", "ensemble", "rescore"}
    )
    if search["cv"] is None:  # a study without cross-validation keeps the identity it always had
        del search["cv"]
    if search["screen"] == "auto":  # and one with the default screening too
        del search["screen"]
    identity = {
        "data": _digest(everything),
        "split": _digest(splits),
        "space": _digest(
            {
                "space": config.space,
                "families": config.families,
                "model": config.model,
                "train": config.train.model_dump(mode="json", exclude={"subset"}),  # never a search's
                "searched": space.families,
            }
        ),
        "search": _digest({**search, "seed": config.seed}),
    }
    if config.distill is not None:
        teaching = config.distill.model_dump(mode="json", exclude={"teacher", "unlabeled"})
        identity["teacher"] = _digest({**teaching, "teacher": teacher})
    return identity


def importances(study: optuna.Study) -> dict[str, float]:
    """Parameter importances (fANOVA) over the completed trials; empty when there are too few."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 3 or len({t.value for t in complete}) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        log.info("no parameter importances: %s", exc)
        return {}
    return {name: float(value) for name, value in found.items()}


#: How the final model's trial is chosen, as run.yaml records it.
CHOSEN_BY = "the best validation score; ties broken by the lowest validation loss, then the earliest trial"


def validation_loss(trial: FrozenTrial) -> float:
    """The trial's validation cross-entropy at its best epoch (infinite when it recorded none)."""
    value = (trial.user_attrs.get("val_metrics") or {}).get("val_loss")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


def ranking(value: float, loss: float, number: int, maximize: bool) -> tuple[float, float, int]:
    """Sort key of a finished trial, best first. Accuracy on a small validation split ties often (128 texts
    move it in steps of 0.8 points): among equal scores the more confident-and-right model — lower
    cross-entropy — is the better bet, whatever the dataset."""
    return (-value if maximize else value, loss, number)


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's completed trials that have a score, in the order they were numbered."""
    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]


def best_trials(study: optuna.Study, count: int = 5) -> list[FrozenTrial]:
    """The best completed trials, best first (see :func:`ranking`)."""
    complete = complete_trials(study)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: ranking(float(t.value or 0.0), validation_loss(t), t.number, maximize))[
        :count
    ]


def max_epochs(space: SearchSpace) -> int:
    """The most epochs any trial of the space may train (for Hyperband's resource)."""
    most = 1
    for scope in space.scopes.values():
        fixed = scope.fixed.get("train.epochs")
        ranges = [i for i in scope.items if getattr(i, "key", None) == "train.epochs"]
        if fixed:
            most = max(most, int(fixed))
        for item in ranges:
            most = max(most, int(getattr(item, "high", None) or max(item.values())))  # type: ignore[union-attr]
        if not fixed and not ranges:
            most = max(most, 20)
    return most


def screen_rank(study: optuna.Study, number: int, texts: int) -> tuple[int, int]:
    """Where trial ``number``'s screen ranks among the study's screens on ``texts`` training texts so far (by
    :func:`~ajuste.search.study.ranking`; 1 is the best), and how many there are. Interrupted trials, which run
    again, are left out, and so are a dead worker's trials and the queued copies that run them again."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    keys = {}
    for other in trials:
        found = other.user_attrs.get(SCREEN)
        if not found or found.get("texts") != texts or other.user_attrs.get("interrupted"):
            continue
        if other.number in again or other.state == TrialState.WAITING:  # a dead worker's trial, or its copy
            continue
        loss = found.get("loss")
        keys[other.number] = ranking(
            float(found["value"]), math.inf if loss is None else float(loss), other.number, maximize
        )
    order = sorted(keys, key=keys.__getitem__)
    return order.index(number) + 1, len(order)


def screened_out(trial: FrozenTrial) -> bool:
    """Whether the trial was stopped by its screen (see ``--screen``)."""
    return str(trial.user_attrs.get("stopped") or "").startswith(SCREENED_OUT)


def how_pruned(trial: FrozenTrial) -> str:
    """What stopped a pruned trial, in a word: ``screened`` (its screen), ``timed out`` (the time budget, during
    its training), ``skipped`` (not trained on every text: its estimate did not fit the time left) or ``pruned``
    (the pruner, on its scores)."""
    stopped = str(trial.user_attrs.get("stopped") or "")
    if not stopped:
        return "pruned"
    if screened_out(trial):
        return "screened"
    return "timed out" if stopped == OUT_OF_TIME else "skipped"


def cut_phrase(trial: FrozenTrial) -> str | None:
    """How a trial's ``cut`` reads: ``trained on every text for 2 of its 4 epochs: those that fit in the time
    budget left``, or, where not one epoch fitted, that its screen's model is its model; None without a cut."""
    cut = trial.user_attrs.get(CUT)
    if not isinstance(cut, Mapping):
        return None
    if texts := screen_only(trial):
        return (
            f"its screen's model, trained on {texts:,} of the training texts: not one epoch on every text "
            "fit in the time budget left"
        )
    epochs = f"{cut['epochs']} of its {cut['planned']} epochs"
    return f"trained on every text for {epochs}: those that fit in the time budget left"


def screen_only(trial: FrozenTrial) -> int | None:
    """How many training texts the trial's model learnt from when it is its screen's (not one epoch on every text
    fitted in the time left: see ``cut``), else None."""
    cut, screen = trial.user_attrs.get(CUT), trial.user_attrs.get(SCREEN)
    if isinstance(cut, Mapping) and not cut.get("epochs") and isinstance(screen, Mapping):
        return int(screen["texts"])
    return None


@dataclass(frozen=True)
class Unreached:
    """A starting point that the search's budget kept from training in full on every text."""

    #: What it is, as queued: ``minilm defaults``, ``minilm model.trainable=all``.
    what: str
    #: Its trial (the last, where it was queued again).
    trial: int
    #: How it ended, in words.
    how: str


def unreached(trials: Sequence[FrozenTrial]) -> list[Unreached]:
    """The starting points (each family's defaults, then its portfolio, queued first) that the budget kept from
    training in full on every text, in the order they were queued: not started, stopped by the time budget, not
    trained for their estimate, or trained for the epochs that fitted (the cut). Those that were judged on their
    scores (completed, screened out, pruned, failed) are not among them: the budget gave them their turn."""
    again = retried(trials)
    last: dict[str, FrozenTrial] = {}
    judged: set[str] = set()
    for trial in sorted(trials, key=lambda t: t.number):
        what = trial.user_attrs.get(STARTING_POINT)
        if not what or trial.user_attrs.get("interrupted") or trial.number in again:
            continue
        if trial.state == TrialState.RUNNING:  # another worker's, still at it
            judged.add(str(what))
        elif trial.state in (TrialState.COMPLETE, TrialState.FAIL) and not trial.user_attrs.get(CUT):
            judged.add(str(what))
        elif trial.state == TrialState.PRUNED and how_pruned(trial) in ("screened", "pruned"):
            judged.add(str(what))
        last[str(what)] = trial
    found = []
    for what, trial in last.items():
        if what in judged:
            continue
        seconds = float(trial.user_attrs.get("seconds") or 0.0)
        if trial.state == TrialState.WAITING:
            how = "not started"
        elif phrase := cut_phrase(trial):
            how = phrase
        elif trial.user_attrs.get("stopped") == OUT_OF_TIME:
            how = f"stopped after {seconds:.0f} s: {OUT_OF_TIME}"
        else:
            how = str(trial.user_attrs.get("stopped"))
        found.append(Unreached(what, trial.number, how))
    return found


def unreached_text(
    missed: Sequence[Unreached], budget: str = "the budget", remedy: str = "A larger budget, or fewer families"
) -> str:
    """:func:`unreached` in one sentence, for the command's output (``budget``: ``--timeout 600 s``; ``remedy``:
    what gives them their turn, in its words) and the report."""
    points = "; ".join(f"{m.what} (trial {m.trial}): {m.how}" for m in missed)
    return (
        f"{len(missed)} of the starting points (each family's defaults, then its portfolio) did not train in full on "
        f"every text within {budget}: {points}. {remedy}, gives them their turn"
    )


@dataclass
class FamilyShare:
    """One searched family's share of a study: trials that count and how they ended, their seconds, its best."""

    family: str
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    fail: int = 0
    #: Of the pruned trials, those that their screen stopped (see ``--screen``).
    screened_out: int = 0
    seconds: float = 0.0
    best: float | None = None


def by_family(trials: Sequence[FrozenTrial], maximize: bool) -> list[FamilyShare]:
    """Per searched family, in the order the study first ran it: where the budget went, and whether every
    family had its share."""
    again = retried(trials)
    shares: dict[str, FamilyShare] = {}
    for trial in trials:
        family = (trial.user_attrs.get("settings") or {}).get("model.family")
        if family is None or not counts_towards_budget(trial, again):
            continue
        share = shares.setdefault(str(family), FamilyShare(str(family)))
        share.trials += 1
        state = trial.state.name.lower()
        setattr(share, state, getattr(share, state) + 1)
        share.screened_out += screened_out(trial)
        share.seconds = round(share.seconds + float(trial.user_attrs.get("seconds") or 0.0), 3)
        value = trial.value
        if trial.state == TrialState.COMPLETE and value is not None:
            if share.best is None or (value > share.best if maximize else value < share.best):
                share.best = float(value)
    return list(shares.values())


def cohort_of(settings: Mapping[str, object]) -> tuple[str, str]:
    """What a trial is compared with (by the pruners) and costed by (before it starts): its family and, for a
    pretrained model, which of its layers train."""
    return str(settings.get("model.family", "")), str(settings.get("model.trainable", ""))


def cohort(trial: FrozenTrial) -> tuple[str, str]:
    """:func:`cohort_of` the settings the objective records when the trial starts."""
    return cohort_of(trial.user_attrs.get("settings") or {})

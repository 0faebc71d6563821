"""The end of a search: the final model, its one evaluation on the test split, and the run folder's record.

The test split is touched once per final model: when the same study ends again with the same best trial
(a resumed search that found nothing better), the model already written and tested is kept, and only the
record's counts are brought up to date. With ``--ensemble K`` the final model may be the average of several
trials' models (see :mod:`~ajuste.search.ensemble`); it is kept the same way when it would be chosen from the
same candidates.
"""

from __future__ import annotations

import gc
import logging
import math
import statistics
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from ajuste.config import RunConfig
from ajuste.data.prepare import PreparedData, stratified_sample
from ajuste.errors import AjusteError, TrainingError
from ajuste.models.registry import registration
from ajuste.models.settings import FamilySettings
from ajuste.runs.distill import student_data
from ajuste.runs.folder import RunFolder
from ajuste.runs.record import (
    CrossValidationRecord,
    DistillRecord,
    EnsembleMember,
    EnsembleRecord,
    RescoredTrial,
    RescoreRecord,
    RunFile,
    RunRecord,
    SearchInfo,
    SearchRecord,
    TestAccess,
)
from ajuste.search import ensemble
from ajuste.search.objective import TRIAL_ERRORS, Objective, trial_settings
from ajuste.search.study import CHOSEN_BY, RESCORED, best_trials, count_states, importances, ranking, screen_only
from ajuste.training.classifier import TextClassifier
from ajuste.training.ensemble import EnsembleClassifier, log_probabilities
from ajuste.training.settings import TrainSettings, unused_by_solver

__all__ = ["Final", "finish"]

log = logging.getLogger(__name__)

#: How ``--rescore`` chooses, as run.yaml records it.
RESCORE_CHOSEN_BY = (
    "the best mean validation score over the folds of train+val; ties broken by the lower mean validation loss, "
    "then the better rank in the search"
)


@dataclass
class Final:
    """The final model of a search, its validation and test metrics, and the settings it was trained with."""

    classifier: TextClassifier
    metrics: dict[str, dict[str, Any]]
    best: FrozenTrial
    best_params: dict[str, Any]
    importances: dict[str, float]
    seconds: float
    #: How the final ensemble was chosen (None when the final model is the best trial's alone, as asked).
    ensemble: EnsembleRecord | None = None
    #: Under ``--rescore N``: the candidates' fold scores and the one chosen.
    rescore: RescoreRecord | None = None

    @property
    def chosen_by(self) -> str:
        """The rule that chose the final model, as run.yaml's ``chosen_by`` states it: re-scoring's where it
        chose it, the ensemble's where it averages several trials, else the best trial's."""
        record = self.rescore or (self.ensemble if self.averaged else None)
        return record.chosen_by if record is not None else CHOSEN_BY

    @property
    def averaged(self) -> bool:
        """Whether the final model averages several trials' models."""
        return self.ensemble is not None and self.ensemble.averages


def final_settings(
    objective: Objective, best: FrozenTrial, rescored: RescoreRecord | None = None, *, averaged: bool = False
) -> tuple[FamilySettings, TrainSettings]:
    """The model and training settings that run.yaml records for the final model of ``best``: its trial's, and
    where the final model is its screen's (not re-scored, not ``averaged`` with other trials' models), the
    screen's texts as ``train.subset``, so that ``ajuste train --config run.yaml`` trains what a refit on train
    does and the texts that trained the model are known."""
    model, train = trial_settings(objective.config, _settings_of(objective, best))
    if registration(model.family).solver:  # training settings fixed for the other families are not its own
        defaults = TrainSettings(epochs=1)  # its one pass
        train = train.model_copy(update={name: getattr(defaults, name) for name in unused_by_solver(train)})
    if rescored is None and not averaged and (texts := screen_only(best)):
        train = train.model_copy(update={"subset": texts})
    return model, train


def _final_model(
    objective: Objective,
    best: FrozenTrial,
    refit: str,
    rescored: CrossValidationRecord | None = None,
    keep: Collection[int] = (),
) -> tuple[TextClassifier, dict[str, Any], DistillRecord | None]:
    """The trial ``best``'s own model when it is kept and refitting on train repeats it exactly, else a refit (on
    train, or on train+val for its best epoch count: the median of its ``rescored`` folds' best epochs when it was
    scored again), the kept models of other trials than ``keep`` let go first; and for a student, the record of
    the texts it learnt on."""
    data, seed = objective.data, objective.config.seed
    student = objective.student
    # A trial whose model is its screen's (no epoch on every text fitted in its time) is refitted on that subset.
    subset = screen_only(best) if rescored is None else None
    on = f" (its screen: {subset:,} of the {len(data.train):,} training texts)" if subset else ""
    kept = objective.kept.model(best.number)
    if refit == "train" and kept is not None:
        note = f"the trial's own model{on}: a refit with the same settings, data and seed repeats it exactly"
        return kept, {"refit": "train", "how": note}, student.record if student else None
    objective.kept.release(keep)
    screen = stratified_sample(data.train, subset, seed) if subset else None
    model, train = trial_settings(objective.config, _settings_of(objective, best))
    classifier = TextClassifier(model, labels=data.labels)
    classifier.compile_from(train.compile_settings(), class_weights=data.class_weights)
    if refit == "train":
        fit = train.fit_settings()
        classifier.fit_from(
            student.train if student else data.train if screen is None else screen,
            None,
            fit,
            validation_data=data.val,
            seed=seed,
            verbose=False,
            teacher=student.targets if student else None,
        )
        how = f"trained again with the best settings on the training split{on}"
        return classifier, {"refit": "train", "how": how}, student.record if student else None
    family = classifier.family_
    epochs = int(
        statistics.median_low(rescored.best_epochs)
        if rescored is not None
        else best.user_attrs.get("best_epoch") or train.epochs or (family.defaults().epochs if family else 1)
    )
    fit = train.fit_settings().model_copy(update={"epochs": epochs, "early_stopping": None, "restore_best": False})
    distill, record = objective.config.distill, None
    if distill is not None:  # the validation texts join the students' texts, with the teacher's targets too
        both = student_data(distill, data, seed, with_val=True)
        classifier.fit_from(both.train, None, fit, seed=seed, verbose=False, teacher=both.targets)
        record = both.record
    else:
        texts = data.train_and_val() if screen is None else screen.joined(data.val)
        classifier.fit_from(texts, None, fit, seed=seed, verbose=False)
    source = (
        "the median of the best trial's re-scoring folds' best epochs"
        if rescored is not None
        else "the median of the best trial's folds' best epochs"
        if objective.folds
        else "the best trial's best epoch"
    )
    how = f"trained again with the best settings on train+val{on} for {epochs} epochs ({source})"
    return classifier, {"refit": "train+val", "how": how, "epochs": epochs}, record


@dataclass
class _Selection:
    """The members of a final ensemble and their weights, chosen greedily on the validation probabilities of the
    candidate trials ``pool`` (best first); the candidates trained again to give probabilities (by position)."""

    pool: list[FrozenTrial]
    chosen: list[int]
    weights: list[float]
    compared: dict[str, dict[str, float]]
    probabilities: list[np.ndarray]
    targets: np.ndarray
    trained: dict[int, tuple[TextClassifier, dict[str, Any], DistillRecord | None]]

    def members(self) -> list[tuple[int, float]]:
        """(trial number, weight) of every member: the same pair list is the same final model."""
        return [(self.pool[i].number, weight) for i, weight in zip(self.chosen, self.weights)]


def _select(objective: Objective, pool: list[FrozenTrial]) -> _Selection:
    """The ensemble's members chosen from the candidate trials ``pool``. The probabilities are those each trial
    kept when it ran; a candidate that kept none (a study from an older ajuste) is trained on train again to give
    them."""
    config, data = objective.config, objective.data
    index = {label: i for i, label in enumerate(data.labels)}
    targets = np.array([index[label] for label in data.val.labels])
    trained: dict[int, tuple[TextClassifier, dict[str, Any], DistillRecord | None]] = {}
    probabilities = []
    for i, trial in enumerate(pool):
        kept = ensemble.stored(trial, len(targets), len(data.labels))
        if kept is None:
            log.info("trial %d kept no validation probabilities: it is trained again to give them", trial.number)
            trained[i] = _final_model(objective, trial, "train", keep=[t.number for t in pool])
            kept = log_probabilities(trained[i][0], data.val.texts).exp().numpy()
        probabilities.append(kept)
    counts = ensemble.greedy_counts(probabilities, targets, config.tune.ensemble, config.tune.metric)
    chosen = [i for i, count in enumerate(counts) if count]
    weights = [counts[i] / sum(counts) for i in chosen]
    average = sum(w * probabilities[i] for i, w in zip(chosen, weights))
    compared = {
        "single_best": ensemble.val_metrics(probabilities[0], targets),
        "ensemble": ensemble.val_metrics(np.asarray(average), targets),
    }
    return _Selection(pool, chosen, weights, compared, probabilities, targets, trained)


def _ensemble_model(
    objective: Objective, selection: _Selection
) -> tuple[TextClassifier, dict[str, Any], DistillRecord | None, EnsembleRecord]:
    """The final ensemble that ``selection`` chose: each member trained as a final model is (on train, its trial's
    own model where this process kept it, else trained again; with ``--refit train+val``, on train+val for its
    trial's best epoch count, keeping the weights chosen). One member alone is the final model."""
    config = objective.config
    pool, chosen, weights, trained = selection.pool, selection.chosen, selection.weights, selection.trained
    probabilities, targets, compared = selection.probabilities, selection.targets, selection.compared
    epochs: dict[int, int] = {}
    if config.tune.refit == "train+val":
        trained.clear()  # trained on train only: only their choice is kept
        gc.collect()
        for i in chosen:
            trained[i] = _final_model(objective, pool[i], "train+val")
            epochs[i] = int(trained[i][1]["epochs"])
        how = "each member trained again with its trial's settings on train+val for its trial's best epoch count"
    else:
        for i in chosen:
            if i not in trained:
                trained[i] = _final_model(objective, pool[i], "train", keep=[pool[j].number for j in chosen])
        for i in set(trained) - set(chosen):
            del trained[i]
        how = "each member its trial's model: a refit on train with the same settings, data and seed repeats it exactly"
    final = _combined([trained[i][0] for i in chosen], weights)
    _, alone, distillation = trained[chosen[0]]
    record = EnsembleRecord(
        size=config.tune.ensemble,
        candidates=[trial.number for trial in pool],
        members=[
            EnsembleMember(
                trial=pool[i].number,
                weight=weight,
                settings=_settings_of(objective, pool[i]),
                val_loss=ensemble.log_loss(probabilities[i], targets),
                epochs=epochs.get(i),
            )
            for i, weight in zip(chosen, weights)
        ],
        chosen_by=ensemble.CHOSEN_BY,
        single_best=compared["single_best"],
        ensemble=compared["ensemble"],
    )
    if len(chosen) == 1:  # no other candidate lowered the validation loss: the best trial's model alone
        return final, alone, distillation, record
    what = f"an ensemble of {len(chosen)} of {len(pool)} candidate trials"
    return final, {"refit": config.tune.refit, "how": f"{what}: {how}"}, distillation, record


def _rescored(objective: Objective, study: optuna.Study) -> tuple[FrozenTrial, RescoreRecord, dict[str, Any]]:
    """``--rescore N``: the N best trials with distinct settings, each trained again on every fold of train+val
    (the same folds for all), and the best of them by the folds' mean; its record and its folds' mean validation
    metrics. Each candidate's folds are kept in the study as soon as they are done, so a resumed or repeated end
    of the same study does not train them again."""
    config, folds = objective.config, objective.rescore_folds
    size = config.tune.rescore
    if folds is None or size is None:
        raise RuntimeError("rescoring needs --rescore and its folds")
    pool = ensemble.candidates(study, size)[:size]
    done = dict(study.user_attrs.get(RESCORED) or {})
    scored: list[tuple[FrozenTrial, RescoredTrial, dict[str, Any]]] = []
    for number, trial in enumerate(pool, start=1):
        key = str(trial.number)
        if key not in done:
            log.info(
                "re-scoring trial %d (%d of %d) on %d folds of train+val", trial.number, number, len(pool), len(folds)
            )
            model, train = trial_settings(config, _settings_of(objective, trial))
            try:
                folded, means = objective.cross_validate(model, train, folds)
            except TRIAL_ERRORS as exc:  # it trained once; on these folds it did not: not a candidate
                log.warning("trial %d is not re-scored: %s", trial.number, exc)
                continue
            done[key] = {"cv": folded.model_dump(mode="json"), "val_metrics": means}
            study.set_user_attr(RESCORED, done)
        cv = CrossValidationRecord.model_validate(done[key]["cv"])
        means = dict(done[key]["val_metrics"])
        loss = means.get("val_loss")
        scored.append((trial, RescoredTrial(trial=trial.number, value=trial.value, cv=cv, loss=loss), means))
    if not scored:
        raise TrainingError(
            "no trial could be re-scored",
            fix="Look at the warnings above; run without [[--rescore||rescore]] to keep the best trial.",
        )
    maximize = config.tune.direction == "maximize"

    def rank(i: int) -> tuple[float, float, int]:
        item = scored[i][1]
        return ranking(item.cv.mean, math.inf if item.loss is None else item.loss, i, maximize)

    chosen, _, chosen_means = scored[min(range(len(scored)), key=rank)]
    record = RescoreRecord(
        size=size,
        folds=len(folds),
        candidates=[item for _, item, _ in scored],
        chosen=chosen.number,
        chosen_by=RESCORE_CHOSEN_BY,
    )
    return chosen, record, chosen_means


def _combined(members: list[TextClassifier], weights: list[float]) -> TextClassifier:
    """The average of ``members``; one member alone is itself (an ensemble of one would only wrap it)."""
    return members[0] if len(members) == 1 else EnsembleClassifier(members, weights)


def _settings_of(objective: Objective, trial: FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get("settings") or objective.space.decode(trial.params))


def _cross_validated(cv: CrossValidationRecord, val_metrics: dict[str, Any], data: PreparedData) -> dict[str, Any]:
    """The validation metrics of a final model trained on train+val, under cv or rescore: the chosen trial's means
    over its folds, every text of train+val validated once (``cross_validated``: the folds and the spread of the
    score)."""
    means = {key.removeprefix("val_"): value for key, value in val_metrics.items()}
    spread = {"folds": cv.folds, "std": cv.std, "scores": cv.scores}
    return {**means, "n": len(data.train) + len(data.val), "cross_validated": spread}


def _kept(
    folder: RunFolder,
    best: FrozenTrial,
    refit: str,
    size: int,
    selection: _Selection | None,
    rescored: RescoreRecord | None = None,
) -> tuple[TextClassifier, dict[str, Any], RunFile] | None:
    """The final model already written and tested for this best trial (and, for an ensemble of ``size``, of the
    same members and weights as ``selection`` chose, whatever new candidates it was chosen from; re-scored, from
    the same candidates); None if there is none (or it is damaged)."""
    if not folder.is_finished():
        return None
    try:
        run_file = folder.read_run_file()
        search = run_file.record.search if run_file else None
        if run_file is None or search is None or search.best_trial != best.number or search.refit != refit:
            return None
        recorded = search.ensemble
        members = [(m.trial, m.weight) for m in recorded.members] if recorded else []
        if (recorded.size if recorded else 1, members) != (size, selection.members() if selection else []):
            return None
        if _candidates(search.rescore) != _candidates(rescored):
            return None
        metrics = folder.read_metrics()
        if metrics is None:
            return None
        return folder.load(), metrics, run_file
    except AjusteError as exc:
        log.warning("the final model in %s cannot be reused (%s): it is trained and tested again", folder.path, exc)
        return None


def _candidates(rescored: RescoreRecord | None) -> list[int]:
    return [item.trial for item in rescored.candidates] if rescored is not None else []


def _previous_accesses(folder: RunFolder) -> list[TestAccess]:
    """Test accesses of earlier completions of the same study: a resumed search keeps their record."""
    try:
        run_file = folder.read_run_file()
    except AjusteError as exc:
        log.warning(
            "the earlier record of %s is damaged (%s); its test accesses are not carried over", folder.path, exc
        )
        return []
    return list(run_file.record.test_accesses) if run_file else []


def finish(folder: RunFolder, objective: Objective, study: optuna.Study, info: SearchInfo, started: float) -> Final:
    """The final model of a finished study, tested once, written into the folder with its record."""
    best = best_trials(study, 1)[0]
    rescored: RescoreRecord | None = None
    rescored_metrics: dict[str, Any] = {}
    if objective.config.tune.rescore:
        best, rescored, rescored_metrics = _rescored(objective, study)
    found = importances(study)
    trials = count_states(study.get_trials(deepcopy=False))
    size = objective.config.tune.ensemble
    pool = ensemble.candidates(study, size) if size > 1 else []
    selection = _select(objective, pool) if pool else None
    kept = _kept(folder, best, objective.config.tune.refit, size, selection, rescored)
    if kept is not None:  # same final model, already tested: the test split is not touched again
        classifier, metrics, run_file = kept
        search = run_file.record.search
        if search is not None:
            recorded = search.ensemble
            if recorded is not None:  # the same members, chosen again from the candidates of now
                recorded = recorded.model_copy(update={"candidates": [trial.number for trial in pool]})
            update = {"trials": trials, "importances": found, "best_value": best.value, "ensemble": recorded}
            search = search.model_copy(update=update)
        folder.update_record(run_file.record.model_copy(update={"search": search}))
        params = dict(search.best_params) if search else _settings_of(objective, best)
        seconds = round(time.perf_counter() - started, 3)
        return Final(
            classifier,
            metrics,
            best,
            params,
            found,
            seconds,
            search.ensemble if search else None,
            search.rescore if search else None,
        )
    chosen: EnsembleRecord | None = None
    # Under cv or rescore the final model trains on the validation split too: its validation metrics are the
    # chosen trial's means over its folds.
    folded: tuple[CrossValidationRecord, dict[str, Any]] | None = None
    if objective.folds:
        folded = CrossValidationRecord.model_validate(best.user_attrs["cv"]), best.user_attrs["val_metrics"]
    elif rescored is not None:
        folded = next(c.cv for c in rescored.candidates if c.trial == rescored.chosen), rescored_metrics
    if selection is not None:
        classifier, refit, distillation, chosen = _ensemble_model(objective, selection)
    else:
        epochs_from = folded[0] if folded is not None and rescored is not None else None
        classifier, refit, distillation = _final_model(objective, best, objective.config.tune.refit, epochs_from)
    config, data = objective.config, objective.data
    cv = folded[0] if folded is not None and objective.folds else None
    metrics = {"val": _cross_validated(*folded, data) if folded else classifier.evaluate(data.val)}
    # The one access to the test split, after every choice has been made on validation.
    metrics["test"] = classifier.evaluate(data.test)
    final = "the ensemble" if isinstance(classifier, EnsembleClassifier) else "the refit"
    access = TestAccess(texts=len(data.test), purpose=f"final evaluation of {final}")
    params = _settings_of(objective, best)
    model, train = final_settings(objective, best, rescored, averaged=chosen is not None and chosen.averages)
    seconds = round(time.perf_counter() - started, 3)
    search = SearchRecord(
        **info.model_dump(include={"study", "metric", "direction", "sampler", "pruner", "fingerprint"}),
        trials=trials,
        best_trial=best.number,
        best_value=best.value,
        best_params=params,
        importances=found,
        chosen_by=rescored.chosen_by if rescored is not None else CHOSEN_BY,  # the rule that chose the trial
        **refit,
        ensemble=chosen,
        cv=cv,
        rescore=rescored,
    )
    record = RunRecord(
        seconds=seconds,
        data=data.report,
        model=classifier.describe(),
        search=search,
        test_accesses=[*_previous_accesses(folder), access],
        distillation=distillation,
    )
    resolved = RunConfig(data=config.data, model=model, train=train, seed=config.seed, distill=config.distill)
    resolved = resolved.anchored()
    split = {"source": data.report["source"], "seed": config.seed, **data.split_record()}
    folder.write_final(classifier, RunFile(config=resolved, record=record), metrics=metrics, split=split)
    return Final(classifier, metrics, best, params, found, seconds, chosen, rescored)

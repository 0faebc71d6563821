"""``ajuste.tune``: one search, from its settings to a finished run folder (search, refit, test once).

The study lives in a database (``study.db`` in the run folder unless ``storage`` names a shared one), so
running the same search again resumes it: finished trials are kept, trials interrupted by Ctrl-C or a
crash are run again, and ``trials`` is the total of the study, not of this run. What a trial is lives in
:mod:`~ajuste.search.objective`, the study's bookkeeping in :mod:`~ajuste.search.study`, and the final
model with its one test access in :mod:`~ajuste.search.final`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from ajuste.data import describe, load_data
from ajuste.data.dataset import TextDataset
from ajuste.data.prepare import PreparedData, cv_folds, training_sample
from ajuste.errors import ConfigError, RunFolderError, SearchError, TrainingError, spoken
from ajuste.models.pretrained import check_checkpoint
from ajuste.models.registry import default_families, is_named_family, registration, student_families
from ajuste.models.settings import FamilySettings
from ajuste.runs.distill import StudentData, student_data, teacher_data
from ajuste.runs.folder import RunFolder, read_paths
from ajuste.runs.record import EnsembleRecord, RescoreRecord, SearchInfo
from ajuste.runtime import configure_threads
from ajuste.search.final import Final, finish
from ajuste.search.objective import TRIAL_ERRORS, Objective, trial_settings
from ajuste.search.portfolio import enqueue_portfolio
from ajuste.search.samplers import SpaceGridSampler, make_pruner, make_sampler
from ajuste.search.settings import RESCORE_FOLDS, TuneConfig
from ajuste.search.space import SearchSpace, parse_space
from ajuste.search.storage import (
    close_storage,
    database_retries,
    open_storage,
    public_url,
    storage_kind,
    study_lock,
    worker_id,
    worker_seed,
)
from ajuste.search.study import (
    FamilyShare,
    Unreached,
    best_trials,
    by_family,
    complete_trials,
    count_states,
    counted,
    max_epochs,
    recover,
    recover_dead_workers,
    study_identity,
    unreached,
)
from ajuste.training.classifier import TextClassifier
from ajuste.validation import folder_path, model_settings, settings_mapping, validate

__all__ = ["SearchInterrupted", "TuneResult", "default_tune_dir", "how_chosen", "run_tune", "trial_settings", "tune"]

log = logging.getLogger(__name__)

TrialHook = Callable[[FrozenTrial, optuna.Study], None]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: the study is kept and the same command resumes it. ``str()`` says what to do in
    Python's words, :meth:`for_command_line` with the flags."""

    def __init__(self, message: str) -> None:
        super().__init__(spoken(message))
        self.message = message

    def for_command_line(self) -> str:
        return spoken(self.message, command_line=True)


@dataclass
class TuneResult:
    """What a search produced: the best settings, the study, the final model and its metrics."""

    run_dir: Path
    seconds: float
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    study: optuna.Study
    classifier: TextClassifier | None
    metrics: dict[str, dict[str, Any]]
    data: PreparedData
    importances: dict[str, float] = field(default_factory=dict)
    #: On a shared study: who made the final model ({"worker", "run_dir", "at"}), when this worker did not; and
    #: how many trials other workers were still running when this one stopped (the last of them finalizes).
    final_by: dict[str, Any] | None = None
    running_elsewhere: int = 0
    #: With ``ensemble`` above 1: the members chosen, their weights, and the single best against the ensemble.
    ensemble: EnsembleRecord | None = None
    #: With ``rescore`` N: the best trials' fold scores, and the one chosen.
    rescore: RescoreRecord | None = None
    #: How the final trial was chosen and how close the choice was (see :func:`how_chosen`); None where no final
    #: model was made here.
    choice: dict[str, Any] | None = None

    def trial_counts(self) -> dict[str, int]:
        return count_states(self.study.get_trials(deepcopy=False))

    def families(self) -> list[FamilyShare]:
        """Each searched family's trials, seconds and best validation score, in the order the study ran them."""
        maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
        return by_family(self.study.get_trials(deepcopy=False), maximize)

    def unreached(self) -> list[Unreached]:
        """The starting points that the budget kept from training in full on every text (see
        :func:`~ajuste.search.study.unreached`)."""
        return unreached(self.study.get_trials(deepcopy=False))

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object of ``ajuste tune`` (with ``ensemble`` when one was asked for)."""
        # n and, under cv, the folds: what the validation figures were counted on (train+val's texts under --cv)
        headline = ("accuracy", "macro_f1", "loss", "accuracy_ci95", "n", "cross_validated")
        chosen = self.ensemble
        ensemble = (
            {
                "members": [{"trial": m.trial, "weight": m.weight} for m in chosen.members],
                "val": {"single_best": chosen.single_best, "ensemble": chosen.ensemble},
            }
            if chosen is not None
            else None
        )
        return {
            "run_dir": str(self.run_dir),
            "seconds": self.seconds,
            "best_params": self.best_params,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "trials": self.trial_counts(),
            "families": [asdict(share) for share in self.families()],
            "unreached": [asdict(missed) for missed in self.unreached()],
            "data": {**self.data.counts(), "classes": self.data.labels},
            **{split: {k: v for k, v in m.items() if k in headline} for split, m in self.metrics.items()},
            "final_by": self.final_by,
            "running_elsewhere": self.running_elsewhere,
            **({"ensemble": ensemble} if ensemble is not None else {}),
            **({"rescore": self.rescore.model_dump(mode="json")} if self.rescore is not None else {}),
            **({"choice": self.choice} if self.choice is not None else {}),
        }


def default_tune_dir(config: TuneConfig, root: str | Path = "runs") -> Path:
    """``runs/tune-<data>-<fingerprint>``: the same command finds the same folder, and so resumes."""
    source = config.data.dataset or Path(config.data.path or "data").stem
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in source)
    return Path(root) / f"tune-{safe}-{config.fingerprint()}"


def search_space(config: TuneConfig) -> SearchSpace:
    """The space of the search; a training setting fixed by the user (``--epochs 3``) is not searched."""
    defaults = student_families() if config.distill is not None else default_families()
    fixed = {f"train.{name}": getattr(config.train, name) for name in sorted(config.train.model_fields_set)}
    # a model setting given with its family is fixed too (it was searched over, the given value discarded)
    fixed.update({f"model.{k}": v for k, v in config.model.items() if k != "family" and config.model.get("family")})
    settings = None
    if config.model.get("family") is not None:
        settings = model_settings(config.model)  # the fixed settings must be valid on their own, the family first
    space = parse_space(
        config.space, base_model=config.model, families=config.families, fixed=fixed, default_families=defaults
    )
    if settings is not None:
        check_checkpoint(settings)  # before the search starts, rather than failing every trial
    return space


def _open_search(folder: RunFolder, config: TuneConfig, overwrite: bool, finalize: bool = False) -> SearchInfo:
    """Under the folder's lock: start afresh (``overwrite``), or reopen the same search, or start it. ``finalize``
    (which never starts or discards a search) changes only what the errors advise."""
    if overwrite:
        folder.clear()
    folder.clean_search()
    info = folder.read_search_info()
    if info is not None:
        if info.fingerprint != config.fingerprint():
            raise RunFolderError(
                f"{folder.path} holds another search (different data, space or search settings)",
                expected=f"fingerprint {config.fingerprint()}",
                found=info.fingerprint,
                fix="Give [[--finalize||finalize=True]] the data, space and search settings the search was started "
                "with."
                if finalize
                else "Choose another [[--out||out]], or pass [[--overwrite||overwrite=True]] to start this search "
                "afresh.",
            )
        ran = folder.report_file.is_file() or folder.is_finished()  # trials ran here: the study was in the folder
        if info.storage is None and ran and not folder.study_file.is_file():
            raise RunFolderError(
                f"the search in {folder.path} has lost its study: {folder.study_file.name} is missing",
                fix="Restore it from a copy to resume."
                if finalize
                else "Restore it from a copy to resume, or pass [[--overwrite||overwrite=True]] to start the search "
                "afresh.",
            )
        return info
    settings = config.tune
    info = SearchInfo(
        fingerprint=config.fingerprint(),
        storage=public_url(settings.storage) if settings.storage else None,
        study=settings.study or f"ajuste-{config.fingerprint()}",
        metric=settings.metric,
        direction="minimize" if settings.direction == "minimize" else "maximize",
        sampler=settings.sampler,
        pruner=settings.pruner,
        data=config.data.dataset or config.data.path,
    )
    recorded = config.model_dump(mode="json", exclude={"out"})
    recorded["tune"]["storage"] = info.storage  # never the password
    space_yaml = yaml.safe_dump(recorded, sort_keys=False)
    folder.write_search_info(info, space_yaml)
    return info


def _open_study(
    folder: RunFolder,
    info: SearchInfo,
    config: TuneConfig,
    space: SearchSpace,
    url: str,
    data: PreparedData,
    student: StudentData | None,
    opened: optuna.storages.BaseStorage | None = None,
) -> tuple[optuna.Study, int, str | None]:
    """The study (in the ``opened`` storage, else the one at ``url``), its interrupted trials queued again, with
    this run's sampler and pruner; how many trials a crash had left running; and, on a shared study, this
    worker's name."""
    settings = config.tune
    storage = opened or open_storage(url, heartbeat=settings.heartbeat)
    shared = storage_kind(url) != "local"
    study = database_retries(
        lambda: optuna.create_study(
            storage=storage, study_name=info.study, direction=info.direction, load_if_exists=True
        ),
        url,
    )
    worker = worker_id() if shared else None
    with study_lock(storage, url, info.study):  # workers starting together: one checks and seeds the study
        if shared:
            teacher = student.teacher.fingerprint() if student is not None else None
            _same_study(study, study_identity(config, data, space, teacher), url)
        if settings.sampler != "grid":  # a grid runs every point once anyway
            enqueue_portfolio(study, config, space)
        recovered = recover(study, local=not shared, enqueue=settings.sampler != "grid")
        if storage_kind(url) == "journal":  # no heartbeats in a journal: this machine's dead workers are known
            recovered += recover_dead_workers(study, socket.gethostname(), enqueue=settings.sampler != "grid")
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(
        settings.sampler,
        space,
        seed=worker_seed(config.seed, worker) if worker else config.seed + existing,
        startup_trials=settings.startup_trials,
        lock=(lambda: study_lock(storage, url, info.study)) if shared else None,
    )
    # Under cv the pruner's steps are folds, not epochs.
    study.pruner = make_pruner(settings.pruner, max_epochs=settings.cv or max_epochs(space))
    study.set_user_attr("metric", settings.metric)
    return study, recovered, worker


IDENTITY = "ajuste:identity"
FINAL = "ajuste:final"


def _same_study(study: optuna.Study, identity: dict[str, str], url: str) -> None:
    """Record what the study is (data, split, space, search) on first use; refuse a worker that differs."""
    recorded = study.user_attrs.get(IDENTITY)
    if recorded is None:
        study.set_user_attr(IDENTITY, identity)
        return
    different = [part for part in identity if recorded.get(part) != identity[part]]
    if different:
        raise SearchError(
            f"study '{study.study_name}' in {public_url(url)} was started with other settings: "
            f"different {', '.join(different)}",
            expected=", ".join(f"{part} {recorded.get(part)}" for part in different),
            found=", ".join(f"{part} {identity[part]}" for part in different),
            fix="Start every worker of a study with the same data, split, space and search settings "
            "(or give this one another [[--study||study]]).",
        )


def _budget(study: optuna.Study, trials: int | None, running: int = 0) -> int | None:
    """Trials still to run: the study's total minus those that count (and those ``running`` elsewhere); the
    grid's free points at most (a running trial's point is taken already)."""
    budget = None if trials is None else max(0, trials - counted(study) - running)
    if isinstance(study.sampler, SpaceGridSampler):
        free = study.sampler.remaining(study)
        budget = free if budget is None else min(budget, free)
    return budget


def _optimize(
    study: optuna.Study, objective: Objective, budget: int | None, timeout: float | None, on_trial: TrialHook | None
) -> None:
    if budget is not None and budget <= 0:
        return
    if timeout is not None:
        objective.deadline = time.perf_counter() + timeout
        objective.completed_before = any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    study.optimize(
        objective,
        n_trials=budget,
        timeout=timeout,
        catch=TRIAL_ERRORS,
        callbacks=[_after_trial(on_trial)] if on_trial else None,
        gc_after_trial=True,
    )


def _shared_search(
    study: optuna.Study,
    objective: Objective,
    config: TuneConfig,
    url: str,
    on_trial: TrialHook | None,
) -> int:
    """One worker's part of a shared study: trials until the study counts ``--trials`` (every worker's
    together) or this worker's ``--timeout`` ends. A trial left running by a dead worker is failed by the
    heartbeat check after its grace period and run again; the worker waits for that rather than stop short.
    A database that goes away is retried (see :func:`~ajuste.search.storage.database_retries`). Returns how
    many trials other workers are still running when this one stops."""
    settings = config.tune
    deadline = None if settings.timeout is None else time.perf_counter() + settings.timeout

    def running() -> int:
        return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING)

    def step() -> bool:
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9, and what the heartbeats are for
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        busy = running()
        left = _budget(study, settings.trials, busy)
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            return False
        if left is not None and left <= 0:
            if busy == 0:
                return False
            time.sleep(min(5.0, settings.heartbeat))  # the last trials run elsewhere; one may need running again
            return True
        try:
            _optimize(study, objective, left, remaining, on_trial)
        except optuna.exceptions.UpdateFinishedTrialError as exc:
            # This worker's trial went without a heartbeat past the grace period (an overloaded machine), so
            # another worker failed it and queued it again: that copy counts; this worker goes on.
            log.warning("a trial of this worker was declared stale and runs again elsewhere: %s", exc)
        return True

    while database_retries(step, url):
        pass
    return database_retries(running, url)


def _finalize(
    folder: RunFolder,
    objective: Objective,
    study: optuna.Study,
    info: SearchInfo,
    started: float,
    url: str,
    worker: str | None,
    finalize: bool,
) -> tuple[Final | None, dict[str, Any] | None, int]:
    """The final model, made once per study: here (a local study, or the worker that ends a shared one), or
    already by another worker (its record is returned), or not yet (trials still run elsewhere: their count)."""
    if worker is None:
        return finish(folder, objective, study, info, started), None, 0
    with study_lock(study._storage, url, info.study):
        done = study._storage.get_study_user_attrs(study._study_id).get(FINAL)
        if done is not None:
            return None, done, 0
        elsewhere = sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING)
        if elsewhere:
            if finalize:
                raise SearchError(
                    f"study '{info.study}' still has {elsewhere} trials running",
                    fix="Wait for its workers to end them (the last one finalizes by itself), then run "
                    "[[--finalize||again with finalize=True]].",
                )
            return None, None, elsewhere
        final = finish(folder, objective, study, info, started)
        study.set_user_attr(
            FINAL,
            {
                "worker": worker,
                "run_dir": str(folder.path.resolve()),
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "best_trial": final.best.number,
                # the trials whose models make the final model, and their weights (one, unless an ensemble)
                "members": [{"trial": m.trial, "weight": m.weight} for m in final.ensemble.members]
                if final.ensemble is not None
                else [{"trial": final.best.number, "weight": 1.0}],
                "test": {k: final.metrics["test"][k] for k in ("accuracy", "macro_f1", "accuracy_ci95", "n")},
            },
        )
        return final, None, 0


def _require_a_finished_trial(study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return
    errors = [t.user_attrs.get("error") for t in trials if t.user_attrs.get("error")]
    raise TrainingError(
        "no trial of the search finished",
        found=f"{len(trials)} trials ({', '.join(f'{k} {v}' for k, v in count_states(trials).items() if v)})"
        + (f"; first error: {errors[0]}" if errors else ""),
        fix="Look at report.html in the run folder; widen the budget or fix the space.",
    )


def run_tune(
    config: TuneConfig,
    *,
    overwrite: bool = False,
    finalize: bool = False,
    on_trial: TrialHook | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> TuneResult:
    """Search, refit, evaluate the test split once, and write the run folder; see the module docstring."""
    started = time.perf_counter()
    configure_threads()
    space = search_space(config)
    folder = RunFolder(config.out or default_tune_dir(config))
    coarsening: list[str] = []
    if config.tune.sampler == "grid" and config.tune.trials is not None:  # a grid the budget can run through
        space, coarsening = space.coarsened(config.tune.trials)
    grid_size = len(space.grid()) if config.tune.sampler == "grid" else None
    if not finalize and config.tune.trials is None and config.tune.timeout is None and grid_size is None:
        raise ConfigError(
            "no budget for the search", fix='Give [[--trials N||trials=N]] and/or [[--timeout 10m||timeout="10m"]].'
        )
    folder.check_search_target(overwrite, read_paths(config))
    if finalize and not config.tune.storage and (overwrite or folder.read_search_info() is None):
        raise RunFolderError(
            f"there is no search in {folder.path} to finalize",
            fix="Point [[--out||out]] at the folder of a search (or pass [[--storage||storage]] and [[--study||study]] "
            "of a shared one); [[--finalize||finalize=True]] never starts one, and [[--overwrite||overwrite=True]] "
            "would discard it.",
        )
    # a shared storage is opened before anything is written: one that cannot be used leaves no search behind
    shared = open_storage(config.tune.storage, heartbeat=config.tune.heartbeat) if config.tune.storage else None
    with folder.locked():
        data = load_data(config.data, seed=config.seed)  # before anything is written: bad data leaves no search
        log.info("data: %s", describe(data))
        student = _students(config, space, data)
        folds = cv_folds(data.train_and_val(), config.tune.cv, config.seed) if config.tune.cv else None
        rescore = (
            cv_folds(
                data.train_and_val(),
                RESCORE_FOLDS,
                config.seed,
                f"Drop [[--rescore||rescore]] (it re-scores on {RESCORE_FOLDS} folds), or add examples of that class.",
            )
            if config.tune.rescore
            else None
        )
        screen = _screen(config, data) if student is None else None  # (none under cv: see screen_size)
        info = _open_search(folder, config, overwrite, finalize)
        url = config.tune.storage or folder.storage_url(info)  # the given URL: its password is never recorded
        study, recovered, worker = _open_study(folder, info, config, space, url, data, student, shared)
        objective = Objective(
            config, space, data, worker=worker, student=student, folds=folds, rescore_folds=rescore, screen=screen
        )
        budget = _budget(study, config.tune.trials)
        if on_start is not None:
            on_start(
                {
                    "run_dir": folder.path,
                    "done": counted(study),
                    "recovered": recovered,
                    "budget": budget,
                    "data": data,
                    "space": space,
                    "grid": grid_size,
                    "fixed": space.fixed_by_user,
                    "coarsened": coarsening,
                    "worker": worker,
                    "storage": public_url(url) if worker else None,
                    "study": info.study,
                    "screen": None if screen is None else len(screen),
                }
            )
        finishing = False  # whether the search was over and its final model being made
        try:
            elsewhere = 0
            if not finalize and worker is None:
                _optimize(study, objective, budget, config.tune.timeout, on_trial)
            elif not finalize:
                elsewhere = _shared_search(study, objective, config, url, on_trial)
            _require_a_finished_trial(study)
            finishing = True
            final, final_by, elsewhere = (
                (None, None, elsewhere)
                if elsewhere
                else database_retries(
                    lambda: _finalize(folder, objective, study, info, started, url, worker, finalize), url
                )
            )
        except KeyboardInterrupt:
            raise SearchInterrupted(_interrupted(folder, study, finishing)) from None
        finally:
            _report(folder, info, url)
            if worker is not None:
                close_storage(study._storage)
    if final is None:
        best = best_trials(study, 1)[0]
        metrics = {"test": dict(final_by["test"])} if final_by else {}
        return TuneResult(
            folder.path,
            round(time.perf_counter() - started, 3),
            dict(best.user_attrs.get("settings") or best.params),
            float(best.value) if best.value is not None else float("nan"),
            best.number,
            study,
            None,
            metrics,
            data,
            {},
            final_by=final_by,
            running_elsewhere=elsewhere,
        )
    value = float(final.best.value) if final.best.value is not None else float("nan")
    return TuneResult(
        folder.path,
        final.seconds,
        final.best_params,
        value,
        final.best.number,
        study,
        final.classifier,
        final.metrics,
        data,
        final.importances,
        ensemble=final.ensemble,
        rescore=final.rescore,
        choice=how_chosen(config, study, final, data),
    )


def how_chosen(config: TuneConfig, study: optuna.Study, final: Final, data: PreparedData) -> dict[str, Any]:
    """How the final trial was chosen, in the words run.yaml records, and how close the choice was: how many
    complete trials shared the best score, over how many texts that score was counted (the validation split, or
    train+val under ``--cv``), and, for accuracy, what one text is worth. On a small validation split a tie at the
    top is common, and the user should see that the tie-break, not the score, made the choice."""
    best, rescored = final.best, final.rescore
    counts = data.counts()
    folds = rescored.folds if rescored is not None else config.tune.cv
    texts = counts["train"] + counts["val"] if folds else counts["val"]
    if rescored is not None:  # chosen on the folds' means of the re-scored candidates, not on the search's scores
        means = {c.trial: c.cv.mean for c in rescored.candidates}
        value = means[rescored.chosen]
        tied = sum(1 for mean in means.values() if math.isclose(mean, value))
        protocol = "rescore"
    else:
        value = float(best.value) if best.value is not None else math.nan
        tied = sum(1 for t in complete_trials(study) if math.isclose(float(t.value or 0.0), value))
        protocol = "ensemble" if final.averaged else "cv" if config.tune.cv else "validation"
    return {
        "protocol": protocol,
        "by": final.chosen_by,
        "metric": config.tune.metric,
        "value": value,
        "scored_on": f"{folds} folds of train+val" if folds else "the validation split",
        "texts": texts,
        "tied_at_best": tied,
        "one_text": 1 / texts if config.tune.metric == "accuracy" and texts else None,
    }


def _students(config: TuneConfig, space: SearchSpace, data: PreparedData) -> StudentData | None:
    """With a teacher: the students' training texts and the teacher's targets, computed once for every trial."""
    if config.distill is None:
        return None
    solvers = [name for name in space.families if registration(name).solver]
    if solvers:
        raise ConfigError(
            f"{', '.join(solvers)} cannot learn from a teacher: fitted by a solver on the labels alone",
            fix="Search students trained by gradient descent: [[--model "
            + ",".join(student_families())
            + "||model="
            + repr(student_families())
            + "]].",
        )
    return student_data(config.distill, data, config.seed)


def _screen(config: TuneConfig, data: PreparedData) -> TextDataset | None:
    """The stratified subset of the training texts that every trial is screened on first (``--screen``), or None."""
    size = config.tune.screen_size(len(data.train))
    if size is None:
        return None
    most = len(data.train) - 1
    return training_sample(
        data.train,
        size,
        config.seed,
        option=f"[[--screen {size}||screen={size}]]",
        most=most,
        fix=f"Give a [[--screen||screen]] from {len(set(data.train.labels))} to {most}, or "
        '[[--screen auto||screen="auto"]] (a quarter, on larger data) or [[--screen off||screen="off"]].',
    )


def _interrupted(folder: RunFolder, study: optuna.Study, finishing: bool) -> str:
    done = counted(study)
    trials = f"{done} counted trial{'' if done == 1 else 's'}"
    if finishing:
        return (
            f"the search had run its {trials} and was making its final model; the study is kept in {folder.path}: "
            "run the same command with [[--finalize||finalize=True]] to make it without a new trial"
        )
    return (
        f"the search was stopped after {trials} (an unfinished trial does not count and runs again); the study "
        f"is kept in {folder.path}: run the same command to resume it"
    )


def _after_trial(hook: TrialHook) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        hook(trial, study)

    return callback


def _report(folder: RunFolder, info: SearchInfo, url: str) -> None:
    try:
        from ajuste.search.report import write_report

        write_report(folder.path, storage=url, study_name=info.study)
    except Exception as exc:  # the report is a convenience: never lose a search over it
        log.warning("could not write report.html: %s", exc)


def tune(
    data: str | Mapping[str, Any] | Any = None,
    *,
    model: str | Sequence[str] | Mapping[str, Any] | None = None,
    space: Mapping[str, Any] | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    trials: int | None = None,
    timeout: float | str | None = None,
    metric: str = "accuracy",
    refit: str | None = None,
    cv: int | None = None,
    rescore: int | None = None,
    train: Mapping[str, Any] | None = None,
    storage: str | None = None,
    study: str | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    startup_trials: int = 8,
    screen: str | int = "auto",
    heartbeat: int = 60,
    ensemble: int | None = None,
    finalize: bool = False,
    distill_from: str | Path | None = None,
    distill: Mapping[str, Any] | None = None,
) -> TuneResult:
    """Search the settings of a classifier, refit the best, and evaluate it once on the test split.

    ``data`` is a built-in dataset name, a file path, a mapping of data settings or a DataSettings (unset:
    sms-spam); ``seed`` seeds the split, the sampler and training (unset: 123). ``distill_from`` (a run folder)
    searches students of that teacher, on its data and seed, with the settings ``distill`` (``temperature``,
    ``alpha``, ``augment``, ``unlabeled``: see :func:`ajuste.distill`);
    ``model`` a family, a list of families, a checkpoint, or a mapping of fixed model settings (unset:
    bag, gpt and minilm); ``space`` a search space (unset: the families' default spaces); ``ensemble`` K
    makes the final model the average of up to K of the best distinct trials' models, chosen greedily on
    validation (unset: 5; 1 under ``cv``, ``rescore`` or ``refit="train+val"`` and for students; 1: the best trial's
    model alone).
    Running the same call again resumes the same study. Returns the best settings, the study, the final model and
    its validation and test metrics. ``refit`` is ``train`` (the default) or ``train+val``;
    ``cv`` K scores every trial by stratified K-fold cross-validation over train+val instead of the validation
    split alone, and then refits on train+val; ``rescore`` N scores the N best distinct trials again that way
    (5 folds) when the search ends, and refits the best of them on train+val. ``screen`` (``auto``, ``off`` or a
    number of texts) trains each trial on a stratified subset of the training texts first, and on all of them only
    if it ranks in the better half of the study's screens so far (auto: a quarter, from 4,000 training texts).

    >>> result = ajuste.tune("sms-spam", model="bag", trials=20)          # doctest: +SKIP
    >>> result.best_params, result.metrics["test"]["accuracy"]            # doctest: +SKIP
    """
    fixed, families = _model_values(model)
    teaching = None
    if distill_from is not None:
        if data is not None or seed is not None:
            raise ConfigError(
                "distill_from takes the teacher's data and seed",
                fix="Drop data and seed: the students are chosen and tested on the teacher's split.",
            )
        data, seed = teacher_data(distill_from)
        teaching = {"teacher": str(distill_from), **dict(distill or {})}
    elif distill:
        raise ConfigError("distill settings need distill_from", fix="Name the teacher's run folder: distill_from=RUN.")
    searched = _space_values(space)
    if model is not None and searched is not None and searched.get("model.family") is not None:
        raise ConfigError(
            "model and the space's model.family both choose the families to search",
            found=f"model={model!r} and model.family {searched['model.family']!r}",
            fix="Drop model, or remove model.family from the space.",
        )
    values = {
        "data": _data_values("sms-spam" if data is None else data),
        "model": fixed,
        "families": families,
        "train": settings_mapping(train, "train", "train={'epochs': 3}"),
        "space": searched,
        "tune": {
            "sampler": sampler,
            "pruner": pruner,
            "trials": trials,
            "timeout": timeout,
            "metric": metric,
            **({"refit": refit} if refit is not None else {}),
            "cv": cv,
            "rescore": rescore,
            "storage": storage,
            "study": study,
            "startup_trials": startup_trials,
            "screen": screen,
            "heartbeat": heartbeat,
            "ensemble": ensemble,
        },
        "seed": 123 if seed is None else seed,
        "out": folder_path(out),
        "distill": teaching,
    }
    return run_tune(validate(TuneConfig, values), overwrite=overwrite, finalize=finalize)


def _data_values(data: str | Mapping[str, Any] | Any) -> dict[str, Any]:
    """The data section of ``tune``'s arguments: a built-in name, a path, a mapping or DataSettings."""
    from ajuste.data.builtin import BUILTIN_DATASETS
    from ajuste.data.settings import DataSettings

    if isinstance(data, DataSettings):
        return data.model_dump(exclude_unset=True)
    if isinstance(data, Mapping):
        return dict(data)
    if not isinstance(data, (str, os.PathLike)):
        raise ConfigError(
            "tune's data is a built-in dataset name, a file path, a mapping of data settings or a DataSettings",
            found=_kind(data),
            fix="Pass one of those: ajuste.tune('texts.csv', ...) reads one file.",
        )
    return {"dataset": str(data)} if str(data) in BUILTIN_DATASETS else {"path": str(data)}


def _space_values(space: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``space`` argument of ``tune``: a mapping of each searched setting to its range (as a config's)."""
    if space is not None and not isinstance(space, Mapping):
        raise ConfigError(
            "tune's space is a mapping of each searched setting to its choices or range",
            found=_kind(space),
            fix="Pass space={'train.lr': {'low': 1e-4, 'high': 1e-2, 'log': True}, 'model.embed_dim': [32, 64]}.",
        )
    return dict(space) if space is not None else None


def _kind(value: Any) -> str:
    """What a wrong argument is, in words: its type, and its length for a list."""
    n = len(value) if isinstance(value, (list, tuple)) else None
    return type(value).__name__ + (f" of {n} item{'' if n == 1 else 's'}" if n is not None else "")


def _model_values(model: str | Sequence[str] | Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The fixed model settings and the searched families of ``tune``'s ``model`` argument."""
    if isinstance(model, FamilySettings):
        return model.model_dump(mode="json"), []
    if isinstance(model, Mapping):
        return dict(model), []
    if isinstance(model, str):
        return ({"family": model} if is_named_family(model) else {"family": "pretrained", "checkpoint": model}), []
    if model is not None and not (isinstance(model, (list, tuple)) and all(isinstance(m, str) for m in model)):
        raise ConfigError(
            "tune's model is a family or checkpoint, a list of them, or a mapping of model settings",
            found=_kind(model),
            fix="Pass model='bag', model=['bag', 'minilm'] or model={'family': 'bag', 'embed_dim': 64}.",
        )
    if model is not None and not model:  # an empty list would search every default family, as if unset
        raise ConfigError(
            "tune's model list is empty",
            fix="Name the families to search (model=['bag', 'minilm']), or pass model=None for the default ones.",
        )
    return {}, list(model or [])

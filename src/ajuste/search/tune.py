"""``ajuste.tune``: search the settings on validation, refit the best, touch the test split once.

The study lives in a database (a SQLite file in the run folder unless ``storage`` says otherwise), so
running the same search again resumes it: finished trials are kept, trials interrupted by Ctrl-C or a
crash are run again, and ``trials`` is the total of the study, not of this run. The run folder gets its
final model, metrics, run.yaml and report.html only once the search is over, in that order, the model
last: until then it does not look like a finished run.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from ajuste.config import RunConfig
from ajuste.data import describe, load_data
from ajuste.data.dataset import TextDataset
from ajuste.data.prepare import PreparedData
from ajuste.errors import AjusteError, ConfigError, RunFolderError, TrainingError
from ajuste.models.settings import BagSettings, GPTSettings, PretrainedSettings
from ajuste.runs.folder import HISTORY_FILE, METRICS_FILE, RUN_FILE, SPLIT_FILE, elapsed, now, write_files, write_json
from ajuste.runtime import configure_threads
from ajuste.search.samplers import SpaceGridSampler, make_pruner, make_sampler
from ajuste.search.settings import TuneConfig
from ajuste.search.space import SearchSpace, parse_space, split_settings
from ajuste.training.callbacks import Callback
from ajuste.training.classifier import TextClassifier
from ajuste.training.settings import TrainSettings
from ajuste.validation import model_settings, validate

__all__ = ["SearchInterrupted", "TuneResult", "run_tune", "trial_settings", "tune"]

log = logging.getLogger(__name__)

TUNE_FILE = "tune.json"
STUDY_FILE = "study.db"
SPACE_FILE = "space.yaml"
LOCK_FILE = ".lock"
DEFAULT_FAMILIES = ("bag", "gpt", "minilm")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: What makes one trial fail without stopping the search (out of memory is a RuntimeError).
TRIAL_ERRORS = (AjusteError, RuntimeError, MemoryError, ValueError)

AnyModelSettings = BagSettings | GPTSettings | PretrainedSettings
TrialHook = Callable[[FrozenTrial, optuna.Study], None]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: the study is kept and the same command resumes it."""


@dataclass
class TuneResult:
    """What a search produced: the best settings, the study, the final model and its metrics."""

    run_dir: Path
    seconds: float
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    study: optuna.Study
    classifier: TextClassifier
    metrics: dict[str, dict[str, Any]]
    data: PreparedData
    importances: dict[str, float] = field(default_factory=dict)

    def trial_counts(self) -> dict[str, int]:
        return count_states(self.study.get_trials(deepcopy=False))

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object of ``ajuste tune``."""
        headline = ("accuracy", "macro_f1", "loss", "accuracy_ci95")
        return {
            "run_dir": str(self.run_dir),
            "seconds": self.seconds,
            "best_params": self.best_params,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "trials": self.trial_counts(),
            "data": {**self.data.counts(), "classes": self.data.labels},
            **{split: {k: v for k, v in m.items() if k in headline} for split, m in self.metrics.items()},
        }


def count_states(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    counts = Counter(t.state.name.lower() for t in trials)
    return {state: counts.get(state, 0) for state in ("complete", "pruned", "fail", "running", "waiting")}


def trial_settings(config: TuneConfig, values: Mapping[str, Any]) -> tuple[AnyModelSettings, TrainSettings]:
    """The validated model and training settings of one point of the space, over the fixed ones."""
    family = values["model.family"]
    base = dict(config.model) if config.model.get("family") == family else {}
    model_values, train_values = split_settings(values)
    model = {**base, "family": family, **model_values}
    train = {**config.train.model_dump(), **train_values}
    return model_settings(model), validate(TrainSettings, train, "train")


class _Reporter(Callback):
    """Feeds the validation score to the pruner after every epoch and keeps the epoch rows."""

    def __init__(self, trial: optuna.Trial, monitor: str, out_of_time: Callable[[], bool] = lambda: False) -> None:
        self.trial = trial
        self.monitor = monitor
        self.rows: list[dict[str, Any]] = []
        self.epochs: int | None = None
        self.out_of_time = out_of_time

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.epochs = int(logs["epochs"]) if "epochs" in logs else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in logs.items()})
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), epoch)
        # After the last epoch the trial has cost all it will: it completes rather than being pruned.
        if epoch != self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} with {self.monitor} {float(value):.4f}")
        if epoch != self.epochs and self.out_of_time():
            self.trial.set_user_attr("stopped", "the search's time budget ran out")
            raise optuna.TrialPruned(f"stopped after epoch {epoch}: the time budget ran out")


@dataclass
class _Best:
    """The best trial's model so far, kept so that refitting on train does not train it twice."""

    number: int | None = None
    value: float | None = None
    classifier: TextClassifier | None = None


class _Search:
    """One search over one prepared dataset: the objective, the study, and the final model."""

    def __init__(self, config: TuneConfig, space: SearchSpace, data: PreparedData, run_dir: Path) -> None:
        self.config = config
        self.space = space
        self.data = data
        self.run_dir = run_dir
        self.settings = config.tune
        self.metric = config.tune.metric
        self.best = _Best()
        self.deadline: float | None = None
        self.completed_before = False

    def out_of_time(self) -> bool:
        """Past the deadline of ``timeout``, once some trial has completed: a trial never runs far over it."""
        done = self.best.number is not None or self.completed_before
        return done and self.deadline is not None and time.perf_counter() > self.deadline

    def objective(self, trial: optuna.Trial) -> float:
        started = time.perf_counter()
        values = self.space.suggest(trial)
        trial.set_user_attr("settings", values)
        reporter = _Reporter(trial, f"val_{self.metric}", self.out_of_time)
        classifier = None
        try:
            model, train = trial_settings(self.config, values)
            classifier = TextClassifier(model, labels=self.data.labels)
            classifier.compile_from(train.compile_settings(), class_weights=self.data.class_weights)
            fit = train.fit_settings().model_copy(update={"monitor": f"val_{self.metric}"})
            classifier.fit_from(
                self.data.train,
                None,
                fit,
                validation_data=self.data.val,
                callbacks=[reporter],
                seed=self.config.seed,
                verbose=False,
            )
            history = classifier.history_
            if history is None or not history.epochs:
                raise TrainingError("the trial trained no epoch")
            epoch = history.best_epoch or len(history)
            row = history.epochs[epoch - 1]
            value = float(row[f"val_{self.metric}"])
            if not math.isfinite(value):
                raise TrainingError(f"the validation {self.metric} is not a number", found=str(value))
            trial.set_user_attr("best_epoch", epoch)
            trial.set_user_attr("val_metrics", {k: v for k, v in row.items() if k.startswith("val_")})
            if self._improves(value):
                self.best = _Best(trial.number, value, classifier)
            return value
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("error", "interrupted: the search was stopped during this trial")
            raise
        except TRIAL_ERRORS as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            trial.set_user_attr("error", reason[:500])
            raise
        finally:
            trial.set_user_attr("history", reporter.rows)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
            del classifier  # study.optimize(gc_after_trial=True) collects it

    def _improves(self, value: float) -> bool:
        if self.best.value is None:
            return True
        return value < self.best.value if self.settings.direction == "minimize" else value > self.best.value

    def final_model(self, best: FrozenTrial) -> tuple[TextClassifier, dict[str, Any]]:
        """The final model: the best trial's own when refitting on train repeats it exactly, else a refit."""
        if self.settings.refit == "train" and self.best.number == best.number and self.best.classifier is not None:
            note = "the best trial's model: a refit with the same settings, data and seed repeats it exactly"
            return self.best.classifier, {"refit": "train", "how": note}
        self.best = _Best()
        gc.collect()
        model, train = trial_settings(self.config, best.user_attrs.get("settings") or self.space.decode(best.params))
        classifier = TextClassifier(model, labels=self.data.labels)
        classifier.compile_from(train.compile_settings(), class_weights=self.data.class_weights)
        if self.settings.refit == "train":
            fit = train.fit_settings().model_copy(update={"monitor": f"val_{self.metric}"})
            classifier.fit_from(
                self.data.train, None, fit, validation_data=self.data.val, seed=self.config.seed, verbose=False
            )
            return classifier, {"refit": "train", "how": "trained again with the best settings on the training split"}
        epochs = int(best.user_attrs.get("best_epoch") or train.epochs or classifier_epochs(classifier))
        both = concat(self.data.train, self.data.val)
        fit = train.fit_settings().model_copy(update={"epochs": epochs, "early_stopping": None, "restore_best": False})
        classifier.fit_from(both, None, fit, seed=self.config.seed, verbose=False)
        how = f"trained again with the best settings on train+val for {epochs} epochs (the best trial's best epoch)"
        return classifier, {"refit": "train+val", "how": how, "epochs": epochs}


def classifier_epochs(classifier: TextClassifier) -> int:
    family = classifier.family_
    return family.defaults().epochs if family is not None else 1


def concat(first: TextDataset, second: TextDataset) -> TextDataset:
    return TextDataset(first.texts + second.texts, first.labels + second.labels, first.rows + second.rows)


# -- the run folder of a search -----------------------------------------------------------------------


def default_tune_dir(config: TuneConfig, root: str | Path = "runs") -> Path:
    """``runs/tune-<data>-<fingerprint>``: the same command finds the same folder, and so resumes."""
    source = config.data.dataset or Path(config.data.path or "data").stem
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in source)
    return Path(root) / f"tune-{safe}-{config.fingerprint()}"


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """One search at a time in a run folder (another machine uses its own folder and a shared storage)."""
    handle = (run_dir / LOCK_FILE).open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunFolderError(
                f"another `ajuste tune` is already running in {run_dir}",
                fix="Wait for it, or give this one another --out (with --storage to share the study).",
            ) from None
        yield
    finally:
        handle.close()


def prepare_folder(config: TuneConfig, run_dir: Path, overwrite: bool) -> dict[str, Any]:
    """Create or reopen the run folder; refuse a folder that holds another search."""
    tune_file = run_dir / TUNE_FILE
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if run_dir.exists() and not tune_file.is_file() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunFolderError(
            f"the output folder {run_dir} already exists and holds no search",
            fix="Choose another --out, or pass --overwrite to replace it.",
        )
    if tune_file.is_file():
        info = json.loads(tune_file.read_text(encoding="utf-8"))
        if info.get("fingerprint") != config.fingerprint():
            raise RunFolderError(
                f"{run_dir} holds another search (different data, space or search settings)",
                expected=f"fingerprint {config.fingerprint()}",
                found=str(info.get("fingerprint")),
                fix="Choose another --out, or pass --overwrite to start this search afresh.",
            )
        return dict(info)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = config.tune.storage or f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"
    info = {
        "fingerprint": config.fingerprint(),
        "storage": storage,
        "study": config.tune.study or f"ajuste-{config.fingerprint()}",
        "metric": config.tune.metric,
        "direction": config.tune.direction,
        "sampler": config.tune.sampler,
        "pruner": config.tune.pruner,
        "data": config.data.dataset or config.data.path,
        "created": now(),
    }
    config_text = yaml.safe_dump(config.model_dump(mode="json", exclude={"out"}), sort_keys=False)
    (run_dir / SPACE_FILE).write_text(config_text, encoding="utf-8")
    write_json(tune_file, info)
    return info


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    # A shared database: heartbeats let another worker see, and retry, the trial of a worker that died.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=60,
            grace_period=180,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
        )


def recover(study: optuna.Study, local: bool, enqueue: bool) -> int:
    """Trials left running by a crash (local storage only): failed as interrupted, and their settings queued."""
    if not local:
        return 0
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_user_attr(trial._trial_id, "error", "interrupted: the process stopped")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    requeue = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("interrupted") and t.params]
    if enqueue:
        waiting = {
            json.dumps(t.params, sort_keys=True, default=str) for t in study.get_trials(states=(TrialState.WAITING,))
        }
        done_again = {
            json.dumps(t.params, sort_keys=True, default=str) for t in study.get_trials(deepcopy=False) if _counts(t)
        }
        for trial in requeue:
            key = json.dumps(trial.params, sort_keys=True, default=str)
            if key not in waiting and key not in done_again:
                study.enqueue_trial(trial.params, skip_if_exists=False)
                waiting.add(key)
    return len(stale)


def _counts(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards the budget: finished, pruned, or failed for a reason of its own."""
    return trial.state in COUNTED and not trial.user_attrs.get("interrupted")


def counted(study: optuna.Study) -> int:
    """Trials that count towards the budget: finished, pruned, or failed for a reason of their own."""
    return sum(1 for t in study.get_trials(deepcopy=False) if _counts(t))


def write_final(
    run_dir: Path,
    classifier: TextClassifier,
    config: RunConfig,
    *,
    metrics: dict[str, Any],
    split: dict[str, Any],
    record: dict[str, Any],
) -> None:
    """Stage the final files, then move them in, the model last: the moment the run looks finished."""
    staging = Path(tempfile.mkdtemp(prefix=".final.partial.", dir=run_dir))
    try:
        write_files(staging, classifier, config, metrics=metrics, split=split, record=record)
        old_model = run_dir / "model"
        if old_model.exists():
            shutil.rmtree(old_model)
        for name in (METRICS_FILE, HISTORY_FILE, SPLIT_FILE, RUN_FILE, "model"):
            os.replace(staging / name, run_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def best_trials(study: optuna.Study, count: int = 5) -> list[FrozenTrial]:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.value is not None]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: (t.value, -t.number), reverse=reverse)[:count]


def run_tune(
    config: TuneConfig,
    *,
    overwrite: bool = False,
    on_trial: TrialHook | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> TuneResult:
    """Search, refit, evaluate the test split once, and write the run folder; see the module docstring."""
    started = time.perf_counter()
    configure_threads()
    families: list[str] = list(config.families) or ([] if config.model.get("family") else list(DEFAULT_FAMILIES))
    space = parse_space(config.space, base_model=config.model, families=families)
    if config.model.get("family"):
        model_settings(config.model)  # the fixed settings must be valid on their own
    settings = config.tune
    run_dir = Path(config.out) if config.out else default_tune_dir(config)
    grid_size = len(space.grid()) if settings.sampler == "grid" else None
    if settings.trials is None and settings.timeout is None and grid_size is None:  # before any folder is made
        raise ConfigError("no budget for the search", fix="Give --trials N and/or --timeout 10m.")
    info = prepare_folder(config, run_dir, overwrite)
    with locked(run_dir):
        data = load_data(config.data, seed=config.seed)
        log.info("data: %s", describe(data))
        storage = open_storage(info["storage"])
        study = optuna.create_study(
            storage=storage,
            study_name=info["study"],
            direction="minimize" if settings.metric == "loss" else "maximize",
            load_if_exists=True,
        )
        local = config.tune.storage is None
        recovered = recover(study, local, enqueue=settings.sampler != "grid")
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(
            settings.sampler, space, seed=config.seed + existing, startup_trials=settings.startup_trials
        )
        study.pruner = make_pruner(settings.pruner, max_epochs=max_epochs(space))
        study.set_user_attr("metric", settings.metric)
        search = _Search(config, space, data, run_dir)
        done = counted(study)
        budget = None if settings.trials is None else max(0, settings.trials - done)
        if isinstance(study.sampler, SpaceGridSampler):
            free = study.sampler.remaining(study)
            budget = free if budget is None else min(budget, free)
        if on_start is not None:
            on_start(
                {
                    "run_dir": run_dir,
                    "done": done,
                    "recovered": recovered,
                    "budget": budget,
                    "data": data,
                    "space": space,
                    "grid": grid_size,
                }
            )
        try:
            if budget is None or budget > 0:
                if settings.timeout is not None:
                    search.deadline = time.perf_counter() + settings.timeout
                    search.completed_before = any(
                        t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)
                    )
                study.optimize(
                    search.objective,
                    n_trials=budget,
                    timeout=settings.timeout,
                    catch=TRIAL_ERRORS,
                    callbacks=[_after_trial(on_trial)] if on_trial else None,
                    gc_after_trial=True,
                )
        except KeyboardInterrupt:
            _report(run_dir, info)
            raise SearchInterrupted(
                f"search stopped after {counted(study)} trials; the study is kept in {run_dir}: "
                "run the same command to resume it"
            ) from None
        trials = study.get_trials(deepcopy=False)
        if not any(t.state == TrialState.COMPLETE for t in trials):
            errors = [t.user_attrs.get("error") for t in trials if t.user_attrs.get("error")]
            _report(run_dir, info)
            raise TrainingError(
                "no trial of the search finished",
                found=f"{len(trials)} trials ({', '.join(f'{k} {v}' for k, v in count_states(trials).items() if v)})"
                + (f"; first error: {errors[0]}" if errors else ""),
                fix="Look at report.html in the run folder; widen the budget or fix the space.",
            )
        best = study.best_trial
        found = importances(study)
        kept = _kept_result(run_dir, best, settings.refit)
        if kept is not None:  # same best trial, model already tested: the test split is not touched again
            classifier, metrics, record = kept
            record["search"].update(
                trials=count_states(study.get_trials(deepcopy=False)), importances=found, best_value=best.value
            )
            _rewrite_record(run_dir, record)
            best_params = dict(record["search"]["best_params"])
            seconds = elapsed(started)
        else:
            classifier, refit = search.final_model(best)
            metrics = {"val": classifier.evaluate(data.val, seed=config.seed)}
            # The one access to the test split, after every choice has been made on validation.
            metrics["test"] = classifier.evaluate(data.test, seed=config.seed)
            test_access = {
                "split": "test",
                "at": now(),
                "texts": len(data.test),
                "purpose": "final evaluation of the refit",
            }
            best_params = dict(best.user_attrs.get("settings") or space.decode(best.params))
            model, train = trial_settings(config, best_params)
            resolved = RunConfig(data=config.data, model=model, train=train, seed=config.seed)
            seconds = elapsed(started)
            record = {
                "created": now(),
                "seconds": seconds,
                "data": data.report,
                "model": classifier.describe(),
                "search": {
                    **{k: info[k] for k in ("storage", "study", "metric", "direction", "sampler", "pruner")},
                    "fingerprint": info["fingerprint"],
                    "trials": count_states(study.get_trials(deepcopy=False)),
                    "best_trial": best.number,
                    "best_value": best.value,
                    "best_params": best_params,
                    "importances": found,
                    **refit,
                },
                "test_accesses": [*_previous_accesses(run_dir), test_access],
            }
            split = {"source": data.report["source"], "seed": config.seed, **data.split_record()}
            write_final(run_dir, classifier, resolved, metrics=metrics, split=split, record=record)
        _report(run_dir, info)
        value = float(best.value) if best.value is not None else math.nan
        return TuneResult(run_dir, seconds, best_params, value, best.number, study, classifier, metrics, data, found)


def _rewrite_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Replace the record of run.yaml, atomically, keeping its settings."""
    content = yaml.safe_load((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    content["record"] = record
    staged = run_dir / f".{RUN_FILE}.partial"
    staged.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(staged, run_dir / RUN_FILE)


def _kept_result(
    run_dir: Path, best: FrozenTrial, refit: str
) -> tuple[TextClassifier, dict[str, Any], dict[str, Any]] | None:
    """The final model already written for this best trial, its metrics and record; None if there is none."""
    from ajuste.training.classifier import load

    path = run_dir / RUN_FILE
    if not (run_dir / "model").is_dir() or not path.is_file() or not (run_dir / METRICS_FILE).is_file():
        return None
    try:
        record = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("record") or {}
        search = record.get("search") or {}
        if search.get("best_trial") != best.number or search.get("refit") != refit:
            return None
        metrics = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
        return load(run_dir), metrics, record
    except (yaml.YAMLError, json.JSONDecodeError, AjusteError):
        return None


def _previous_accesses(run_dir: Path) -> list[Any]:
    """Test accesses of earlier completions of the same study: a resumed search keeps their record."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        return []
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return []
    return list((content.get("record") or {}).get("test_accesses") or [])


def _after_trial(hook: TrialHook) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        hook(trial, study)

    return callback


def _report(run_dir: Path, info: Mapping[str, Any]) -> None:
    try:
        from ajuste.search.report import write_report

        write_report(run_dir, storage=info["storage"], study_name=info["study"])
    except Exception as exc:  # the report is a convenience: never lose a search over it
        log.warning("could not write report.html: %s", exc)


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


def tune(
    data: str | Mapping[str, Any] | Any = "sms-spam",
    *,
    model: str | Sequence[str] | Mapping[str, Any] | None = None,
    space: Mapping[str, Any] | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    trials: int | None = None,
    timeout: float | str | None = None,
    metric: str = "accuracy",
    refit: str = "train",
    train: Mapping[str, Any] | None = None,
    storage: str | None = None,
    study: str | None = None,
    seed: int = 123,
    out: str | Path | None = None,
    overwrite: bool = False,
    startup_trials: int = 8,
) -> TuneResult:
    """Search the settings of a classifier, refit the best, and evaluate it once on the test split.

    ``data`` is a built-in dataset name, a file path, a mapping of data settings or a DataSettings;
    ``model`` a family, a list of families, a checkpoint, or a mapping of fixed model settings (unset:
    bag, gpt and minilm); ``space`` a search space (unset: the families' default spaces). Running the
    same call again resumes the same study. Returns the best settings, the study, the final model and
    its validation and test metrics.

    >>> result = ajuste.tune("sms-spam", model="bag", trials=20)          # doctest: +SKIP
    >>> result.best_params, result.metrics["test"]["accuracy"]            # doctest: +SKIP
    """
    from ajuste.data.builtin import BUILTIN_DATASETS
    from ajuste.data.settings import DataSettings

    if isinstance(data, DataSettings):
        data_values: dict[str, Any] = data.model_dump(exclude_unset=True)
    elif isinstance(data, Mapping):
        data_values = dict(data)
    else:
        data_values = {"dataset": str(data)} if str(data) in BUILTIN_DATASETS else {"path": str(data)}
    families: list[str] = []
    fixed: dict[str, Any] = {}
    if isinstance(model, (BagSettings, GPTSettings, PretrainedSettings)):
        fixed = model.model_dump(mode="json")
    elif isinstance(model, Mapping):
        fixed = dict(model)
    elif isinstance(model, str):
        fixed = (
            {"family": model} if model in ("bag", "gpt", "minilm") else {"family": "pretrained", "checkpoint": model}
        )
    elif model is not None:
        families = list(model)
    values = {
        "data": data_values,
        "model": fixed,
        "families": families,
        "train": dict(train or {}),
        "space": dict(space) if space is not None else None,
        "tune": {
            "sampler": sampler,
            "pruner": pruner,
            "trials": trials,
            "timeout": timeout,
            "metric": metric,
            "refit": refit,
            "storage": storage,
            "study": study,
            "startup_trials": startup_trials,
        },
        "seed": seed,
        "out": str(out) if out is not None else None,
    }
    return run_tune(validate(TuneConfig, values), overwrite=overwrite)

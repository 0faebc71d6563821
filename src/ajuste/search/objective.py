"""One trial: its settings, the training it runs, the reporter that feeds the pruner, and which errors fail it.

A trial fails (and the search goes on) only for what a trial can legitimately meet: a loss that is not a
number, running out of memory, settings the model refuses. Anything else is a bug in ajuste: the study
stops, the trial is marked as not counting (so the same command re-runs it once the bug is fixed), and the
command exits with an internal error.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import traceback
from collections.abc import Callable, Collection, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ajuste import cache
from ajuste.data.dataset import TextDataset
from ajuste.data.prepare import PreparedData
from ajuste.errors import AjusteError, TrainingError
from ajuste.models.registry import make_family
from ajuste.models.settings import FamilySettings
from ajuste.runs.distill import StudentData, teacher_as_encoder
from ajuste.runs.record import CrossValidationRecord
from ajuste.search import ensemble
from ajuste.search.settings import TuneConfig
from ajuste.search.space import SearchSpace, split_settings
from ajuste.search.study import (
    CUT,
    OUT_OF_TIME,
    RESCORED,
    SCREEN,
    SCREENED_OUT,
    cohort,
    cohort_of,
    counts_towards_budget,
    ranking,
    retried,
    screen_only,
    screen_rank,
)
from ajuste.training.callbacks import Callback
from ajuste.training.classifier import TextClassifier
from ajuste.training.distillation import TeacherTargets
from ajuste.training.ensemble import log_probabilities
from ajuste.training.settings import TrainSettings
from ajuste.validation import model_settings, validate

__all__ = ["TRIAL_ERRORS", "Objective", "SurplusTrial", "TrialReporter", "trial_failure", "trial_settings"]


class SurplusTrial(AjusteError):
    """A trial that one worker started while the others had already started the study's last ones."""


#: Trials in a row that would not fit in the time left before the search ends (see :meth:`Objective._afford`).
SKIPS_BEFORE_STOP = 10

#: The errors that fail one trial without stopping the search (see :func:`trial_failure`).
TRIAL_ERRORS = (AjusteError, MemoryError)

_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate")


def trial_failure(exc: BaseException) -> AjusteError | MemoryError | None:
    """The error as a legitimate trial failure, or None when it is a bug that must stop the search."""
    if isinstance(exc, (AjusteError, MemoryError)):
        return exc
    # torch's OutOfMemoryError (CUDA) and the CPU allocator's failure are RuntimeErrors that say so.
    if isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _OUT_OF_MEMORY):
        return TrainingError("out of memory", found=str(exc).splitlines()[0][:200] if str(exc) else None)
    return None


def trial_settings(config: TuneConfig, values: Mapping[str, Any]) -> tuple[FamilySettings, TrainSettings]:
    """The validated model and training settings of one point of the space, over the fixed ones."""
    family = values["model.family"]
    base = dict(config.model) if config.model.get("family") == family else {}
    model_values, train_values = split_settings(values)
    model = {**base, "family": family, **model_values}
    if config.distill is not None:
        model = teacher_as_encoder(model, config.distill.teacher)
    train = {**config.train.model_dump(), **train_values}
    return model_settings(model), validate(TrainSettings, train, "train")


class TrialReporter(Callback):
    """Feeds the validation score to the pruner after every epoch and keeps the epoch rows.

    Under cross-validation (a ``fold`` is set) the pruner hears the running mean after each fold instead
    (:meth:`report`, step = the fold's number): two kinds of step in one trial would mix epochs with folds.
    While a trial is ``screening`` (trained on a subset first) the pruner hears nothing per epoch: the screen's
    score is reported once, at step 0, and the epochs on every text are steps 1, 2, ...
    """

    def __init__(self, trial: optuna.Trial, monitor: str, out_of_time: Callable[[], bool] = lambda: False) -> None:
        self.trial = trial
        self.monitor = monitor
        self.rows: list[dict[str, Any]] = []
        self.epochs: int | None = None
        self.out_of_time = out_of_time
        #: Under cross-validation, the fold being trained (kept in its epoch rows).
        self.fold: int | None = None
        #: While the trial is screened: how many training texts it is screened on (kept in its epoch rows).
        self.screening: int | None = None
        #: Texts in the training set being fitted, and texts times epochs trained so far (the trial's work).
        self.texts = 0
        self.text_epochs = 0
        #: Seconds spent on validation passes, and how many there were (one per epoch; each over the same texts).
        self.validating = 0.0
        self.validations = 0

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.epochs = int(logs["epochs"]) if "epochs" in logs else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        row = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in logs.items()}
        if self.fold is not None:
            row["fold"] = self.fold
        if self.screening is not None:
            row["screen"] = self.screening
        self.rows.append(row)
        self.text_epochs += self.texts
        if "seconds_validating" in row:
            self.validating += float(row["seconds_validating"])
            self.validations += 1
        if self.screening is not None and epoch != self.epochs:
            self._stop_if_out_of_time("epoch", epoch)
        value = logs.get(self.monitor)
        if self.fold is not None or self.screening is not None or value is None or not math.isfinite(float(value)):
            return
        self.report(float(value), epoch, last=epoch == self.epochs)

    def report(self, value: float, step: int, *, last: bool) -> None:
        """Tell the pruner ``value`` at ``step`` (an epoch, or under cross-validation a fold and the running mean);
        stop the trial if it is hopeless or the time is up. After the ``last`` step the trial has cost all it
        will: it completes rather than being pruned."""
        self.trial.report(value, step)
        if last:
            return
        unit, score = ("fold", f"mean {self.monitor}") if self.fold is not None else ("epoch", self.monitor)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {unit} {step} with {score} {value:.4f}")
        self._stop_if_out_of_time(unit, step)

    def _stop_if_out_of_time(self, unit: str, step: int) -> None:
        if self.out_of_time():
            self.trial.set_user_attr("stopped", OUT_OF_TIME)
            raise optuna.TrialPruned(f"stopped after {unit} {step}: the time budget ran out")


class KeptModels:
    """The models of this process's best trials so far, up to ``size`` of them (ranked as the final choice ranks
    trials), kept so that the final model, and each member of a final ensemble, is not trained a second time: a
    refit on train with a trial's settings, data and seed repeats its model exactly."""

    def __init__(self, size: int, maximize: bool) -> None:
        self.size = max(size, 1)
        self.maximize = maximize
        self._kept: dict[int, tuple[tuple[float, float, int], TextClassifier | None]] = {}

    def offer(self, number: int, value: float, loss: float, classifier: TextClassifier | None) -> None:
        """Keep trial ``number``'s model if it ranks among the ``size`` best kept, dropping the one it displaces."""
        self._kept[number] = (ranking(value, loss, number, self.maximize), classifier)
        if len(self._kept) > self.size:
            del self._kept[max(self._kept, key=lambda n: self._kept[n][0])]

    def model(self, number: int) -> TextClassifier | None:
        """Trial ``number``'s model, if it is kept."""
        kept = self._kept.get(number)
        return kept[1] if kept is not None else None

    def release(self, keep: Collection[int] = ()) -> None:
        """Let go of every kept model but those of the trials ``keep`` (before training another, to free memory)."""
        for number in [n for n in self._kept if n not in keep]:
            del self._kept[number]
        gc.collect()

    def __bool__(self) -> bool:
        return bool(self._kept)


class Objective:
    """The objective of a study over one prepared dataset: trains one trial and returns its validation score."""

    def __init__(
        self,
        config: TuneConfig,
        space: SearchSpace,
        data: PreparedData,
        *,
        worker: str | None = None,
        student: StudentData | None = None,
        folds: list[tuple[TextDataset, TextDataset]] | None = None,
        rescore_folds: list[tuple[TextDataset, TextDataset]] | None = None,
        screen: TextDataset | None = None,
    ) -> None:
        self.config = config
        self.space = space
        self.data = data
        #: Under ``--cv K``: the K (trained on, validated on) folds of train+val that score every trial.
        self.folds = folds
        #: Under ``--rescore N``: the folds of train+val that score the best trials again when the search ends.
        self.rescore_folds = rescore_folds
        #: With a teacher: what every trial trains on (the texts and the teacher's targets).
        self.student = student
        #: Under screening (``--screen``): the stratified subset of the training texts every trial trains on first.
        self.screen = screen if folds is None and student is None else None
        self.metric = config.tune.metric
        #: The best trials' models so far (as many as the final ensemble may take).
        self.kept = KeptModels(config.tune.ensemble, config.tune.direction == "maximize")
        self.deadline: float | None = None
        self.completed_before = False
        #: On a shared study, this worker's name (recorded in each trial it runs).
        self.worker = worker
        #: Trials not started in a row because they would not fit in the time left (see :meth:`_afford`).
        self.skipped = 0
        #: Under ``--rescore`` and ``--timeout``: the seconds of the budget kept for the re-scoring (see
        #: :meth:`reserved`), as estimated when the last trial started.
        self.reserve = 0.0

    def out_of_time(self) -> bool:
        """Past the deadline of ``timeout``, once some trial has completed: a trial never runs far over it."""
        return self._completed() and self.deadline is not None and time.perf_counter() > self.deadline - self.reserve

    def _completed(self) -> bool:
        """Whether some trial of the study has completed (in this run, or before it)."""
        return bool(self.kept) or self.completed_before

    def __call__(self, trial: optuna.Trial) -> float:
        started = time.perf_counter()
        filled = cache.filling_seconds()
        if self.worker is not None:
            trial.set_user_attr("worker", self.worker)
            self._claim(trial)
        values = self.space.suggest(trial)
        trial.set_user_attr("settings", values)
        reporter = TrialReporter(trial, f"val_{self.metric}", self.out_of_time)
        try:
            self._afford(trial, values)
            return self._train(trial, values, reporter)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("error", "interrupted: the search was stopped during this trial")
            raise
        except Exception as exc:
            failure = trial_failure(exc)
            trial.set_user_attr("traceback", traceback.format_exc()[-8000:])
            if failure is None:  # a bug: not the trial's fault, so it does not count and runs again
                trial.set_user_attr("interrupted", True)
                trial.set_user_attr("error", f"internal error: {type(exc).__name__}: {_first_line(exc)}"[:500])
                raise
            trial.set_user_attr("error", _reason(failure))
            if failure is exc:
                raise
            raise failure from exc
        finally:
            seconds = time.perf_counter() - started
            trial.set_user_attr("history", reporter.rows)
            trial.set_user_attr("seconds", round(seconds, 3))
            if reporter.text_epochs:  # what it cost, for the estimates of later trials: its training per text and
                # epoch, and each validation pass (over the validation texts, whatever it trained on); not the
                # frozen layers' states or piece vectors it computed once for the cache, which they will read
                work = max(seconds - (cache.filling_seconds() - filled) - reporter.validating, 0.0)
                cost = {"text_epochs": reporter.text_epochs, "seconds": work}
                if reporter.validations:
                    cost |= {"validating": reporter.validating, "validations": reporter.validations}
                trial.set_user_attr("cost", cost)

    def _texts_per_fit(self) -> int:
        if self.folds is not None:
            return round(statistics.fmean(len(trained_on) for trained_on, _ in self.folds))
        return len(self.student.train if self.student else self.data.train)

    def estimate(self, trial: optuna.Trial, values: Mapping[str, Any]) -> float | None:
        """Seconds the trial will take at most, from the earlier trials of its :func:`~ajuste.search.study.cohort`:
        their seconds per text and epoch of training (median) times the texts it trains on (its screen's too) and
        its epochs (every fold's under cross-validation), plus their seconds per validation pass (median) times
        the passes it will make, one per epoch (and per screen epoch); the validation texts are the same whatever
        it trains on. None before any trial of its cohort has trained."""
        costs = [
            cost
            for other in trial.study.get_trials(deepcopy=False)
            if (cost := other.user_attrs.get("cost")) and cohort(other) == cohort_of(values)
        ]
        if not costs:
            return None
        training = statistics.median(float(c["seconds"]) / float(c["text_epochs"]) for c in costs)
        # a cost recorded before validation was counted apart holds it in its seconds: none to add for it
        each = [float(c["validating"]) / float(c["validations"]) for c in costs if c.get("validations")]
        validating = statistics.median(each) if each else 0.0
        model, train = trial_settings(self.config, values)
        family = make_family(model)
        epochs = (1 if family.solver else (train.epochs or family.defaults().epochs)) * (
            len(self.folds) if self.folds is not None else 1
        )
        screen = len(self.screen) if self.screen is not None else 0
        passes = epochs * (2 if screen else 1)
        return training * (self._texts_per_fit() + screen) * epochs + validating * passes

    def _afford(self, trial: optuna.Trial, values: Mapping[str, Any]) -> None:
        """Under ``--timeout``, once a trial has completed: a trial estimated to take longer than the time left is
        not started (it is pruned, saying so), so the rest of the budget goes to trials that can finish. After
        :data:`SKIPS_BEFORE_STOP` such trials in a row, nothing the sampler proposes fits: the search ends. Under
        ``--rescore``, the time left is what remains once the re-scoring's estimate is kept back; when nothing
        remains, the search ends so that the re-scoring fits in the budget."""
        if self.deadline is None or not self._completed():
            return
        self.reserve = self.reserved(trial.study)
        left = self.deadline - self.reserve - time.perf_counter()
        if self.reserve and left <= 0:
            reason = (
                f"not started: the {max(left + self.reserve, 0):.0f} s left are kept for re-scoring the best trials "
                f"(estimated {self.reserve:.0f} s)"
            )
            trial.set_user_attr("stopped", reason)
            trial.study.stop()
            raise optuna.TrialPruned(reason)
        estimate = self.estimate(trial, values)
        if estimate is None or estimate <= left:
            self.skipped = 0
            return
        self.skipped += 1
        reason = f"not started: estimated {estimate:.0f} s, {max(left, 0):.0f} s of the time budget left"
        if self.reserve:
            reason += f" once {self.reserve:.0f} s are kept for re-scoring the best trials"
        trial.set_user_attr("stopped", reason)
        if self.skipped >= SKIPS_BEFORE_STOP:
            trial.study.stop()
        raise optuna.TrialPruned(reason)

    def reserved(self, study: optuna.Study) -> float:
        """Under ``--rescore N``: the seconds that re-scoring the study's N best trials (with distinct settings) so
        far will take, each trained once per fold (a fold trains on about as many texts as a trial: 4/5 of
        train+val), from the seconds each took in the search; those already re-scored cost nothing. 0 without
        ``--rescore``."""
        size = self.config.tune.rescore
        if not size or not self.rescore_folds:
            return 0.0
        done = study.user_attrs.get(RESCORED) or {}
        pool = ensemble.candidates(study, size)[:size]
        seconds = (_unscreened_seconds(t, len(self.data.train)) for t in pool if str(t.number) not in done)
        return len(self.rescore_folds) * sum(seconds)

    def _claim(self, trial: optuna.Trial) -> None:
        """On a shared study, run this trial only if fewer than ``--trials`` trials that count or run come before
        it: workers that start trials at the same moment never run more than the study's count between them."""
        limit = self.config.tune.trials
        if limit is None:
            return
        trials = trial.study.get_trials(deepcopy=False)
        again = retried(trials)
        ahead = sum(
            1
            for other in trials
            if other.number < trial.number
            and (counts_towards_budget(other, again) or other.state == optuna.trial.TrialState.RUNNING)
        )
        if ahead >= limit:
            trial.set_user_attr("interrupted", True)  # not run, so it does not count
            trial.set_user_attr("error", f"not run: the study already has its {limit} trials")
            trial.study.stop()
            raise SurplusTrial(f"the study already has its {limit} trials")

    def _train(self, trial: optuna.Trial, values: dict[str, Any], reporter: TrialReporter) -> float:
        model, train = trial_settings(self.config, values)
        if self.folds is not None:
            return self._cross_validate(trial, model, train, reporter, self.folds)
        student = self.student
        fitted = None
        if self.screen is not None:
            screened, epochs = self._screened(trial, model, train, reporter, self.screen)
            # not one epoch on every text fits: the screen's model is the trial's (else let go before training)
            fitted = screened if epochs == 0 else None
            del screened
            if epochs:  # what fits of its schedule: it is trained, recorded and refitted so
                train = train.model_copy(update={"epochs": epochs})
                trial.set_user_attr("settings", {**values, "train.epochs": epochs})
        classifier, epoch, row = fitted or self._fit(
            model,
            train,
            student.train if student else self.data.train,
            self.data.val,
            reporter,
            teacher=student.targets if student else None,
        )
        # What the best epoch's model says of each validation text: an ensemble is chosen from these when the
        # search ends, without training its candidates again.
        rows = log_probabilities(classifier, self.data.val.texts).numpy()
        trial.set_user_attr(ensemble.VAL_LOG_PROBABILITIES, ensemble.encode(rows))
        return self._scored(trial, epoch, {k: v for k, v in row.items() if k.startswith("val_")}, classifier)

    def _screened(
        self,
        trial: optuna.Trial,
        model: FamilySettings,
        train: TrainSettings,
        reporter: TrialReporter,
        screen: TextDataset,
    ) -> tuple[tuple[TextClassifier, int, dict[str, Any]], int | None]:
        """Train the trial on the screening subset first (its whole schedule) and go on to every training text only
        if its validation score there ranks in the better half of the study's screens so far (the first always
        does); otherwise the trial is pruned, its screen's score reported at step 0.

        A trial screened in whose training on every text would not fit in the time budget left is given the
        cheaper fidelity that fits, recorded under ``cut``: it trains on every text for the epochs that fit, its
        schedule fitted to them (the same settings with fewer epochs, which ``train --epochs`` and the final refit
        repeat); where not one epoch fits, its screen's model is its model (a subset of the training texts, which
        the final refit trains on again), rather than throwing away what the budget paid for. Returned: the
        screen's model, its epoch and row; and the epochs to train on every text (0: none, the screen is the
        trial's model; None: its own epochs fit)."""
        started = time.perf_counter()
        filled = cache.filling_seconds()
        reporter.screening = len(screen)
        try:
            fitted = self._fit(model, train, screen, self.data.val, reporter)
        finally:
            reporter.screening = None
        _, epoch, row = fitted
        value = float(row[f"val_{self.metric}"])
        loss = float(row.get("val_loss", math.inf))
        took = time.perf_counter() - started
        trial.set_user_attr(
            SCREEN,
            {
                "texts": len(screen),
                "value": value,
                "loss": loss if math.isfinite(loss) else None,
                "epoch": epoch,
                "seconds": round(took, 3),
            },
        )
        trial.report(value, 0)
        rank, screened = screen_rank(trial.study, trial.number, len(screen))
        kept = math.ceil(screened / 2)
        where = f"on {len(screen):,} training texts"
        if rank > kept:
            reason = (
                f"{SCREENED_OUT}: val {self.metric} {value:.4f} {where} ranks {rank} of the {screened} screens so far "
                f"(the best {kept} train on all texts)"
            )
            trial.set_user_attr("stopped", reason)
            raise optuna.TrialPruned(reason)
        if self.deadline is None or not self._completed():
            return fitted, None
        # what it computed once for the cache (the validation texts' frozen states among them) is not computed again
        work = max(took - (cache.filling_seconds() - filled), 0.0)
        planned = reporter.epochs or 1
        before, per_epoch = _scaled(reporter.rows, work, len(self.data.train) / len(screen))
        whole = before + per_epoch * planned
        left = self.deadline - self.reserve - time.perf_counter()
        if whole <= left:
            return fitted, None
        fitting = max(min(math.floor((left - before) / per_epoch), planned - 1) if per_epoch > 0 else 0, 0)
        estimate = f"training on all {len(self.data.train):,} texts is estimated at {whole:.0f} s"
        given = f"trained for the {fitting} that fit" if fitting else f"its screen's model ({where}) kept"
        trial.set_user_attr(
            CUT,
            {
                "planned": planned,
                "epochs": fitting,
                "reason": f"{estimate} for its {planned} epochs, {max(left, 0):.0f} s of the time budget left: {given}",
            },
        )
        return fitted, fitting

    def _fit(
        self,
        model: FamilySettings,
        train: TrainSettings,
        trained_on: TextDataset,
        validated_on: TextDataset,
        reporter: TrialReporter | None,
        teacher: TeacherTargets | None = None,
    ) -> tuple[TextClassifier, int, dict[str, Any]]:
        """One model of the trial, validated after every epoch: it, the epoch whose weights it ends with and that
        epoch's row. The epoch is chosen as ``train`` chooses it (the training's ``monitor``, the validation loss
        by default, unless ``restore_best`` is off), so that a trial of a family's defaults is the model that
        ``ajuste train`` gives; the trial's score is that model's validation metric."""
        if reporter is not None:
            reporter.texts = len(trained_on)
        classifier = TextClassifier(model, labels=self.data.labels)
        classifier.compile_from(train.compile_settings(), class_weights=self.data.class_weights)
        fit = train.fit_settings()
        classifier.fit_from(
            trained_on,
            None,
            fit,
            validation_data=validated_on,
            callbacks=[reporter] if reporter is not None else [],
            seed=self.config.seed,
            verbose=False,
            teacher=teacher,
        )
        history = classifier.history_
        if history is None or not history.epochs:
            raise TrainingError("the trial trained no epoch")
        epoch = (history.best_epoch if fit.restore_best else None) or len(history)
        row = history.epochs[epoch - 1]
        value = float(row[f"val_{self.metric}"])
        if not math.isfinite(value):
            raise TrainingError(f"the validation {self.metric} is not a number", found=str(value))
        return classifier, epoch, row

    def _cross_validate(
        self,
        trial: optuna.Trial,
        model: FamilySettings,
        train: TrainSettings,
        reporter: TrialReporter,
        folds: list[tuple[TextDataset, TextDataset]],
    ) -> float:
        """The trial's settings trained once per fold on the other folds: its score is the folds' mean, told to
        the pruner as a running mean after each fold. Its best epoch is the median (low) of the folds' best
        epochs, what the final refit on train+val trains for; its validation metrics are the folds' means."""

        def after_fold(record: CrossValidationRecord) -> None:
            trial.set_user_attr("cv", record.model_dump(mode="json"))  # so that a pruned trial shows its folds
            reporter.report(record.mean, len(record.scores), last=len(record.scores) == len(folds))

        record, means = self.cross_validate(model, train, folds, reporter, after_fold)
        return self._scored(trial, statistics.median_low(record.best_epochs), means, None)

    def cross_validate(
        self,
        model: FamilySettings,
        train: TrainSettings,
        folds: list[tuple[TextDataset, TextDataset]],
        reporter: TrialReporter | None = None,
        after_fold: Callable[[CrossValidationRecord], None] | None = None,
    ) -> tuple[CrossValidationRecord, dict[str, float]]:
        """These settings trained once per fold on the other folds and validated on it: the folds' scores (and
        best epochs), and the means of every validation metric over the folds. ``after_fold`` hears the record
        so far after each fold."""
        scores: list[float] = []
        epochs: list[int] = []
        rows: list[dict[str, Any]] = []

        def record() -> CrossValidationRecord:
            mean, std = statistics.fmean(scores), statistics.pstdev(scores)
            return CrossValidationRecord(folds=len(folds), scores=scores, mean=mean, std=std, best_epochs=epochs)

        for number, (trained_on, validated_on) in enumerate(folds, start=1):
            if reporter is not None:
                reporter.fold = number
            _, epoch, row = self._fit(model, train, trained_on, validated_on, reporter)
            scores.append(float(row[f"val_{self.metric}"]))
            epochs.append(epoch)
            rows.append(row)
            if after_fold is not None:
                after_fold(record())
        means = {
            key: statistics.fmean(float(r[key]) for r in rows)
            for key in rows[0]
            if key.startswith("val_") and all(isinstance(r.get(key), (int, float)) for r in rows)
        }
        return record(), means

    def _scored(
        self, trial: optuna.Trial, epoch: int, metrics: dict[str, Any], classifier: TextClassifier | None
    ) -> float:
        """Record the trial's best epoch and validation metrics; keep it as the best so far if it ranks first."""
        value = float(metrics[f"val_{self.metric}"])
        trial.set_user_attr("best_epoch", epoch)
        trial.set_user_attr("val_metrics", metrics)
        loss = float(metrics.get("val_loss", math.inf))
        loss = loss if math.isfinite(loss) else math.inf
        self.kept.offer(trial.number, value, loss, classifier)
        return value


def _unscreened_seconds(trial: FrozenTrial, training_texts: int) -> float:
    """The seconds a trial took, less its screen's (re-scoring trains it on folds, without a screen); for a trial
    whose model is its screen's, the screen's seconds scaled to ``training_texts``."""
    screen = trial.user_attrs.get(SCREEN) or {}
    if texts := screen_only(trial):
        return float(screen.get("seconds") or 0.0) * training_texts / texts
    return max(float(trial.user_attrs.get("seconds") or 0.0) - float(screen.get("seconds") or 0.0), 0.0)


def _scaled(rows: list[dict[str, Any]], seconds: float, factor: float) -> tuple[float, float]:
    """What a screen which took ``seconds`` (its epoch ``rows`` among ``rows``) would take on ``factor`` times as
    many training texts: the seconds before its first epoch, and the seconds of each epoch (early stopping may
    have ended the screen before its last). What came before the epochs (the model, the texts' tokens) and each
    epoch's training scale with the texts; each epoch's validation pass, over the same validation texts, does
    not. A screen with no epoch row: all its seconds scaled, as if before the epochs."""
    screen = [row for row in rows if row.get("screen")]
    if not screen:
        return seconds * factor, 0.0
    epochs = sum(float(row.get("seconds") or 0.0) for row in screen)
    validating = sum(float(row.get("seconds_validating") or 0.0) for row in screen)
    before = max(seconds - epochs, 0.0)
    per_epoch = (max(epochs - validating, 0.0) * factor + validating) / len(screen)
    return before * factor, per_epoch


def _reason(failure: AjusteError | MemoryError) -> str:
    """A failed trial's reason as its record keeps it: the error's first line with both wordings of what to change
    (``[[--flag||argument]]``; the command line shows the flag, the report and Python the argument), at most 500
    characters and never a wording cut in half."""
    said = failure.marked() if isinstance(failure, AjusteError) else str(failure)
    text = f"{type(failure).__name__}: {said.splitlines()[0] if said else ''}"[:500]
    opened = text.rfind("[[")
    return text[:opened] if opened != -1 and "]]" not in text[opened:] else text


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""

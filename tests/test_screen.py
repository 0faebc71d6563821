"""Screening (``--screen``): a trial trains on a subset of the training texts first, and on all of them only if
its score there ranks in the better half of the study's screens so far.

Issue 10, item 8: on larger data, cheaper fidelities first (a subset of the training texts), the promising
trials promoted. Every search here trains the bag family on generated texts: fractions of a second a trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from ajuste.data import load_data
from ajuste.data.prepare import stratified_sample
from ajuste.search.objective import Objective, trial_settings
from ajuste.search.settings import SCREEN_FROM, TuneConfig, TuneSettings
from ajuste.search.study import SCREEN, by_family, screen_rank, screened_out
from ajuste.search.tune import run_tune, search_space
from ajuste.validation import validate
from tests.conftest import CliResult, make_texts, write_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread", "quiet_optuna")

Cli = Callable[..., CliResult]
#: One learning rate in three learns nothing: those trials should stop at their screen.
SPACE: dict[str, Any] = {
    "model.embed_dim": [8, 16, 24],
    "train.lr": [1.0, 0.05, 1e-6],
    "train.epochs": 3,
    "model.buckets": 1000,
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 texts of two classes (280 train, 40 validation, 80 test)."""
    texts, labels = make_texts(400, seed=1)
    return write_csv(tmp_path_factory.mktemp("screen-data") / "data.csv", texts, labels)


def config(data: Path, out: Path, **search: Any) -> TuneConfig:
    values = {
        "data": {"path": str(data)},
        "model": {"family": "bag"},
        "space": SPACE,
        "tune": {"sampler": "random", "pruner": "none", **search},
        "out": str(out),
    }
    return validate(TuneConfig, values)


def screened(value: float, number_texts: int = 60, loss: float | None = 0.5, **attrs: Any) -> Any:
    """A finished trial whose screen on ``number_texts`` texts scored ``value``."""
    return create_trial(
        state=TrialState.PRUNED,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values={0: value},
        user_attrs={SCREEN: {"texts": number_texts, "value": value, "loss": loss, "epoch": 3}, **attrs},
    )


def test_a_search_screens_every_trial_and_trains_only_the_better_half_on_every_text(
    data_file: Path, tmp_path: Path
) -> None:
    result = run_tune(config(data_file, tmp_path / "run", trials=9, screen=60))
    trials = result.study.get_trials(deepcopy=False)
    assert len(trials) == 9 and all(t.user_attrs[SCREEN]["texts"] == 60 for t in trials)
    out = [t for t in trials if screened_out(t)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert out and complete and len(out) + len(complete) == 9
    assert all(t.params["train.lr"] == 1e-6 for t in out), "the hopeless learning rate stops at its screen"
    assert all(t.intermediate_values == {0: t.user_attrs[SCREEN]["value"]} for t in out)
    assert trials[0].state == TrialState.COMPLETE, "the first screen has nothing to lose to"
    for trial in complete:
        history = trial.user_attrs["history"]
        assert [row.get("screen") for row in history] == [60] * 3 + [None] * 3, "3 epochs on 60 texts, then 280"
        assert trial.user_attrs["cost"]["text_epochs"] == 3 * 60 + 3 * 280
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3], "the screen at step 0, then every epoch"
    for trial in out:
        assert trial.user_attrs["cost"]["text_epochs"] == 3 * 60
        assert "ranks" in trial.user_attrs["stopped"] and "screens so far" in trial.user_attrs["stopped"]
    assert result.best_params["train.lr"] != 1e-6
    share = by_family(trials, maximize=True)[0]
    assert (share.screened_out, share.complete) == (len(out), len(complete))


def test_a_screen_goes_on_when_it_ranks_in_the_better_half_of_the_screens_so_far() -> None:
    study = optuna.create_study(direction="maximize")
    first = screened(0.7)
    study.add_trial(first)
    assert screen_rank(study, 0, 60) == (1, 1)
    for value in (0.9, 0.8, 0.6):
        study.add_trial(screened(value))
    assert screen_rank(study, 3, 60) == (4, 4), "0.6 is the worst of 4: outside the better 2"
    assert screen_rank(study, 1, 60) == (1, 4)
    study.add_trial(screened(0.8, loss=0.1))  # ties with trial 2 on accuracy, lower loss: ranks above it
    assert screen_rank(study, 4, 60) == (2, 5)
    study.add_trial(screened(0.95, number_texts=100))  # another screen size: not compared
    study.add_trial(screened(0.99, interrupted=True))  # interrupted: it runs again, so not counted twice
    assert screen_rank(study, 1, 60) == (1, 5)
    loss_study = optuna.create_study(direction="minimize")
    for value in (0.3, 0.1):
        loss_study.add_trial(screened(value))
    assert screen_rank(loss_study, 1, 60) == (1, 2), "a lower loss ranks first when the score is the loss"


def test_auto_screens_a_quarter_from_a_size_on_and_off_never() -> None:
    auto = TuneSettings()
    assert auto.screen == "auto"
    assert auto.screen_size(SCREEN_FROM - 1) is None
    assert auto.screen_size(SCREEN_FROM) == SCREEN_FROM // 4
    assert auto.screen_size(10_000) == 2_500
    assert TuneSettings(screen="off").screen_size(10_000) is None
    assert TuneSettings(screen=300).screen_size(10_000) == 300
    assert TuneSettings(screen="300").screen_size(10_000) == 300, "as the command line gives it"
    assert TuneSettings(cv=5).screen_size(10_000) is None, "under cv trials train on folds"


def test_the_subset_is_stratified_and_the_same_for_every_trial(data_file: Path, tmp_path: Path) -> None:
    tuned = config(data_file, tmp_path / "run", trials=1)
    data = load_data(tuned.data, seed=tuned.seed)
    first = stratified_sample(data.train, 60, tuned.seed)
    assert first.texts == stratified_sample(data.train, 60, tuned.seed).texts
    assert first.class_counts() == {"ham": 30, "spam": 30}
    assert set(first.texts) <= set(data.train.texts)


def test_screening_changes_the_study_and_auto_keeps_the_fingerprint_of_before(tmp_path: Path) -> None:
    base = {"data": {"dataset": "sms-spam"}, "tune": {"trials": 3}}
    before = validate(TuneConfig, base).fingerprint()
    assert validate(TuneConfig, {**base, "tune": {"trials": 3, "screen": "auto"}}).fingerprint() == before
    assert validate(TuneConfig, {**base, "tune": {"trials": 3, "screen": 500}}).fingerprint() != before


def screen_only_trial(data_file: Path, out: Path) -> tuple[Objective, optuna.Study, Any]:
    """A study of one trial screened on 60 texts with no time left for an epoch on every text: its objective,
    the study and the trial."""
    tuned = config(data_file, out, timeout=60, screen=60)
    data = load_data(tuned.data, seed=tuned.seed)
    objective = Objective(tuned, search_space(tuned), data, screen=stratified_sample(data.train, 60, tuned.seed))
    objective.completed_before = True
    objective.deadline = time.perf_counter() - 1  # no time left for training on every text,
    objective.out_of_time = lambda: False  # type: ignore[method-assign]  # and the screen let run through
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"model.embed_dim": 16, "train.lr": 0.05})
    study.optimize(objective, n_trials=1)
    return objective, study, study.trials[0]


def test_a_screened_trial_with_no_epoch_on_every_text_in_the_time_left_keeps_its_screen_s_model(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not one epoch on every text fits: the trial is its screen's model (a subset fidelity), not thrown away, and
    a final refit trains on that same subset (on train, repeating it exactly; on train+val, with the validation
    texts)."""
    from ajuste.cli.commands import _trial_note
    from ajuste.search.final import _final_model
    from ajuste.search.study import CUT, screen_only
    from ajuste.training.classifier import TextClassifier

    objective, study, trial = screen_only_trial(data_file, tmp_path / "run")
    data = objective.data
    assert trial.state == TrialState.COMPLETE and not screened_out(trial), trial.user_attrs.get("stopped")
    assert trial.user_attrs[CUT]["epochs"] == 0 and screen_only(trial) == 60
    assert trial.value == trial.user_attrs[SCREEN]["value"], "scored as its screen's model"
    assert "its screen's model (on 60 training texts) kept" in trial.user_attrs[CUT]["reason"]
    assert _trial_note(trial).startswith("  (its screen's model, trained on 60 of the training texts: not one epoch")
    cost = trial.user_attrs["cost"]
    assert objective.estimate(study.ask(), trial.user_attrs["settings"]) == pytest.approx(
        cost["seconds"] / (3 * 60) * (60 + 280) * 3 + cost["validating"] / 3 * 6
    ), "a trial's estimate counts its screen and its training on every text, and the validation passes of both"

    kept = objective.kept.model(trial.number)
    assert kept is not None
    final, how, _ = _final_model(objective, trial, "train")
    assert final is kept and "its screen: 60 of the 280 training texts" in how["how"]
    trained_on: list[int] = []
    fit_from = TextClassifier.fit_from

    def counting(self: TextClassifier, data: Any, *args: Any, **kwargs: Any) -> Any:
        trained_on.append(len(data))
        return fit_from(self, data, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "fit_from", counting)
    objective.kept.release()
    refit, how, _ = _final_model(objective, trial, "train")
    assert trained_on == [60] and "its screen" in how["how"]
    assert refit.predict_proba(data.test.texts).tolist() == kept.predict_proba(data.test.texts).tolist()
    _final_model(objective, trial, "train+val")
    assert trained_on == [60, 60 + len(data.val)], "train+val: the screen's texts and the validation texts"


def test_run_yaml_s_settings_of_a_screen_s_model_train_it_again_with_train_subset(
    data_file: Path, tmp_path: Path
) -> None:
    """The final settings of a trial whose model is its screen's carry the screen's size as ``train.subset``:
    ``ajuste train`` with them trains the same texts and predicts exactly as the trial's model (unless the final
    model averages it with other trials', which trained on every text)."""
    from ajuste.config import RunConfig
    from ajuste.runs.train import train
    from ajuste.search.final import final_settings

    objective, _, trial = screen_only_trial(data_file, tmp_path / "run")
    model, settings = final_settings(objective, trial)
    assert settings.subset == 60
    assert final_settings(objective, trial, averaged=True)[1].subset is None, "an ensemble's members differ"
    kept = objective.kept.model(trial.number)
    assert kept is not None
    tuned = objective.config
    again = RunConfig(data=tuned.data, model=model, train=settings, seed=tuned.seed, out=str(tmp_path / "again"))
    result = train(again, verbose=False)
    test = objective.data.test.texts
    assert result.classifier.predict_proba(test).tolist() == kept.predict_proba(test).tolist()
    subset = result.data.report["train_subset"]
    assert (subset["texts"], subset["of"], subset["seed"]) == (60, len(objective.data.train), tuned.seed)
    written = yaml.safe_load((tmp_path / "again" / "run.yaml").read_text(encoding="utf-8"))
    assert written["train"]["subset"] == 60


def test_a_screened_trial_whose_epochs_do_not_all_fit_trains_on_every_text_for_those_that_fit(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajuste.cli.commands import _trial_note
    from ajuste.search import objective as objective_module
    from ajuste.search.final import _settings_of
    from ajuste.search.report import _summary_section
    from ajuste.search.study import CUT

    # on every text: 10 s before the epochs and 20 s an epoch, with 55 s left: 2 of the trial's 3 epochs fit
    monkeypatch.setattr(objective_module, "_scaled", lambda rows, seconds, factor: (10.0, 20.0))
    tuned = config(data_file, tmp_path / "run", timeout=60, screen=60)
    data = load_data(tuned.data, seed=tuned.seed)
    objective = Objective(tuned, search_space(tuned), data, screen=stratified_sample(data.train, 60, tuned.seed))
    objective.completed_before = True
    objective.out_of_time = lambda: False  # type: ignore[method-assign]
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"model.embed_dim": 16, "train.lr": 0.05})
    objective.deadline = time.perf_counter() + 10_000
    fit = Objective._fit
    texts: list[tuple[int, int]] = []  # (texts, epochs) of each model the trial trains

    def fitting(self: Objective, model: Any, train: Any, trained_on: Any, *args: Any, **kwargs: Any) -> Any:
        if len(trained_on) == 60:  # the screen: then 55 s are left
            self.deadline = time.perf_counter() + 10_000
        found = fit(self, model, train, trained_on, *args, **kwargs)
        if len(trained_on) == 60:
            self.deadline = time.perf_counter() + 55.4
        texts.append((len(trained_on), len(found[0].history_.epochs)))
        return found

    monkeypatch.setattr(Objective, "_fit", fitting)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("stopped")
    assert texts == [(60, 3), (280, 2)], "the screen for all 3 epochs, then every text for the 2 that fit"
    assert trial.user_attrs[CUT]["planned"] == 3 and trial.user_attrs[CUT]["epochs"] == 2
    assert "estimated at 70 s for its 3 epochs" in trial.user_attrs[CUT]["reason"]
    assert trial.user_attrs["settings"]["train.epochs"] == 2
    assert trial_settings(tuned, _settings_of(objective, trial))[1].epochs == 2, "a refit repeats the cut"
    html = _summary_section(study, study.get_trials(), [trial], "accuracy", True, {}, None)
    assert "trial 0: trained on every text for 2 of its 3 epochs" in html
    note = "  (trained on every text for 2 of its 3 epochs: those that fit in the time budget left)"
    assert _trial_note(trial) == note, "its line says so"


def test_what_a_screen_computes_once_for_the_cache_is_not_scaled_up_to_every_text(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from ajuste import cache
    from ajuste.models.boundary import BoundaryStates
    from ajuste.search import objective as objective_module

    class Clock:  # the search's clock, on which filling the cache takes 100 s
        offset = 0.0

        @staticmethod
        def perf_counter() -> float:
            return time.perf_counter() + Clock.offset

    monkeypatch.setattr(objective_module, "time", Clock)
    tuned = config(data_file, tmp_path / "run", timeout=600, screen=60)
    data = load_data(tuned.data, seed=tuned.seed)
    objective = Objective(tuned, search_space(tuned), data, screen=stratified_sample(data.train, 60, tuned.seed))
    objective.completed_before = True
    fit = Objective._fit

    def filling(self: Objective, *args: Any, **kwargs: Any) -> Any:
        if not Clock.offset:  # the screen fills the cache (the validation texts' frozen states, say)
            Clock.offset = 100.0
            cache.put("screen-fill", BoundaryStates(torch.zeros(1, 1)), {}, seconds=100.0)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Objective, "_fit", filling)
    objective.deadline = Clock.perf_counter() + 300  # 100 s scaled by 280 / 60 texts would not fit; once, it does
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs[SCREEN]["seconds"] >= 100.0
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("stopped")


def test_no_screening_for_students_or_under_cross_validation(data_file: Path, tmp_path: Path) -> None:
    from ajuste.runs.distill import student_data
    from ajuste.runs.train import train
    from ajuste.training.settings import DistillSettings

    tuned = config(data_file, tmp_path / "run", trials=1, screen=60)
    data = load_data(tuned.data, seed=tuned.seed)
    subset = stratified_sample(data.train, 60, tuned.seed)
    assert Objective(tuned, search_space(tuned), data, screen=subset).screen is subset  # the comparison's base
    folds = [(data.train, data.val)]
    assert Objective(tuned, search_space(tuned), data, folds=folds, screen=subset).screen is None
    teacher = tmp_path / "teacher"  # a student learns from the teacher's probabilities of every training text
    values = {"data": tuned.data.model_dump(), "model": {"family": "bag", "embed_dim": 8}, "train": {"epochs": 1}}
    train({**values, "seed": tuned.seed, "out": str(teacher)}, verbose=False)
    student = student_data(DistillSettings(teacher=str(teacher)), data, tuned.seed)
    assert Objective(tuned, search_space(tuned), data, student=student, screen=subset).screen is None


def run_cli(cli: Cli, data: Path, out: Path, *flags: str) -> CliResult:
    settings = out.parent / "space.yaml"
    settings.write_text(yaml.safe_dump({"space": SPACE}), encoding="utf-8")
    return cli("tune", "--data", str(data), "--model", "bag", "--config", str(settings), "--out", str(out), *flags)


def test_the_command_says_what_it_screens_and_counts_the_screened_out(
    cli: Cli, data_file: Path, tmp_path: Path
) -> None:
    found = run_cli(cli, data_file, tmp_path / "run", "--trials", "8", "--screen", "60", "--sampler", "random")
    assert found.code == 0, found.err
    assert "every trial trains first on 60 of the 280 training texts" in found.out
    assert "screened" in found.out, found.out
    assert "screened out" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")


def test_the_report_counts_a_screened_trial_run_again_once() -> None:
    import re

    from ajuste.search.report import _summary_section

    study = optuna.create_study(direction="maximize")
    study.add_trial(screened(0.9))
    study.add_trial(screened(0.8, interrupted=True))  # stopped by the user after its screen: it runs again
    study.add_trial(screened(0.8))  # its second run
    html = _summary_section(study, study.get_trials(), [], "accuracy", True, {}, None)
    row = re.search(r"Screening</th><td>([^<]*)", html)
    assert row is not None and row.group(1).startswith("2 trials trained first on 60 training texts"), html
    assert screen_rank(study, 2, 60)[1] == 2


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--screen", "1"], "at least 2"),
        (["--screen=-5"], "of at least 2, got -5"),
        (["--screen", "some"], "auto"),
        (["--screen", "280"], "does not fit the training split: expected a number of texts from 2 (one per class) to"),
        (["--screen", "60", "--cv", "3"], "Drop --screen, or drop --cv"),
    ],
)
def test_bad_screens_are_refused_on_one_line(
    cli: Cli, data_file: Path, tmp_path: Path, flags: list[str], says: str
) -> None:
    found = run_cli(cli, data_file, tmp_path / "run", "--trials", "2", *flags)
    assert found.code == 2, found.out + found.err
    lines = found.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in found.err
    assert says in lines[0]


def test_a_screen_s_estimate_scales_its_training_and_not_its_validation() -> None:
    from ajuste.search.objective import _scaled

    rows = [{"epoch": e, "screen": 60, "seconds": 2.0, "seconds_validating": 0.5} for e in (1, 2, 3)]
    # 7 s in all: 1 s before the epochs, 4.5 s training, 1.5 s validating; 4 times the texts: 4 s before the
    # epochs, and each epoch 1.5 s of training scaled and 0.5 s of validation not
    before, per_epoch = _scaled(rows, 7.0, 4.0)
    assert before == pytest.approx(1.0 * 4) and per_epoch == pytest.approx(1.5 * 4 + 0.5)
    assert before + 3 * per_epoch == pytest.approx((7.0 - 1.5) * 4 + 1.5)
    assert _scaled([{**row, "screen": None} for row in rows], 7.0, 4.0) == (28.0, 0.0), "no screen rows: all scales"


def test_yaml_s_unquoted_off_and_on_mean_off_and_auto() -> None:
    assert TuneSettings(screen=False).screen == "off"
    assert TuneSettings(screen=True).screen == "auto"


def test_a_queued_copy_of_a_dead_worker_s_trial_is_not_ranked_twice() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(screened(0.9))
    study.add_trial(screened(0.5))
    study.enqueue_trial({"x": 0.5}, user_attrs={SCREEN: {"texts": 60, "value": 0.9, "loss": 0.5, "epoch": 3}})
    assert screen_rank(study, 1, 60) == (2, 2), "the waiting copy does not count"

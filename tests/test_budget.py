"""Where a search's budget goes: pruning within a cohort, the share of each family, and trials that cannot fit.

Issue 10, item 8: a slow-starting policy is never stopped by faster families' curves or after its first
epoch; the output says per family how many trials ran, for how long and how well; and under ``--timeout`` a
trial whose estimated cost (from earlier trials of its cohort) exceeds the time left is not started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from ajuste.data import load_data
from ajuste.errors import ConfigError
from ajuste.search.objective import SKIPS_BEFORE_STOP, Objective
from ajuste.search.samplers import make_pruner
from ajuste.search.settings import TuneConfig
from ajuste.search.study import RESCORED, by_family, cohort
from ajuste.search.tune import search_space
from ajuste.validation import validate
from tests.conftest import CliResult, make_texts, write_csv

pytestmark = pytest.mark.usefixtures("quiet_optuna")

Cli = Callable[..., CliResult]
BAG = {"model.family": "bag"}
MINILM_ALL = {"model.family": "minilm", "model.trainable": "all"}


def finished(
    settings: dict[str, Any], curve: list[float], state: TrialState = TrialState.COMPLETE, **attrs: Any
) -> Any:
    """A finished trial of ``settings`` whose validation score after each epoch was ``curve``."""
    return create_trial(
        state=state,
        value=curve[-1] if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values=dict(enumerate(curve, start=1)),
        user_attrs={"settings": settings, **attrs},
    )


def pruned_after(study: optuna.Study, settings: dict[str, Any], curve: list[float]) -> int | None:
    """The epoch after which the study's pruner stops a new trial of ``settings`` with ``curve``; None: never."""
    trial = study.ask()
    trial.set_user_attr("settings", settings)
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return None


@pytest.mark.parametrize("name", ["median", "asha", "hyperband"])
def test_a_slow_starting_policy_is_judged_against_its_own_cohort(name: str) -> None:
    # named: Hyperband puts a trial in a bracket by a hash of the study's name and the trial's number
    study = optuna.create_study(study_name="cohorts", direction="maximize", pruner=make_pruner(name, max_epochs=4))
    for _ in range(6):  # bag trials, fast starters, run through the pruner (asha keeps its rungs in them)
        assert pruned_after(study, BAG, [0.95, 0.96, 0.97, 0.97]) is None
    slow = [0.55, 0.70, 0.90, 0.99]  # fine-tuning every layer at a low learning rate
    assert pruned_after(study, MINILM_ALL, slow) is None
    # The same curve from a bag trial is pruned among the bag trials: the pruner does prune.
    assert pruned_after(study, BAG, slow) is not None


def test_hyperband_is_refused_by_an_optuna_without_the_part_it_keeps_to_one_cohort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # its brackets would otherwise mix the cohorts without a word (the override would never be called)
    monkeypatch.delattr(optuna.pruners.HyperbandPruner, "_create_bracket_study")
    with pytest.raises(ConfigError) as caught:
        make_pruner("hyperband", max_epochs=4)
    assert f"a part of Optuna that Optuna {optuna.__version__} no longer has" in str(caught.value)
    assert "pruner='asha'" in str(caught.value)


def test_the_median_pruner_never_stops_a_trial_after_its_first_epoch_and_does_after_its_second() -> None:
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", max_epochs=4))
    for _ in range(5):
        study.add_trial(finished(MINILM_ALL, [0.90, 0.95, 0.97]))
    assert pruned_after(study, MINILM_ALL, [0.10, 0.12, 0.13]) == 2


def test_cohorts_tell_families_and_trainable_layers_apart() -> None:
    trials = [finished(s, [0.5]) for s in (BAG, MINILM_ALL, {**MINILM_ALL, "model.trainable": "head"})]
    assert len({cohort(t) for t in trials}) == 3


def test_each_family_shows_its_trials_seconds_and_best_score() -> None:
    trials = [
        finished(BAG, [0.90], seconds=1.5),
        finished(BAG, [0.93], seconds=2.0),
        finished(MINILM_ALL, [0.2, 0.3], TrialState.PRUNED, seconds=30.0),
        finished(MINILM_ALL, [0.97], seconds=40.0),
        finished(MINILM_ALL, [0.99], seconds=50.0, interrupted=True),  # does not count
    ]
    shares = {share.family: share for share in by_family(trials, maximize=True)}
    assert list(shares) == ["bag", "minilm"]
    assert (shares["bag"].trials, shares["bag"].complete, shares["bag"].seconds, shares["bag"].best) == (
        2,
        2,
        3.5,
        0.93,
    )
    assert (shares["minilm"].trials, shares["minilm"].pruned, shares["minilm"].seconds) == (2, 1, 70.0)
    assert shares["minilm"].best == 0.97


@pytest.fixture
def objective(tmp_path: Path) -> Objective:
    texts, labels = make_texts(60, seed=3)
    values = {
        "data": {"path": str(write_csv(tmp_path / "data.csv", texts, labels))},
        "families": ["bag", "gpt"],
        "tune": {"trials": 5, "timeout": 60},
        "out": str(tmp_path / "search"),
    }
    tuned = validate(TuneConfig, values)
    data = load_data(tuned.data, seed=tuned.seed)
    found = Objective(tuned, search_space(tuned), data)
    found.completed_before = True
    return found


def study_with_cost(seconds_per_text_epoch: float) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    cost = {"text_epochs": 100, "seconds": 100 * seconds_per_text_epoch}
    study.add_trial(finished({**BAG, "train.epochs": 3}, [0.9], cost=cost))
    return study


def test_a_trial_that_cannot_finish_in_the_time_left_is_not_started(objective: Objective) -> None:
    study = study_with_cost(10.0)  # 10 s per text and epoch: any bag trial takes far longer than a minute
    objective.deadline = time.perf_counter() + 60
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match=r"not started: estimated \d+ s, \d+ s of the time budget left"):
        objective._afford(trial, {**BAG, "train.epochs": 2})
    assert "not started" in study.trials[-1].user_attrs["stopped"]
    # A family without a costed trial yet is always tried; so is any trial without a time budget.
    objective._afford(study.ask(), {"model.family": "gpt"})
    objective.deadline = None
    objective._afford(study.ask(), {**BAG, "train.epochs": 2})


def test_a_trial_that_fits_is_started_and_the_estimate_follows_texts_and_epochs(objective: Objective) -> None:
    study = study_with_cost(1e-6)
    objective.deadline = time.perf_counter() + 60
    trial = study.ask()
    objective._afford(trial, {**BAG, "train.epochs": 4})
    estimate = objective.estimate(trial, {**BAG, "train.epochs": 4})
    assert estimate == pytest.approx(1e-6 * len(objective.data.train) * 4)


def test_the_estimate_scales_training_with_the_texts_and_validation_with_the_epochs_alone(
    objective: Objective,
) -> None:
    study = optuna.create_study(direction="maximize")
    # 100 texts x 3 epochs of training took 3 s; its 3 validation passes took 30 s
    cost = {"text_epochs": 300, "seconds": 3.0, "validating": 30.0, "validations": 3}
    study.add_trial(finished({**BAG, "train.epochs": 3}, [0.9], cost=cost))
    texts = len(objective.data.train)
    estimate = objective.estimate(study.ask(), {**BAG, "train.epochs": 4})
    assert estimate == pytest.approx(0.01 * texts * 4 + 10.0 * 4), "4 epochs on every text, 4 passes of 10 s"
    objective.screen = objective.data.train
    screened = objective.estimate(study.ask(), {**BAG, "train.epochs": 4})
    assert screened == pytest.approx(0.01 * 2 * texts * 4 + 10.0 * 8), "a screen's epochs validate too"
    older = optuna.create_study(direction="maximize")  # recorded before validation was counted apart
    older.add_trial(finished({**BAG, "train.epochs": 3}, [0.9], cost={"text_epochs": 300, "seconds": 33.0}))
    objective.screen = None
    assert objective.estimate(older.ask(), {**BAG, "train.epochs": 4}) == pytest.approx(0.11 * texts * 4)


def test_when_nothing_fits_any_more_the_search_ends(objective: Objective) -> None:
    study = study_with_cost(10.0)
    objective.deadline = time.perf_counter() + 60

    def costly(trial: optuna.Trial) -> float:
        objective._afford(trial, {**BAG, "train.epochs": 2})
        return 1.0

    study.optimize(costly, n_trials=50)
    skipped = [t for t in study.trials if "not started" in t.user_attrs.get("stopped", "")]
    assert len(skipped) == SKIPS_BEFORE_STOP == len(study.trials) - 1
    assert all(t.state == TrialState.PRUNED for t in skipped)


def test_tune_records_what_each_trial_cost_and_reports_each_family(cli: Cli, tmp_path: Path) -> None:
    texts, labels = make_texts(80, seed=4)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    out = tmp_path / "search"
    found = cli(
        "tune", "--data", str(data), "--model", "bag,linear", "--trials", "3", "--epochs", "2", "--out", str(out),
        "--json",
    )  # fmt: skip
    assert found.code == 0, found.err
    families = {row["family"]: row for row in found.json()["families"]}
    assert set(families) == {"bag", "linear"}
    assert sum(row["trials"] for row in families.values()) == 3
    assert all(row["seconds"] > 0 and row["best"] is not None for row in families.values())
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    costs = [t.user_attrs["cost"] for t in study.trials if t.state == TrialState.COMPLETE]
    assert costs and all(c["text_epochs"] > 0 and c["seconds"] > 0 for c in costs)
    assert "By family" in (out / "report.html").read_text(encoding="utf-8")


def test_rescore_keeps_back_the_time_its_folds_will_take(tmp_path: Path) -> None:
    texts, labels = make_texts(60, seed=3)
    values = {
        "data": {"path": str(write_csv(tmp_path / "data.csv", texts, labels))},
        "families": ["bag"],
        "tune": {"timeout": 600, "rescore": 2},
    }
    tuned = validate(TuneConfig, values)
    data = load_data(tuned.data, seed=tuned.seed)
    folds = [(data.train, data.val)] * 5  # only their number matters to the estimate
    objective = Objective(tuned, search_space(tuned), data, rescore_folds=folds)
    objective.completed_before = True
    study = optuna.create_study(direction="maximize")
    for value, seconds, embed in ((0.9, 10.0, 8), (0.8, 20.0, 16), (0.7, 30.0, 32)):
        study.add_trial(finished({**BAG, "model.embed_dim": embed}, [value], seconds=seconds))
    assert objective.reserved(study) == 5 * (10.0 + 20.0), "the 2 best, once per fold"
    study.set_user_attr(RESCORED, {str(study.trials[0].number): {}})
    assert objective.reserved(study) == 5 * 20.0, "a trial already re-scored costs nothing more"

    objective.deadline = time.perf_counter() + 60  # less than the 100 s the re-scoring needs

    def search(trial: optuna.Trial) -> float:
        objective._afford(trial, {**BAG, "model.embed_dim": 64})
        return 0.5

    study.optimize(search, n_trials=5)
    assert len(study.trials) == 4, "the first trial that would eat into the re-scoring's time ends the search"
    assert "kept for re-scoring the best trials (estimated 100 s)" in study.trials[-1].user_attrs["stopped"]
    assert objective.out_of_time(), "a running trial stops too once the time left is the re-scoring's"
    objective.deadline = time.perf_counter() + 600
    study.optimize(search, n_trials=1)
    assert study.trials[-1].state == TrialState.COMPLETE and not objective.out_of_time()
    study.add_trial(finished({**BAG, "model.embed_dim": 64}, [0.6], cost={"text_epochs": 1, "seconds": 10.0}))
    with pytest.raises(optuna.TrialPruned, match=r"s of the time budget left once 100 s are kept for re-scoring"):
        objective._afford(study.ask(), {**BAG, "model.embed_dim": 128})  # estimated far above the 500 s left
    without = Objective(validate(TuneConfig, {**values, "tune": {"timeout": 600}}), search_space(tuned), data)
    assert without.reserved(study) == 0.0


def test_what_a_trial_computes_once_for_the_cache_is_left_out_of_its_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from ajuste import cache
    from ajuste.models.boundary import BoundaryStates

    texts, labels = make_texts(60, seed=3)
    values = {
        "data": {"path": str(write_csv(tmp_path / "data.csv", texts, labels))},
        "model": {"family": "bag"},
        "train": {"epochs": 1},
        "tune": {"trials": 2},
    }
    tuned = validate(TuneConfig, values)
    objective = Objective(tuned, search_space(tuned), load_data(tuned.data, seed=tuned.seed))
    train = Objective._train
    fills = iter([1000.0, 0.0])  # the first trial fills the cache (as a pretrained model's frozen layers would)

    def filling(self: Objective, trial: optuna.Trial, values: dict[str, Any], reporter: Any) -> float:
        cache.put(f"test-{trial.number}", BoundaryStates(torch.zeros(1, 1)), {}, seconds=next(fills))
        return train(self, trial, values, reporter)

    monkeypatch.setattr(Objective, "_train", filling)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    first, second = (t.user_attrs for t in study.trials)
    assert first["seconds"] > 0 and first["cost"]["seconds"] == 0.0, "1000 s of cache filling are not its cost"
    work = second["cost"]["seconds"] + second["cost"]["validating"]
    assert work == pytest.approx(second["seconds"], abs=0.01), "its training and its validation passes"
    assert second["cost"]["validations"] == 1


def test_a_pruned_trial_s_line_says_what_stopped_it() -> None:
    from ajuste.search.study import OUT_OF_TIME, SCREENED_OUT, how_pruned

    pruned = TrialState.PRUNED
    assert how_pruned(finished(BAG, [0.5], pruned)) == "pruned"  # the pruner, on its scores
    assert how_pruned(finished(BAG, [0.5], pruned, stopped=OUT_OF_TIME)) == "timed out"
    assert how_pruned(finished(BAG, [0.5], pruned, stopped=f"{SCREENED_OUT}: val accuracy 0.5")) == "screened"
    assert how_pruned(finished(BAG, [], pruned, stopped="not started: estimated 90 s, 10 s left")) == "skipped"


def test_a_trial_the_time_budget_stops_is_shown_as_timed_out(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the deadline reached after the first epoch: shown as "pruned", the line read as the pruner's judgement
    monkeypatch.setattr(Objective, "out_of_time", lambda self: True)
    texts, labels = make_texts(60, seed=5)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    found = cli("tune", "--data", data, "--model", "bag", "--trials", "1", "--epochs", "3", "--out", tmp_path / "s")
    lines = [line for line in found.out.splitlines() if line.startswith("trial   0")]
    assert len(lines) == 1 and lines[0].split()[2:4] == ["timed", "out"], found.out + found.err

"""A study starts from what ``ajuste train`` would run: every searched family's defaults, then its portfolio."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ajuste.models.registry import FAMILIES, default_families
from ajuste.runs import RunFolder
from ajuste.search.portfolio import default_settings, portfolio
from ajuste.search.settings import TuneConfig
from ajuste.search.study import OUT_OF_TIME, SCREENED_OUT, STARTING_POINT, recover, unreached, unreached_text
from ajuste.search.tune import search_space
from ajuste.validation import validate
from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]


def tune_config(**values: Any) -> TuneConfig:
    return validate(TuneConfig, {"data": {"dataset": "sms-spam"}, **values})


def test_encode_gives_back_the_parameters_of_any_trial() -> None:
    space = search_space(tune_config())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    for _ in range(40):
        trial = study.ask()
        settings = space.suggest(trial)
        params = space.encode(settings)
        # A coordinate shared by families may come back as another point of the interval that gives the same
        # setting (the middle of a batch size's share of it, say): what matters is the settings it gives.
        assert params is not None and params.keys() == trial.params.keys()
        assert space.decode(params) == settings, "enqueued, they give these settings"
        study.tell(trial, 0.0)


def test_every_default_is_enqueued_as_exactly_the_settings_train_runs() -> None:
    """The learning rate is a coordinate shared by the families: each family's default must come back exact."""
    config = tune_config()
    space = search_space(config)
    for what, params in portfolio(config, space):
        family, _, change = what.partition(" ")
        changes = {} if change == "defaults" else dict(item.split("=") for item in change.split(", "))
        expected = default_settings(config, family, changes)
        settings = space.decode(params)
        assert settings == {key: expected[key] for key in settings}, what


def test_a_setting_outside_the_space_cannot_be_encoded() -> None:
    space = search_space(tune_config(families=["bag"]))
    settings = default_settings(tune_config(families=["bag"]), "bag")
    assert space.encode(settings) is not None
    assert space.encode({**settings, "model.embed_dim": 1000}) is None
    assert space.encode({**settings, "model.family": "gpt"}) is None


def test_every_default_lies_inside_its_family_s_default_space() -> None:
    config = tune_config()
    space = search_space(config)
    queued = [what for what, _ in portfolio(config, space)]
    assert set(queued[: len(default_families())]) == {f"{family} defaults" for family in default_families()}
    expected_changes = sum(len(FAMILIES[f].portfolio) for f in default_families())
    assert len(queued) == len(default_families()) + expected_changes


def test_defaults_come_cheapest_first_and_the_pretrained_encoder_before_gpt() -> None:
    # a 2-minute search of the default families spent 105 s on gpt's defaults, queued before minilm's, and
    # never tried the encoder; its frozen blocks are computed once, gpt trains every layer for 20 epochs
    queued = [what for what, _ in portfolio(tune_config(), search_space(tune_config()))]
    assert queued == [
        "linear defaults",
        "bag defaults",
        "minilm defaults",
        "gpt defaults",
        "linear model.classifier=svm, model.analyzer=word+char",
        "minilm model.trainable=all",
    ]
    ranks = [FAMILIES[what.split()[0]].cost_rank for what in queued[:4]]
    assert ranks == sorted(ranks)


def test_a_fixed_training_flag_is_part_of_the_defaults_tried() -> None:
    config = tune_config(families=["bag"], train={"epochs": 3})
    space = search_space(config)
    ((what, params),) = portfolio(config, space)
    assert what == "bag defaults" and "train.epochs" not in params  # fixed: not a parameter of the study
    assert default_settings(config, "bag")["train.epochs"] == 3
    assert space.decode(params)["train.epochs"] == 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(60, seed=12)
    return write_csv(tmp_path_factory.mktemp("portfolio") / "data.csv", texts, labels)


def test_the_first_trials_are_what_train_runs_for_each_family(cli: Cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    result = cli("tune", "--data", data, "--model", "linear,bag", "--trials", "4", "--sampler", "tpe", "--out", out)
    assert result.code == 0, result.err
    folder = RunFolder(out)
    info = folder.read_search_info()
    assert info is not None
    trials = optuna.load_study(study_name=info.study, storage=folder.storage_url(info)).get_trials()
    assert [t.user_attrs.get("portfolio") for t in trials[:3]] == [
        "linear defaults",
        "bag defaults",
        "linear model.classifier=svm, model.analyzer=word+char",
    ]
    assert "portfolio" not in trials[3].user_attrs
    for family, trial in (("linear", trials[0]), ("bag", trials[1])):
        run = tmp_path / f"train-{family}"
        trained = cli("train", "--data", data, "--model", family, "--out", run, "--quiet")
        assert trained.code == 0, trained.err
        resolved = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))
        for key, value in trial.user_attrs["settings"].items():
            section, name = key.split(".", 1)
            assert resolved[section][name] == value, key
        # and the same model: the trial keeps the epoch train keeps (the lowest validation loss), scored there
        history = RunFolder(run).read_history()
        assert trial.user_attrs.get("best_epoch", history.best_epoch) == history.best_epoch
        assert trial.value == RunFolder(run).read_metrics()["val"]["accuracy"]

    again = cli("tune", "--data", data, "--model", "linear,bag", "--trials", "5", "--sampler", "tpe", "--out", out)
    assert again.code == 0, again.err
    trials = optuna.load_study(study_name=info.study, storage=folder.storage_url(info)).get_trials()
    assert sum(1 for t in trials if "portfolio" in t.user_attrs) == 3, "queued once per study"


def _starting_point(what: str, state: TrialState, **attrs: Any) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=state,
        value=0.9 if state == TrialState.COMPLETE else None,
        params={"x": 1.0},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 2.0)},
        user_attrs={STARTING_POINT: what, "seconds": 42.0, **attrs},
    )


def test_the_starting_points_the_budget_kept_from_training_in_full_are_named_with_how_they_ended() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(_starting_point("linear defaults", TrialState.COMPLETE))
    study.add_trial(_starting_point("bag defaults", TrialState.PRUNED, stopped=f"{SCREENED_OUT}: ranks 2 of 2"))
    study.add_trial(_starting_point("gpt defaults", TrialState.PRUNED, stopped=OUT_OF_TIME))
    study.add_trial(_starting_point("minilm defaults", TrialState.PRUNED))  # the pruner's: judged on its scores
    cut = {"planned": 4, "epochs": 2, "reason": "..."}
    study.add_trial(_starting_point("minilm model.trainable=all", TrialState.COMPLETE, cut=cut))
    skipped = "not started: estimated 620 s, 20 s of the time budget left"
    study.add_trial(_starting_point("linear model.classifier=svm", TrialState.PRUNED, stopped=skipped))
    # interrupted, then run again to the end: reached
    study.add_trial(_starting_point("gpt2 defaults", TrialState.FAIL, interrupted=True))
    study.add_trial(_starting_point("gpt2 defaults", TrialState.COMPLETE))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={"stopped": OUT_OF_TIME}))
    study.enqueue_trial({"x": 1.5}, user_attrs={STARTING_POINT: "gpt2 model.trainable=all"})

    missed = unreached(study.get_trials())
    assert [(m.what, m.trial, m.how) for m in missed] == [
        ("gpt defaults", 2, f"stopped after 42 s: {OUT_OF_TIME}"),
        (
            "minilm model.trainable=all",
            4,
            "trained on every text for 2 of its 4 epochs: those that fit in the time budget left",
        ),
        ("linear model.classifier=svm", 5, skipped),
        ("gpt2 model.trainable=all", 9, "not started"),
    ]
    text = unreached_text(missed, "--timeout 600 s", "A larger --timeout")
    assert text.startswith(
        "4 of the starting points (each family's defaults, then its portfolio) did not train in "
        "full on every text within --timeout 600 s: gpt defaults (trial 2): stopped after 42 s"
    )
    assert text.endswith("A larger --timeout, gives them their turn")


def test_an_interrupted_starting_point_is_queued_again_as_one() -> None:
    study = optuna.create_study()
    study.add_trial(_starting_point("bag defaults", TrialState.FAIL, interrupted=True))
    recover(study, local=True, enqueue=True)
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs == {STARTING_POINT: "bag defaults"}
    assert [m.how for m in unreached(study.get_trials())] == ["not started"]


def test_tune_says_which_starting_points_its_budget_did_not_reach(cli: Cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    args = ("tune", "--data", data, "--model", "linear,bag", "--trials", "1", "--out", out)
    result = cli(*args)
    assert result.code == 0, result.err
    line = next(line for line in result.out.splitlines() if line.startswith("not reached"))
    assert "within --trials 1: bag defaults (trial 1): not started; linear model.classifier=svm" in line
    assert line.endswith("More --trials, or fewer families (--model), gives them their turn")
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<th>Not reached</th>" in report and "bag defaults (trial 1): not started" in report

    summary = cli(*args[:-2], "--trials", "3", "--out", out, "--json").json()
    assert summary["unreached"] == [], "three trials: every starting point trained"

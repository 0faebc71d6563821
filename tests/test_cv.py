"""``ajuste tune --cv K``: trials scored by stratified K-fold cross-validation over train+val.

Every search here trains the bag family on 90 generated texts (63 train, 9 validation, 18 test), so that one
fold of a trial takes a fraction of a second.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

from ajuste.errors import ConfigError
from ajuste.search import tune as tune_module
from ajuste.search.settings import TuneConfig
from ajuste.search.study import study_identity
from ajuste.search.tune import run_tune, search_space, tune
from ajuste.validation import validate
from tests.conftest import CliResult, Trainings, make_texts, write_csv
from tests.test_tune import config, one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread", "quiet_optuna")

Cli = Callable[..., CliResult]
ONE_POINT: dict[str, Any] = {"model.embed_dim": 8, "train.epochs": 2, "model.buckets": 1000, "train.lr": 0.05}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(90, seed=5)
    return write_csv(tmp_path_factory.mktemp("cv-data") / "data.csv", texts, labels)


def test_a_cv_trial_trains_k_models_scores_their_mean_and_never_sees_the_test_split(
    data_file: Path, tmp_path: Path, trainings: Trainings
) -> None:
    fits, evaluated = trainings.fits, trainings.evaluated
    result = tune(
        data_file, model="bag", space=ONE_POINT, sampler="random", pruner="none", trials=1, cv=3, out=tmp_path / "run"
    )

    test_rows = set(result.data.test.rows)
    train_and_val = set(result.data.train.rows) | set(result.data.val.rows)
    *trials, final = fits
    assert len(trials) == 3, "one model per fold"
    validated: list[int] = []
    for trained_on, validated_on in trials:
        assert validated_on is not None
        assert set(trained_on.rows) | set(validated_on.rows) == train_and_val
        assert not set(trained_on.rows) & set(validated_on.rows)
        validated += validated_on.rows
    assert sorted(validated) == sorted(train_and_val), "every text of train+val is validated on exactly once"
    assert set(final[0].rows) == train_and_val and final[1] is None, "the refit trains on train+val"
    assert [set(d.rows) for d in evaluated] == [test_rows], "the test split is evaluated once, at the end"

    trial = result.study.trials[0]
    cv = trial.user_attrs["cv"]
    assert cv["folds"] == 3 and len(cv["scores"]) == 3 and len(cv["best_epochs"]) == 3
    assert trial.value == pytest.approx(statistics.fmean(cv["scores"]))
    assert cv["std"] == pytest.approx(statistics.pstdev(cv["scores"]))
    assert {row["fold"] for row in trial.user_attrs["history"]} == {1, 2, 3}
    assert trial.intermediate_values == pytest.approx({n: statistics.fmean(cv["scores"][:n]) for n in (1, 2, 3)}), (
        "the pruner hears the running mean after each fold, and nothing per epoch"
    )

    record = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text(encoding="utf-8"))["record"]
    search = record["search"]
    assert search["cv"]["scores"] == cv["scores"] and search["cv"]["std"] == pytest.approx(cv["std"])
    assert search["refit"] == "train+val"
    assert search["epochs"] == statistics.median_low(cv["best_epochs"])
    assert len(record["test_accesses"]) == 1
    val = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))["val"]
    assert val["accuracy"] == pytest.approx(trial.value), "under cv the validation score is the cross-validated one"
    assert val["n"] == len(train_and_val) and val["cross_validated"]["folds"] == 3
    summary = result.summary()["val"]  # --json says the same: n and the folds were missing there
    assert summary["n"] == val["n"] and summary["cross_validated"] == val["cross_validated"]


class PoorFirstFold(optuna.pruners.BasePruner):
    """Prunes a trial whose running mean is below 0.75 (after any fold but the last)."""

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        return step is not None and trial.intermediate_values[step] < 0.75


def test_a_trial_whose_first_fold_is_poor_is_pruned_on_the_running_mean(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tune_module, "make_pruner", lambda name, max_epochs: PoorFirstFold())
    space = {**ONE_POINT, "train.lr": [0.05, 1e-7], "train.epochs": 3}
    result = run_tune(config(data_file, tmp_path / "run", space, sampler="grid", cv=3))
    by_lr = {t.params["train.lr"]: t for t in result.study.trials}
    hopeless, good = by_lr[1e-7], by_lr[0.05]
    assert hopeless.state == TrialState.PRUNED
    assert len(hopeless.user_attrs["cv"]["scores"]) == 1, "pruned after its first fold: one model trained"
    assert hopeless.intermediate_values == {1: hopeless.user_attrs["cv"]["scores"][0]}
    assert good.state == TrialState.COMPLETE and list(good.intermediate_values) == [1, 2, 3]
    assert result.best_trial == good.number


def test_cv_with_a_class_smaller_than_k_is_refused_in_one_line(cli: Cli, tmp_path: Path) -> None:
    texts, labels = make_texts(30, seed=2)  # 24 texts in train+val: 12 of each class
    data = write_csv(tmp_path / "data.csv", texts, labels)
    out = tmp_path / "run"
    line = one_line_error(cli("tune", "--data", data, "--model", "bag", "--trials", "1", "--cv", "13", "--out", out))
    assert "too small for 13-fold cross-validation" in line and "'ham' (12)" in line and "Lower --cv" in line
    assert not out.exists(), "bad data leaves no search behind"


def test_rescore_with_a_class_smaller_than_its_folds_names_rescore(cli: Cli, tmp_path: Path) -> None:
    texts, labels = make_texts(60, seed=2)
    texts, labels = [*texts, "rare one", "rare two", "rare three"], [*labels, "rare", "rare", "rare"]
    data, out = write_csv(tmp_path / "data.csv", texts, labels), tmp_path / "run"
    flags = ("--model", "bag", "--trials", "1", "--rescore", "3")
    line = one_line_error(cli("tune", "--data", data, *flags, "--out", out))
    assert "too small for 5-fold cross-validation" in line and "'rare'" in line
    assert "Drop --rescore" in line and "--cv" not in line  # the user gave no --cv


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--cv", "1"), "--cv: must be >= 2"),
        (("--cv", "3", "--refit", "train"), "--cv needs --refit train+val"),
        (("--cv", "3", "--ensemble", "2"), "Drop --ensemble, or drop --cv"),
        (("--cv", "3", "--balance", "oversample"), "cv cannot fold oversampled training texts"),
    ],
)
def test_cv_settings_it_cannot_honour_are_refused_in_one_line(
    cli: Cli, data_file: Path, tmp_path: Path, flags: tuple[str, ...], expected: str
) -> None:
    command = ("tune", "--data", data_file, "--model", "bag", "--trials", "1", "--out", tmp_path / "run", *flags)
    assert expected in one_line_error(cli(*command))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"cv": 3, "refit": "train"}, 'cv needs refit="train+val"'),
        ({"cv": 3, "ensemble": 2}, "Drop ensemble, or drop cv"),
        ({"rescore": 3, "cv": 3}, "Drop rescore, or drop cv"),
    ],
)
def test_from_python_those_settings_are_named_as_python_names_them(
    data_file: Path, tmp_path: Path, arguments: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        tune(str(data_file), model="bag", trials=1, out=tmp_path / "run", **arguments)
    assert expected in str(caught.value) and "--" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_cv_is_refused_for_students_of_a_teacher() -> None:
    values = {"data": {"path": "data.csv"}, "distill": {"teacher": "runs/teacher"}, "tune": {"cv": 3}}
    with pytest.raises(ConfigError, match="cv is not supported when searching students of a teacher"):
        validate(TuneConfig, values)


def test_cv_is_part_of_the_study_and_a_search_without_it_keeps_its_fingerprint(data_file: Path, tmp_path: Path) -> None:
    plain = config(Path("data.csv"), tmp_path / "run", ONE_POINT)
    assert plain.tune.cv is None and plain.tune.refit == "train"
    # Pinned: this search's fingerprint before --cv existed; a change here would orphan existing run folders.
    assert plain.fingerprint() == "004d46affd"
    cross_validated = config(Path("data.csv"), tmp_path / "run", ONE_POINT, cv=3)
    assert cross_validated.tune.refit == "train+val"
    assert cross_validated.fingerprint() != plain.fingerprint()
    assert cross_validated.fingerprint() != config(Path("data.csv"), tmp_path / "run", ONE_POINT, cv=4).fingerprint()
    data = run_tune(config(data_file, tmp_path / "once", ONE_POINT, trials=1)).data
    space = search_space(plain)
    assert study_identity(cross_validated, data, space)["search"] != study_identity(plain, data, space)["search"]
    # Pinned too (measured on b56e1cc, before train.subset existed): workers of an older ajuste join the same study
    assert study_identity(plain, data, space) == {
        "data": "17318528ed2e",
        "split": "55a94e0370ac",
        "space": "6029887bd098",
        "search": "127002cca35e",
    }

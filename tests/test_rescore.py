"""``ajuste tune --rescore N``: the N best trials scored again on folds of train+val, the best of them refit.

Every search here trains the bag family on 90 generated texts (63 train, 9 validation, 18 test): with 9
validation texts many trials tie, which is what re-scoring is for.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ajuste.errors import ConfigError
from ajuste.runs.record import CrossValidationRecord
from ajuste.search.objective import Objective
from ajuste.search.settings import RESCORE_FOLDS, TuneConfig
from ajuste.search.tune import run_tune, tune
from ajuste.validation import validate
from tests.conftest import CliResult, Trainings, make_texts, write_csv
from tests.test_tune import config, one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread", "quiet_optuna")

Cli = Callable[..., CliResult]
#: Four distinct settings, every one of them trained by a 4-trial grid.
SPACE: dict[str, Any] = {"model.embed_dim": [8, 16], "train.epochs": [1, 3], "model.buckets": 1000, "train.lr": 0.05}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(90, seed=5)
    return write_csv(tmp_path_factory.mktemp("rescore-data") / "data.csv", texts, labels)


def test_the_best_trials_are_cross_validated_and_the_best_by_fold_mean_is_refit_on_train_and_val(
    data_file: Path, tmp_path: Path, trainings: Trainings
) -> None:
    fits, evaluated = trainings.fits, trainings.evaluated
    run = tmp_path / "run"
    result = run_tune(config(data_file, run, SPACE, sampler="grid", rescore=3))

    train_and_val = set(result.data.train.rows) | set(result.data.val.rows)
    searched, rescoring, final = fits[:4], fits[4:-1], fits[-1]
    assert all(set(validated.rows) == set(result.data.val.rows) for _, validated in searched if validated)
    assert len(rescoring) == 3 * RESCORE_FOLDS, "each of the 3 candidates trained once per fold"
    for trained_on, validated_on in rescoring:
        assert validated_on is not None and set(trained_on.rows) | set(validated_on.rows) == train_and_val
        assert not set(trained_on.rows) & set(validated_on.rows)
    assert set(final[0].rows) == train_and_val and final[1] is None, "the refit trains on train+val"
    test_rows = set(result.data.test.rows)
    assert [set(d.rows) for d in evaluated if set(d.rows) & test_rows] == [test_rows], "test evaluated once"

    record = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))["record"]["search"]
    rescored = record["rescore"]
    assert rescored["size"] == 3 and rescored["folds"] == RESCORE_FOLDS and len(rescored["candidates"]) == 3
    means = {item["trial"]: item["cv"]["mean"] for item in rescored["candidates"]}
    assert rescored["chosen"] == record["best_trial"] == result.best_trial
    assert means[rescored["chosen"]] == max(means.values())
    chosen = next(item for item in rescored["candidates"] if item["trial"] == rescored["chosen"])
    assert record["refit"] == "train+val" and record["epochs"] == statistics.median_low(chosen["cv"]["best_epochs"])
    assert "re-scoring folds" in record["how"]
    val = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["val"]
    assert val["accuracy"] == pytest.approx(chosen["cv"]["mean"]) and val["n"] == len(train_and_val)
    assert result.summary()["rescore"]["chosen"] == rescored["chosen"]
    assert "best trials scored again on 5 folds" in (run / "report.html").read_text(encoding="utf-8")


def fold_scores(by_epochs: dict[int, float]) -> Callable[..., tuple[CrossValidationRecord, dict[str, float]]]:
    """A stand-in for :meth:`Objective.cross_validate` whose fold mean depends on the trial's epochs only."""

    def cross_validate(self: Objective, model: Any, train: Any, folds: list[Any], *args: Any) -> Any:
        mean = by_epochs[int(train.epochs)]
        record = CrossValidationRecord(
            folds=len(folds), scores=[mean] * len(folds), mean=mean, std=0.0, best_epochs=[2]
        )
        return record, {"val_accuracy": mean, "val_loss": 1 - mean}

    return cross_validate


def test_the_choice_follows_the_folds_not_the_validation_split(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = {**SPACE, "model.embed_dim": 16}
    plain = run_tune(config(data_file, tmp_path / "plain", space, sampler="grid"))
    worse = {t.user_attrs["settings"]["train.epochs"]: t for t in plain.study.trials if t.number != plain.best_trial}
    (epochs,) = worse  # the trial the validation split ranks second: the folds prefer it
    monkeypatch.setattr(Objective, "cross_validate", fold_scores({epochs: 0.9, 4 - epochs: 0.5}))
    result = run_tune(config(data_file, tmp_path / "rescored", space, sampler="grid", rescore=2))
    assert result.best_trial == worse[epochs].number != plain.best_trial
    assert result.best_params["train.epochs"] == epochs


def test_a_repeated_end_of_the_same_study_trains_no_candidate_again_and_keeps_its_test(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    first = run_tune(config(data_file, run, SPACE, sampler="grid", rescore=2))
    calls: list[int] = []
    original = Objective.cross_validate

    def counted(self: Objective, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Objective, "cross_validate", counted)
    again = run_tune(config(data_file, run, SPACE, sampler="grid", rescore=2))
    assert not calls, "the candidates' folds are kept in the study"
    assert again.best_trial == first.best_trial
    record = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))["record"]
    assert len(record["test_accesses"]) == 1


def test_rescore_is_not_part_of_the_study(data_file: Path, tmp_path: Path) -> None:
    refit = config(Path("data.csv"), tmp_path / "run", SPACE, refit="train+val")
    rescored = config(Path("data.csv"), tmp_path / "run", SPACE, rescore=3)
    assert rescored.tune.refit == "train+val", "--rescore implies --refit train+val"
    assert rescored.fingerprint() == refit.fingerprint()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--rescore", "1"), "--rescore: must be >= 2"),
        (("--rescore", "3", "--cv", "3"), "Drop --rescore, or drop --cv"),
        (("--rescore", "3", "--refit", "train"), "--rescore needs --refit train+val"),
        (("--rescore", "3", "--ensemble", "2"), "Drop --ensemble, or drop --rescore"),
        (("--rescore", "3", "--balance", "oversample"), "rescore cannot fold oversampled training texts"),
    ],
)
def test_rescore_settings_it_cannot_honour_are_refused_in_one_line(
    cli: Cli, data_file: Path, tmp_path: Path, flags: tuple[str, ...], expected: str
) -> None:
    command = ("tune", "--data", data_file, "--model", "bag", "--trials", "1", "--out", tmp_path / "run", *flags)
    assert expected in one_line_error(cli(*command))


def test_rescore_is_refused_for_students_of_a_teacher() -> None:
    values = {"data": {"path": "data.csv"}, "distill": {"teacher": "runs/teacher"}, "tune": {"rescore": 3}}
    with pytest.raises(ConfigError, match="rescore is not supported when searching students of a teacher"):
        validate(TuneConfig, values)


def test_the_command_line_shows_the_candidates_and_the_choice(cli: Cli, data_file: Path, tmp_path: Path) -> None:
    found = cli(
        "tune", "--data", data_file, "--model", "bag", "--trials", "3", "--epochs", "2", "--rescore", "2",
        "--out", tmp_path / "run", "--json",
    )  # fmt: skip
    assert found.code == 0, found.err
    assert "re-scored on 5 folds of train+val" in found.err and "chosen" in found.err
    summary = found.json()
    assert len(summary["rescore"]["candidates"]) == 2 and summary["rescore"]["chosen"] == summary["best_trial"]
    # the choice is said as it was made: the chosen candidate's folds' mean, over train+val, by re-scoring's rule
    choice, rescored = summary["choice"], summary["rescore"]
    mean = next(c["cv"]["mean"] for c in rescored["candidates"] if c["trial"] == rescored["chosen"])
    texts = summary["data"]["train"] + summary["data"]["val"]
    assert (choice["scored_on"], choice["texts"], choice["value"]) == ("5 folds of train+val", texts, mean)
    assert choice["by"] == rescored["chosen_by"]
    assert f"val accuracy {mean:.4f} on 5 folds of train+val ({texts:,} texts" in found.err
    record = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text(encoding="utf-8"))["record"]["search"]
    assert record["chosen_by"] == record["rescore"]["chosen_by"]


def test_tune_from_python_takes_rescore(data_file: Path, tmp_path: Path) -> None:
    result = tune(data_file, model="bag", space=SPACE, sampler="grid", rescore=2, out=tmp_path / "run")
    assert result.rescore is not None and result.rescore.chosen == result.best_trial


def test_a_study_searched_without_rescore_can_be_ended_again_with_it(data_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    plain = run_tune(config(data_file, run, SPACE, sampler="grid", refit="train+val"))
    rescored = run_tune(config(data_file, run, SPACE, sampler="grid", rescore=2), finalize=True)
    assert rescored.rescore is not None and len(plain.study.trials) == len(rescored.study.trials) == 4
    record = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))["record"]
    assert len(record["test_accesses"]) == 2, "a second final model: its test access is recorded beside the first"

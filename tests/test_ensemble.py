"""``ajuste tune --ensemble K``: members chosen greedily on validation, one run folder used like any model.

The searches train the bag family on 60 generated texts, one label in four flipped, so that trials disagree
and averaging two of them lowers the validation loss; a grid of four points keeps each search to seconds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from ajuste import load
from ajuste.cli.main import main
from ajuste.search.ensemble import greedy_counts, log_loss, stored
from ajuste.search.settings import TuneConfig
from ajuste.training.classifier import TextClassifier
from ajuste.training.ensemble import EnsembleClassifier
from ajuste.validation import validate
from tests.conftest import CliResult, make_texts, write_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread", "quiet_optuna")

Cli = Callable[..., CliResult]
#: Two learning rates (one barely learns) and two epoch counts: four trials that differ in confidence.
SPACE: dict[str, Any] = {"model.embed_dim": 8, "train.epochs": [2, 4], "model.buckets": 1000, "train.lr": [0.003, 0.3]}


@pytest.fixture(scope="module")
def noisy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(60, seed=3)
    flipped = [("spam" if y == "ham" else "ham") if i % 4 == 0 else y for i, y in enumerate(labels)]
    return write_csv(tmp_path_factory.mktemp("ensemble-data") / "data.csv", texts, flipped)


def tune_command(data: Path, out: Path, *flags: str) -> list[str]:
    config = out.parent / f"{out.name}-config.yaml"
    config.write_text(yaml.safe_dump({"space": SPACE}), encoding="utf-8")
    return [
        "tune",
        "--data",
        str(data),
        "--model",
        "bag",
        "--config",
        str(config),
        "--out",
        str(out),
        "--sampler",
        "grid",
        "--pruner",
        "none",
        *flags,
    ]


def run_json(command: list[str]) -> dict[str, Any]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(command) == 0
    return dict(json.loads(stdout.getvalue().strip().splitlines()[-1]))


def record_of(run_dir: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((run_dir / "run.yaml").read_text(encoding="utf-8"))["record"])


def one_line_error(result: CliResult) -> str:
    assert result.code == 2, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


@pytest.fixture(scope="module")
def ensemble_run(noisy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A search of the four grid points whose final model is an ensemble of up to 3: (folder, --json summary)."""
    out = tmp_path_factory.mktemp("ensemble") / "run"
    return out, run_json(tune_command(noisy_data, out, "--ensemble", "3", "--json"))


# -- choosing the members ----------------------------------------------------------------------------


def test_a_copy_of_the_best_model_adds_nothing() -> None:
    best = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert greedy_counts([best, best.copy()], np.array([0, 1, 0]), 3, "accuracy") == [1, 0]


def test_models_that_err_differently_are_averaged_with_weights_from_their_picks() -> None:
    targets = np.array([0, 1, 0, 1])
    first = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.2, 0.8]])  # wrong on the third text
    second = np.array([[0.6, 0.4], [0.1, 0.9], [0.7, 0.3], [0.45, 0.55]])  # unsure where the first is sure
    counts = greedy_counts([first, second], targets, 2, "loss")
    assert counts[0] >= 1 and counts[1] >= 1
    average = (counts[0] * first + counts[1] * second) / sum(counts)
    assert log_loss(average, targets) < log_loss(first, targets)


def test_a_pick_that_lowers_the_loss_but_the_accuracy_is_refused() -> None:
    targets = np.array([0, 0, 0])
    best = np.array([[0.51, 0.49], [0.51, 0.49], [0.01, 0.99]])  # right twice, one confident mistake
    hedged = np.array([[0.4, 0.6], [0.4, 0.6], [0.6, 0.4]])  # lower loss on average, but right once
    assert log_loss((best + hedged) / 2, targets) < log_loss(best, targets)
    assert greedy_counts([best, hedged], targets, 2, "accuracy") == [1, 0]
    assert greedy_counts([best, hedged], targets, 2, "loss")[1] >= 1


def test_no_more_distinct_members_than_asked() -> None:
    targets = np.array([0, 1, 0, 1])
    rng = np.random.default_rng(0)
    candidates = [rng.dirichlet([1.0, 1.0], size=4) for _ in range(6)]
    counts = greedy_counts(candidates, targets, 2, "loss")
    assert counts[0] >= 1 and sum(1 for c in counts if c) <= 2


# -- the run folder of an ensemble -------------------------------------------------------------------


def test_the_members_and_weights_are_recorded(ensemble_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = ensemble_run
    record = record_of(run_dir)
    chosen = record["search"]["ensemble"]
    members = chosen["members"]
    assert len(members) >= 2, "averaging two of these trials lowers the validation loss"
    assert abs(sum(m["weight"] for m in members) - 1) < 1e-9
    assert members[0]["trial"] == record["search"]["best_trial"] == chosen["candidates"][0]
    assert {m["trial"] for m in members} <= set(chosen["candidates"])
    study = optuna.load_study(study_name=record["search"]["study"], storage=f"sqlite:///{run_dir / 'study.db'}")
    for member in members:
        assert member["settings"] == study.trials[member["trial"]].user_attrs["settings"]
    assert summary["ensemble"]["members"] == [{"trial": m["trial"], "weight": m["weight"]} for m in members]
    assert summary["ensemble"]["val"] == {"single_best": chosen["single_best"], "ensemble": chosen["ensemble"]}
    config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["runtime"] == "ensemble"
    assert [m["weight"] for m in config["members"]] == [m["weight"] for m in members]
    assert all((run_dir / "model" / "members" / str(i) / "model.safetensors").is_file() for i in range(len(members)))
    assert "Ensemble of up to 3" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_the_test_split_is_evaluated_once_for_the_ensemble(ensemble_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = ensemble_run
    accesses = record_of(run_dir)["test_accesses"]
    assert len(accesses) == 1 and accesses[0]["purpose"] == "final evaluation of the ensemble"
    assert set(summary["ensemble"]["val"]["single_best"]) == {"accuracy", "macro_f1", "loss"}  # validation only


def test_the_ensemble_is_never_worse_than_the_single_best_on_validation(
    ensemble_run: tuple[Path, dict[str, Any]],
) -> None:
    run_dir, summary = ensemble_run
    single, ensemble = summary["ensemble"]["val"]["single_best"], summary["ensemble"]["val"]["ensemble"]
    assert ensemble["loss"] < single["loss"]
    assert ensemble["accuracy"] >= single["accuracy"]
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["val"]["loss"] == pytest.approx(ensemble["loss"], abs=1e-6)


def test_the_ensemble_loads_and_averages_its_members(ensemble_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = ensemble_run
    model = load(run_dir)
    assert isinstance(model, EnsembleClassifier)
    texts = ["win a free prize now", "see you at lunch mum", ""]
    recorded = record_of(run_dir)["search"]["ensemble"]["members"]
    assert model.weights == pytest.approx([member["weight"] for member in recorded])  # every member, as chosen
    members = [load(run_dir / "model" / "members" / str(i)) for i in range(len(recorded))]
    expected = sum(m["weight"] * member.predict_proba(texts) for member, m in zip(members, recorded))
    assert np.allclose(model.predict_proba(texts), expected, atol=1e-5)
    assert model.predict(texts).labels == [model.classes_[i] for i in expected.argmax(axis=1)]
    assert model.describe()["family"] == "ensemble"
    with pytest.raises(Exception, match="cannot fit an ensemble"):
        model.fit(texts, ["ham", "spam", "ham"])


def test_predict_and_evaluate_open_the_ensemble(
    cli: Cli, ensemble_run: tuple[Path, dict[str, Any]], noisy_data: Path
) -> None:
    run_dir, _ = ensemble_run
    result = cli("predict", run_dir, "win a free prize now", "see you at lunch mum", "--json")
    assert result.code == 0, result.err
    probabilities = load(run_dir).predict_proba(["win a free prize now", "see you at lunch mum"])
    for row, record in zip(probabilities, result.json()["predictions"]):
        assert [record["probabilities"][c] for c in ("ham", "spam")] == pytest.approx(row.tolist(), abs=1e-6)
    result = cli("evaluate", run_dir, noisy_data, "--json")
    assert result.code == 0, result.err
    assert result.json()["metrics"]["n"] == 60


def test_a_server_opens_the_ensemble_like_any_run(ensemble_run: tuple[Path, dict[str, Any]]) -> None:
    from ajuste.serve import open_runs

    run_dir, summary = ensemble_run
    [served] = open_runs([run_dir])
    assert served.summary["family"] == "ensemble" and served.summary["runtime"] == "ensemble"
    assert served.summary["labels"] == ["ham", "spam"]
    assert served.summary["metrics"]["test"]["accuracy"] == summary["test"]["accuracy"]


def test_export_writes_each_member_to_onnx_and_keeps_the_weights(
    cli: Cli, ensemble_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    # it was refused: "cannot export an ensemble"
    from ajuste.training.onnx import OnnxClassifier

    run_dir, _ = ensemble_run
    exported = tmp_path / "exported"
    assert cli("export", run_dir, "--out", exported, "--quiet").code == 0
    source, model = load(run_dir), load(exported)
    assert isinstance(model, EnsembleClassifier) and model.weights == source.weights
    assert len(model.members) == len(source.members)
    assert all(isinstance(member, OnnxClassifier) for member in model.members)
    texts = ["win a free prize now", "see you at lunch mum", ""]
    assert np.allclose(model.predict_proba(texts), source.predict_proba(texts, precision="fp32"), atol=1e-4)
    result = cli("predict", exported, *texts[:2], "--json")
    assert result.code == 0, result.err
    assert [member["family"] for member in model.describe()["members"]] == [
        member.settings.family for member in source.members
    ]
    assert "already an exported model" in one_line_error(cli("export", exported, "--out", tmp_path / "twice"))
    assert not (tmp_path / "twice").exists()
    int8 = tmp_path / "int8"
    assert cli("export", run_dir, "--out", int8, "--quantize", "int8", "--quiet").code == 0
    assert np.allclose(load(int8).predict_proba(texts), source.predict_proba(texts), atol=0.1)  # int8 weights


@pytest.mark.parametrize("damage", ["weights", "config"])
def test_a_damaged_member_is_a_one_line_error(
    cli: Cli, ensemble_run: tuple[Path, dict[str, Any]], tmp_path: Path, damage: str
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(ensemble_run[0], copy)
    member = copy / "model" / "members" / "1"
    if damage == "weights":
        (member / "model.safetensors").write_bytes(b"not safetensors")
    else:
        (member / "config.json").unlink()
    line = one_line_error(cli("predict", copy, "win a free prize now"))
    assert "members/1" in line


def test_a_resumed_search_with_the_same_members_does_not_touch_the_test_split(
    noisy_data: Path, ensemble_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(ensemble_run[0], copy)
    before = record_of(copy)
    calls: list[str] = []
    original_fit, original_evaluate = TextClassifier.fit_from, TextClassifier.evaluate
    monkeypatch.setattr(TextClassifier, "fit_from", lambda *a, **k: calls.append("fit") or original_fit(*a, **k))
    monkeypatch.setattr(TextClassifier, "evaluate", lambda *a, **k: calls.append("eval") or original_evaluate(*a, **k))
    summary = run_json(tune_command(noisy_data, copy, "--ensemble", "3", "--json"))
    assert calls == [], "the same candidates choose the same members: nothing is trained or evaluated again"
    after = record_of(copy)
    assert after["test_accesses"] == before["test_accesses"]
    assert after["search"]["ensemble"] == before["search"]["ensemble"]
    assert summary["ensemble"] == ensemble_run[1]["ensemble"]


def test_new_candidates_that_leave_the_members_as_they_were_do_not_touch_the_test_split(
    noisy_data: Path, tmp_path: Path
) -> None:
    """A resumed search whose new trials join the candidates but not the ensemble keeps the tested model."""
    out = tmp_path / "run"
    run_json(tune_command(noisy_data, out, "--ensemble", "3", "--trials", "2", "--json"))
    before = record_of(out)
    run_json(tune_command(noisy_data, out, "--ensemble", "3", "--trials", "4", "--json"))
    after = record_of(out)
    members = [[(m["trial"], m["weight"]) for m in r["search"]["ensemble"]["members"]] for r in (before, after)]
    candidates = [r["search"]["ensemble"]["candidates"] for r in (before, after)]
    assert len(candidates[1]) > len(candidates[0]) and members[0] == members[1], (candidates, members)
    assert after["test_accesses"] == before["test_accesses"] and len(after["test_accesses"]) == 1
    assert after["search"]["trials"]["complete"] == 4, "the record counts the trials of now"


def test_the_same_study_with_ensemble_1_makes_the_single_model_again(
    noisy_data: Path, ensemble_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(ensemble_run[0], copy)
    summary = run_json(tune_command(noisy_data, copy, "--ensemble", "1", "--json"))
    assert "ensemble" not in summary
    record = record_of(copy)
    assert "ensemble" not in record["search"]
    assert not isinstance(load(copy), EnsembleClassifier)
    assert [a["purpose"] for a in record["test_accesses"]] == [
        "final evaluation of the ensemble",
        "final evaluation of the refit",
    ]


def test_every_trial_keeps_what_its_model_said_of_the_validation_texts(
    noisy_data: Path, ensemble_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(ensemble_run[0], copy)
    run_json(tune_command(noisy_data, copy, "--ensemble", "1", "--finalize", "--json"))
    record = record_of(copy)
    study = optuna.load_study(study_name=record["search"]["study"], storage=f"sqlite:///{copy / 'study.db'}")
    best = study.trials[record["search"]["best_trial"]]
    rows = json.loads((copy / "split.json").read_text(encoding="utf-8"))["val"]
    with noisy_data.open(encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    val_texts = [texts[row] for row in rows]
    model = load(copy)
    kept = stored(best, len(val_texts), 2)
    assert kept is not None
    np.testing.assert_allclose(kept, model.predict_proba(val_texts), atol=1e-5)
    assert all(stored(t, len(val_texts), 2) is not None for t in study.trials if t.state.name == "COMPLETE")
    assert stored(best, len(val_texts) + 1, 2) is None  # kept for other texts: not used


def test_the_members_are_chosen_without_training_a_candidate_again(
    noisy_data: Path, ensemble_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [m["trial"] for m in record_of(ensemble_run[0])["search"]["ensemble"]["members"]]
    fits: list[str] = []
    original_fit = TextClassifier.fit_from
    monkeypatch.setattr(TextClassifier, "fit_from", lambda *a, **k: fits.append("fit") or original_fit(*a, **k))
    again = tmp_path / "again"
    shutil.copytree(ensemble_run[0], again)
    shutil.rmtree(again / "model")  # no final model to keep: the members are chosen and trained anew
    run_json(tune_command(noisy_data, again, "--ensemble", "2", "--finalize", "--json"))
    chosen = record_of(again)["search"]["ensemble"]
    assert len(fits) == len(chosen["members"]), "only the members are trained, none of the other candidates"
    assert len(chosen["candidates"]) == 4
    # The same choice as from candidates trained again (what a study that kept no probabilities gets).
    monkeypatch.setattr("ajuste.search.ensemble.stored", lambda *a: None)
    fits.clear()
    retrained = tmp_path / "retrained"
    shutil.copytree(again, retrained)
    shutil.rmtree(retrained / "model")
    run_json(tune_command(noisy_data, retrained, "--ensemble", "2", "--finalize", "--json"))
    both = record_of(retrained)["search"]["ensemble"]
    assert len(fits) == len(both["candidates"])

    def picks(record: dict[str, Any]) -> list[tuple[int, float]]:
        return [(m["trial"], m["weight"]) for m in record["members"]]

    assert picks(both) == picks(chosen)
    assert both["ensemble"] == pytest.approx(chosen["ensemble"], abs=1e-6)
    assert members[0] == chosen["members"][0]["trial"]


def test_only_the_best_trials_models_are_kept() -> None:
    from ajuste.search.objective import KeptModels

    models: list[Any] = [object() for _ in range(4)]
    kept = KeptModels(2, maximize=True)
    for number, (value, loss) in enumerate([(0.8, 0.5), (0.9, 0.4), (0.9, 0.3), (0.7, 0.1)]):
        kept.offer(number, value, loss, models[number])
    assert [kept.model(n) for n in range(4)] == [None, models[1], models[2], None]  # ties go to the lower loss
    kept.release(keep=[2])
    assert kept.model(1) is None and kept.model(2) is models[2] and kept


def test_the_members_of_a_search_are_its_trials_own_models(
    noisy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits: list[str] = []
    original_fit = TextClassifier.fit_from
    monkeypatch.setattr(TextClassifier, "fit_from", lambda *a, **k: fits.append("fit") or original_fit(*a, **k))
    out = tmp_path / "run"
    run_json(tune_command(noisy_data, out, "--ensemble", "4", "--json"))  # up to 4 models kept: every trial's
    search = record_of(out)["search"]
    assert len(search["ensemble"]["members"]) >= 2
    assert len(fits) == 4, "each of the four trials trains once; the members are their models, kept, not refit"
    assert "its trial's model" in search["how"]


def test_the_ensemble_size_does_not_change_the_study() -> None:
    def fingerprint(**search: Any) -> str:
        values = {"data": {"dataset": "sms-spam"}, "model": {"family": "bag"}, "tune": search}
        return validate(TuneConfig, values).fingerprint()

    assert fingerprint() == fingerprint(ensemble=1) == fingerprint(ensemble=5)
    assert fingerprint() != fingerprint(metric="loss")


def test_the_final_model_may_average_up_to_5_trials_unless_one_trial_is_chosen() -> None:
    def size(**values: Any) -> int:
        return validate(TuneConfig, {"data": {"dataset": "sms-spam"}, **values}).tune.ensemble

    assert size() == size(tune={"ensemble": None}) == 5
    assert size(tune={"ensemble": 2}) == 2
    assert size(tune={"cv": 5}) == size(tune={"rescore": 3}) == 1  # one final trial, refit on train+val
    assert size(tune={"refit": "train+val"}) == 1  # each member would be trained again
    assert size(tune={"refit": "train+val", "ensemble": 3}) == 3
    assert size(distill={"teacher": "a-run"}) == 1  # students are searched for their cost
    assert size(distill={"teacher": "a-run"}, tune={"ensemble": 3}) == 3


def test_refit_on_train_and_validation_keeps_the_members_chosen(noisy_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_json(tune_command(noisy_data, out, "--ensemble", "3", "--refit", "train+val", "--json"))
    record = record_of(out)
    search = record["search"]
    assert search["refit"] == "train+val" and "train+val" in search["how"]
    members = search["ensemble"]["members"]
    assert len(members) >= 2 and all(isinstance(m["epochs"], int) for m in members)
    assert len(record["test_accesses"]) == 1
    model = load(out)
    assert isinstance(model, EnsembleClassifier) and model.weights == [m["weight"] for m in members]
    assert summary["ensemble"]["members"] == [{"trial": m["trial"], "weight": m["weight"]} for m in members]

"""The tuning report: one offline HTML file, complete at every stage of a study, with all text escaped."""

from __future__ import annotations

import html
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import ajuste
from ajuste.errors import RunFolderError
from ajuste.runs import RunFile, RunFolder, RunRecord, SearchInfo, SearchRecord, TestAccess
from ajuste.search.report import NO_FINAL_MODEL, SECTION_TITLES, build_report_html, write_report
from tests.conftest import make_texts

ERROR_TEXT = "CUDA out of memory: <tried 2 GiB> & gave up"
LABELS = ["ham", "spam & eggs", "other"]


def start_study(run_dir: Path, *, with_tune: bool = True) -> optuna.Study:
    """An empty study in ``run_dir/study.db``, announced in tune.json the way the tuner does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(run_dir)
    storage = f"sqlite:///{folder.study_file.resolve()}"
    if with_tune:
        info = SearchInfo(
            fingerprint="0123456789",
            study="ajuste",
            metric="accuracy",
            direction="maximize",
            data="sms-spam",
            sampler="tpe",
            pruner="median",
        )
        folder.write_search_info(info, space_yaml="{}\n")
    study = optuna.create_study(
        study_name="ajuste", storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.set_user_attr("metric", "accuracy")
    return study


def run_trial(study: optuna.Study, *, prune_at: int | None = None, family: str | None = None) -> None:
    """One trial of a conditional space, with the user attributes the tuner records."""
    trial = study.ask()
    family = family or trial.suggest_categorical("model.family", ["gpt", "bert"])
    lr = trial.suggest_float("train.lr", 1e-4, 1e-1, log=True)
    settings: dict[str, Any] = {"model.family": family, "train.lr": lr, "train.epochs": 3}
    if family == "gpt":
        joint = trial.suggest_categorical("gpt/model.emb_dim|model.num_heads", ["64|2", "128|4"])
        emb_dim, heads = (int(v) for v in str(joint).split("|"))
        settings |= {"model.emb_dim": emb_dim, "model.num_heads": heads}
    else:
        settings["model.dropout"] = trial.suggest_float("bert/model.dropout", 0.0, 0.3)
    trial.set_user_attr("settings", settings)
    history = []
    score = 0.0
    for epoch in (1, 2, 3):
        score = 0.95 - 0.05 * abs(math.log10(lr) + 2.5) - 0.1 / epoch
        history.append(
            {"epoch": epoch, "loss": 1 / epoch, "val_loss": 1.2 / epoch, "val_accuracy": score, "seconds": 0.1}
        )
        trial.report(score, epoch)
        if epoch == prune_at:
            break
    # The tuner records these as it goes; once each keeps the SQLite writes (and the test) few.
    trial.set_user_attr("history", history)
    trial.set_user_attr("seconds", 0.1 * len(history))
    if len(history) == prune_at:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, score)


def fail_trial(study: optuna.Study) -> None:
    trial = study.ask()
    trial.suggest_float("train.lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("error", ERROR_TEXT)
    study.tell(trial, state=TrialState.FAIL)


def split_metrics(accuracy: float) -> dict[str, Any]:
    return {
        "accuracy": accuracy,
        "macro_f1": accuracy - 0.02,
        "accuracy_ci95": [accuracy - 0.03, accuracy + 0.02],
        "loss": 0.21,
        "n": 60,
        "labels": LABELS,
        "confusion_matrix": [[18, 1, 1], [2, 17, 1], [0, 1, 19]],
        "per_class": {name: {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 20} for name in LABELS},
    }


BEST_PARAMS = {"model.family": "bag", "model.embed_dim": 8, "train.lr": 0.0123}


def write_final_model(folder: RunFolder, metrics: dict[str, Any], best_trial: int) -> None:
    """A final model and its record, written the way ``ajuste tune`` writes them (a tiny bag model)."""
    texts, labels = make_texts(30, classes=("ham", "spam", "other"))
    labels = [dict(zip(("ham", "spam", "other"), LABELS))[label] for label in labels]
    classifier = ajuste.build("bag", embed_dim=8, buckets=100)
    classifier.fit(texts, labels, epochs=1, verbose=False)
    search = SearchRecord(
        study="ajuste",
        metric="accuracy",
        direction="maximize",
        sampler="tpe",
        pruner="median",
        fingerprint="0123456789",
        trials={"complete": 8},
        best_trial=best_trial,
        best_value=0.93,
        best_params=BEST_PARAMS,
        refit="train",
        how="trained again with the best settings on the training split",
    )
    record = RunRecord(
        seconds=1.0, data={}, model={}, search=search, test_accesses=[TestAccess(texts=60, purpose="test")]
    )
    config = ajuste.RunConfig(data=ajuste.DataSettings(dataset="sms-spam"), model=classifier.settings)
    folder.write_final(classifier, RunFile(config=config, record=record), metrics=metrics, split={})


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A study with complete, pruned, failed and running trials, and a final model written."""
    run_dir = tmp_path_factory.mktemp("tuned")
    study = start_study(run_dir)
    for number in range(10):
        run_trial(study, prune_at=2 if number in (3, 6) else None)
    fail_trial(study)
    study.ask()  # a trial still running: asked, never told
    metrics = {"val": split_metrics(0.93), "test": split_metrics(0.91)}
    write_final_model(RunFolder(run_dir), metrics, best_trial=4)
    path = write_report(run_dir)
    assert path == RunFolder(run_dir).report_file
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []  # no temporary file left behind
    return path.read_text(encoding="utf-8")


def assert_offline(text: str) -> None:
    """No external resource: the only URLs are SVG namespace names, the only references are in-page."""
    for match in re.finditer(r"https?://", text):
        assert re.search(r'xmlns(:\w+)?="$', text[max(0, match.start() - 20) : match.start()]), text[
            match.start() - 40 : match.end() + 40
        ]
    assert "<script" not in text
    assert "<link" not in text
    assert "@import" not in text
    assert re.findall(r"url\((?!#)", text) == []
    assert re.findall(r'href="(?!#)', text) == []
    assert re.findall(r"<img", text) == []


class TagBalance(HTMLParser):
    """Fails on any element closed out of order or left open (void elements aside)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def assert_well_formed(text: str) -> None:
    parser = TagBalance()
    parser.feed(text)
    parser.close()
    assert parser.open == []


def svgs(text: str) -> list[ET.Element]:
    """Every inline SVG, parsed as XML (which also proves its text is escaped)."""
    return [ET.fromstring(chunk) for chunk in re.findall(r"<svg .*?</svg>", text, flags=re.S)]


def test_full_report_is_one_offline_html_file(full_report: str) -> None:
    assert full_report.startswith("<!DOCTYPE html>")
    assert full_report.rstrip().endswith("</html>")
    assert_well_formed(full_report)
    assert_offline(full_report)
    # history, importances, scatters, learning curves, confusion matrix
    assert len(svgs(full_report)) == 5
    ids = re.findall(r'\sid="([^"]+)"', full_report)
    assert len(ids) == len(set(ids)), "figures on one page must not share element ids"


def test_full_report_shows_every_section(full_report: str) -> None:
    for title in SECTION_TITLES:
        assert f"<h2>{html.escape(title)}</h2>" in full_report
    assert "10 complete" not in full_report  # two of the ten were pruned
    assert "8 complete, 2 pruned, 1 failed, 1 running" in full_report
    assert "tpe / median" in full_report
    assert "accuracy (maximize)" in full_report
    assert "Still running: trial 11" in full_report
    assert "Refit with the settings of trial 4 (trained again with the best settings" in full_report
    final = full_report.split("<h2>Final model</h2>")[1].split("</section>")[0]
    assert "<code>train.lr</code>" in final and "0.0123" in final and "<code>model.embed_dim</code>" in final
    assert NO_FINAL_MODEL not in full_report


def test_full_report_shows_final_model_and_failures(full_report: str) -> None:
    for name in LABELS:
        assert html.escape(name) in full_report
    assert "spam & eggs" not in full_report
    assert html.escape(ERROR_TEXT) in full_report
    assert "0.91" in full_report and "0.93" in full_report  # test and validation accuracy
    assert "[0.88, 0.93]" in full_report  # the test accuracy's 95% interval


def test_scatter_panels_follow_settings_not_raw_parameter_names(full_report: str) -> None:
    section = full_report.split("<h2>Score by parameter</h2>")[1].split("</section>")[0]
    assert "model.emb_dim" in section and "model.num_heads" in section
    assert "gpt/model.emb_dim|model.num_heads" not in section


@pytest.mark.parametrize("running", [0, 1])
def test_study_without_finished_trials_still_gets_a_report(tmp_path: Path, running: int) -> None:
    study = start_study(tmp_path)
    for _ in range(running):
        study.ask()
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert NO_FINAL_MODEL in text
    assert "No trial has finished yet" in text
    assert "no trial has completed yet" in text
    assert f"0 complete, 0 pruned, 0 failed, {running} running" in text
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in text
    assert_well_formed(text)
    assert_offline(text)


def test_single_finished_trial_says_why_importances_are_missing(tmp_path: Path) -> None:
    study = start_study(tmp_path)
    run_trial(study)
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "Only one trial has finished so far." in text
    assert "need at least 2 completed trials" in text
    assert "No setting varies across the finished trials." in text
    assert len(svgs(text)) == 2  # history and learning curve


def test_importance_failure_costs_only_that_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = start_study(tmp_path)
    for _ in range(4):
        run_trial(study)

    def broken(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise ValueError("dynamic search space")

    monkeypatch.setattr(optuna.importance, "get_param_importances", broken)
    text = build_report_html(study, final=None, title="t")
    assert "Parameter importances could not be computed: dynamic search space" in text
    assert "<h2>Score by parameter</h2>\n<figure><svg" in text  # falls back to the most common settings


def test_settings_text_is_escaped_everywhere(tmp_path: Path) -> None:
    study = start_study(tmp_path)
    for _ in range(3):
        run_trial(study, family="<script>alert('x')</script>$")
    text = build_report_html(study, final=None, title="<b>title</b>")
    assert "<script" not in text and "<b>" not in text
    assert html.escape("<script>alert('x')</script>$") in text
    svgs(text)


def test_trials_without_settings_use_optuna_parameters(tmp_path: Path) -> None:
    study = start_study(tmp_path, with_tune=False)
    for x in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.suggest_float("x", 0.5, 4.0)
        study.tell(trial, x)
    text = write_report(tmp_path, storage=f"sqlite:///{tmp_path / 'study.db'}").read_text(encoding="utf-8")
    assert "<code>x=" in text
    assert "unknown / unknown" in text  # no tune.json: sampler and pruner not known


def test_missing_tune_json_is_not_a_tuning_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="not a tuning run folder"):
        write_report(tmp_path)
    with pytest.raises(RunFolderError, match="does not exist"):
        write_report(tmp_path / "nowhere")


def test_missing_study_or_database_is_a_run_folder_error(tmp_path: Path) -> None:
    start_study(tmp_path)
    with pytest.raises(RunFolderError, match="no study named 'other'"):
        write_report(tmp_path, study_name="other")
    missing = tmp_path / "elsewhere" / "gone.db"
    with pytest.raises(RunFolderError, match="does not exist"):
        write_report(tmp_path, storage=f"sqlite:///{missing}")
    assert not missing.exists()  # reporting never creates an empty database


def test_moved_run_folder_finds_its_database(tmp_path: Path) -> None:
    original = tmp_path / "before"
    run_trial(start_study(original))
    moved = original.rename(tmp_path / "after")
    text = write_report(moved).read_text(encoding="utf-8")
    assert "1 complete" in text

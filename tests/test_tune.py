"""``ajuste tune`` and ``ajuste report``: the run folder, resuming, the locked test split, pruning, failures.

Every search here trains the bag family on 60 generated texts with a space of a few points, so that a
trial takes a fraction of a second.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

from ajuste.cli.main import main
from ajuste.errors import ConfigError, TrainingError
from ajuste.runs import RunFolder
from ajuste.search.objective import TrialReporter
from ajuste.search.settings import TuneConfig
from ajuste.search.space import parse_space
from ajuste.search.study import CHOSEN_BY
from ajuste.search.tune import TuneResult, run_tune, tune
from ajuste.training.classifier import TextClassifier
from ajuste.validation import validate
from tests.conftest import CliResult, make_texts, write_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread", "quiet_optuna")

Cli = Callable[..., CliResult]
TINY_SPACE: dict[str, Any] = {
    "model.embed_dim": [8, 16],
    "train.epochs": [1, 2],
    "model.buckets": 1000,
    "train.lr": 0.05,
}
#: Half of the learning rates learn nothing: a pruner has hopeless trials to stop.
HOPELESS_SPACE: dict[str, Any] = {
    "model.embed_dim": [8, 16, 24],
    "train.lr": [1.0, 1e-6],
    "train.epochs": 3,
    "model.buckets": 1000,
}


@pytest.fixture(scope="module", autouse=True)
def cheap_garbage_collection() -> Iterator[None]:
    # The tuner collects garbage after every trial; with torch, optuna and matplotlib loaded, a full
    # collection walks a million objects. Freezing what exists before these tests keeps each collection
    # to the objects the searches themselves create (which is what the memory test looks at).
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 texts of two classes that their words give away (42 train, 6 validation, 12 test)."""
    texts, labels = make_texts(60, seed=3)
    return write_csv(tmp_path_factory.mktemp("tune-data") / "data.csv", texts, labels)


def tune_command(data: Path, out: Path, *flags: str, space: dict[str, Any] | None = None) -> list[str]:
    """``ajuste tune`` over ``data`` into ``out``, the space given in a --config file beside ``out``."""
    config = out.parent / f"{out.name}-config.yaml"
    config.write_text(yaml.safe_dump({"space": space or TINY_SPACE}), encoding="utf-8")
    return ["tune", "--data", str(data), "--model", "bag", "--config", str(config), "--out", str(out), *flags]


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    return result


def one_line_error(result: CliResult) -> str:
    assert result.code == 2, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


def record_of(run_dir: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((run_dir / "run.yaml").read_text(encoding="utf-8"))["record"])


def load_study(run_dir: Path) -> optuna.Study:
    folder = RunFolder(run_dir)
    info = folder.read_search_info()
    assert info is not None
    return optuna.load_study(study_name=info.study, storage=folder.storage_url(info))


def config(data: Path, out: Path, space: dict[str, Any] | None = None, **search: Any) -> TuneConfig:
    """The settings of a bag search over ``data`` into ``out``, validated as ``ajuste.tune`` validates them."""
    values = {
        "data": {"path": str(data)},
        "model": {"family": "bag"},
        "space": space or TINY_SPACE,
        "tune": {"sampler": "random", "pruner": "none", **search},
        "out": str(out),
    }
    return validate(TuneConfig, values)


def count_classifiers() -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, TextClassifier))


@pytest.fixture(scope="module")
def finished(data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One search of 3 trials through the command line: (its run folder, its --json summary)."""

    out = tmp_path_factory.mktemp("finished") / "run"
    command = tune_command(data_file, out, "--trials", "3", "--sampler", "random", "--pruner", "none", "--json")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(command) == 0
    return out, json.loads(stdout.getvalue().strip().splitlines()[-1])


# -- a finished search -------------------------------------------------------------------------------


def test_a_search_writes_a_complete_run_folder(finished: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = finished
    for name in ("model", "metrics.json", "run.yaml", "study.db", "tune.json", "report.html", "history.json"):
        assert (run_dir / name).exists(), name
    record = record_of(run_dir)
    assert len(record["test_accesses"]) == 1
    assert record["test_accesses"][0]["split"] == "test"
    search = record["search"]
    assert search["trials"]["complete"] == 3
    assert search["best_trial"] in (0, 1, 2)
    assert search["best_params"]["model.buckets"] == 1000
    assert search["refit"] == "train"
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics) == {"val", "test"}
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Optimisation history" in html and "Final model" in html


def test_the_json_line_summarises_the_search(finished: tuple[Path, dict[str, Any]]) -> None:
    run_dir, summary = finished
    assert summary["run_dir"] == str(run_dir)
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    assert summary["trials"] == {"complete": 3, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}
    assert summary["best_params"]["model.embed_dim"] in (8, 16)
    assert summary["best_params"]["train.epochs"] in (1, 2)
    for split in ("val", "test"):
        assert 0.0 <= summary[split]["accuracy"] <= 1.0
        assert 0.0 <= summary[split]["macro_f1"] <= 1.0
    assert summary["test"]["accuracy"] == json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
    choice = summary["choice"]  # how the final trial was chosen, and over how many texts
    assert choice["protocol"] == "validation" and choice["scored_on"] == "the validation split"
    assert choice["texts"] == summary["data"]["val"] and choice["one_text"] == pytest.approx(1 / choice["texts"])
    assert choice["by"] == record_of(run_dir)["search"]["chosen_by"]
    trials = load_study(run_dir).get_trials()
    assert choice["tied_at_best"] == sum(1 for t in trials if t.value == summary["best_value"]) >= 1


def test_a_finished_search_is_a_loadable_model(finished: tuple[Path, dict[str, Any]]) -> None:
    from ajuste import load

    run_dir, summary = finished
    classifier = load(run_dir)
    assert classifier.settings.embed_dim == summary["best_params"]["model.embed_dim"]
    assert classifier.predict(["win a free prize now"]).labels[0] in ("ham", "spam")


# -- resuming ----------------------------------------------------------------------------------------


def test_the_same_command_resumes_and_never_tests_twice(
    cli: Cli, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    search = ("--sampler", "random", "--pruner", "none", "--quiet")
    ok(cli(*tune_command(data_file, out, "--trials", "3", *search)))
    numbers_before = [(t.number, t.params) for t in load_study(out).get_trials()]

    calls: list[str] = []
    original_fit, original_evaluate = TextClassifier.fit_from, TextClassifier.evaluate
    monkeypatch.setattr(TextClassifier, "fit_from", lambda *a, **k: calls.append("fit") or original_fit(*a, **k))
    monkeypatch.setattr(TextClassifier, "evaluate", lambda *a, **k: calls.append("eval") or original_evaluate(*a, **k))
    ok(cli(*tune_command(data_file, out, "--trials", "3", *search)))
    assert calls == [], "a finished search run again trains nothing and evaluates nothing"
    assert [(t.number, t.params) for t in load_study(out).get_trials()] == numbers_before
    assert len(record_of(out)["test_accesses"]) == 1

    calls.clear()
    ok(cli(*tune_command(data_file, out, "--trials", "5", *search)))
    trials = load_study(out).get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [(t.number, t.params) for t in trials[:3]] == numbers_before
    record = record_of(out)
    assert record["search"]["trials"]["complete"] == 5
    assert calls.count("fit") == 2, "only the two new trials train (a new best trial's model is the final one)"
    # The test split is evaluated again only for a new final model, and the record keeps every access.
    new_best = record["search"]["best_trial"] >= 3
    assert calls.count("eval") == (2 if new_best else 0)
    assert len(record["test_accesses"]) == (2 if new_best else 1)


def test_a_folder_of_another_search_is_refused_unless_overwritten(cli: Cli, data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(cli(*tune_command(data_file, out, "--trials", "1", "--quiet")))
    other = {**TINY_SPACE, "model.embed_dim": [8, 32]}
    line = one_line_error(cli(*tune_command(data_file, out, "--trials", "1", space=other)))
    assert "holds another search" in line and "--overwrite" in line
    assert len(load_study(out).get_trials()) == 1, "the refused command changed nothing"

    ok(cli(*tune_command(data_file, out, "--trials", "1", "--overwrite", "--quiet", space=other)))
    trials = load_study(out).get_trials()
    assert len(trials) == 1 and trials[0].params["model.embed_dim"] in (8, 32)
    assert len(record_of(out)["test_accesses"]) == 1


def test_a_trial_left_running_by_a_crash_is_run_again(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = tune(data_file, model="bag", space=TINY_SPACE, sampler="random", pruner="none", trials=1, out=out)
    assert first.trial_counts()["complete"] == 1
    # A crash in the middle of the second trial: asked, its settings drawn, never told. Its settings differ
    # from the first trial's (a repeat of a finished trial is not queued again).
    study = load_study(out)
    done = study.trials[0].params
    study.enqueue_trial({"model.embed_dim": 24 - done["model.embed_dim"], "train.epochs": 3 - done["train.epochs"]})
    stale = study.ask()
    settings = parse_space(TINY_SPACE, base_model={"family": "bag"}).suggest(stale)
    assert stale.params

    result = tune(data_file, model="bag", space=TINY_SPACE, sampler="random", pruner="none", trials=2, out=out)
    trials = result.study.get_trials(deepcopy=False)
    crashed = trials[stale.number]
    assert crashed.state == TrialState.FAIL
    assert crashed.user_attrs["interrupted"] is True and "interrupted" in crashed.user_attrs["error"]
    again = [t for t in trials if t.number > stale.number]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE
    assert again[0].params == stale.params and again[0].user_attrs["settings"] == settings
    assert result.trial_counts()["complete"] == 2


# -- pruning -----------------------------------------------------------------------------------------


def test_the_reporter_feeds_the_pruner_and_stops_the_trial() -> None:
    class FakeTrial:
        def __init__(self) -> None:
            self.reported: list[tuple[int, float]] = []

        def report(self, value: float, step: int) -> None:
            self.reported.append((step, value))

        def should_prune(self) -> bool:
            return len(self.reported) >= 2

    trial = FakeTrial()
    reporter = TrialReporter(trial, "val_accuracy")  # type: ignore[arg-type]
    reporter.on_epoch_end(1, {"epoch": 1, "val_accuracy": 0.5, "loss": 1})
    reporter.on_epoch_end(2, {"epoch": 2, "val_accuracy": math.nan})  # not a score: not reported
    with pytest.raises(optuna.TrialPruned, match="after epoch 3"):
        reporter.on_epoch_end(3, {"epoch": 3, "val_accuracy": 0.25})
    assert trial.reported == [(1, 0.5), (3, 0.25)]
    assert [row["epoch"] for row in reporter.rows] == [1, 2, 3]
    assert reporter.rows[0]["loss"] == 1.0


class NeverPrune:
    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False

    def set_user_attr(self, key: str, value: Any) -> None:
        self.attrs[key] = value


def test_the_time_budget_stops_a_trial_after_its_current_epoch_but_not_its_last() -> None:
    trial = NeverPrune()
    reporter = TrialReporter(trial, "val_accuracy", lambda: True)  # type: ignore[arg-type]
    reporter.on_train_begin({"epochs": 3})
    with pytest.raises(optuna.TrialPruned, match="time budget"):
        reporter.on_epoch_end(1, {"val_accuracy": 0.5})
    assert "time budget" in trial.attrs["stopped"]
    reporter.on_epoch_end(3, {"val_accuracy": 0.5})  # the last epoch: the trial completes
    patient = TrialReporter(NeverPrune(), "val_accuracy", lambda: False)  # type: ignore[arg-type]
    patient.on_train_begin({"epochs": 3})
    patient.on_epoch_end(1, {"val_accuracy": 0.5})


def test_a_pruned_trial_keeps_its_last_reported_score() -> None:
    class PruneAtTwo(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            return trial.last_step is not None and trial.last_step >= 2

    def objective(trial: optuna.Trial) -> float:
        reporter = TrialReporter(trial, "val_accuracy")
        for epoch in range(1, 5):
            reporter.on_epoch_end(epoch, {"val_accuracy": epoch / 10})
        return 1.0

    study = optuna.create_study(direction="maximize", pruner=PruneAtTwo())
    study.optimize(objective, n_trials=1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert trial.value == pytest.approx(0.2)


@pytest.mark.parametrize("pruner", ["asha", "median", "hyperband"])
def test_pruners_stop_hopeless_trials(pruner: str, data_file: Path, tmp_path: Path) -> None:
    # A fixed study name: Hyperband puts trials in brackets by a hash of it (a name from the settings would
    # change with the temporary folder of the data, and so which trials compete).
    result = tune(
        data_file,
        model="bag",
        space=HOPELESS_SPACE,
        sampler="grid",
        pruner=pruner,
        seed=1,
        study=f"prune-{pruner}",
        out=tmp_path / "run",
    )
    trials = result.study.get_trials(deepcopy=False)
    assert len(trials) == 6, "the grid of 3 x 2 points, each tried once"
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert any(t.params["train.lr"] == 1e-6 for t in pruned), (
        f"{pruner} pruned no hopeless trial: {[(t.params, t.state.name, t.intermediate_values) for t in trials]}"
    )
    for trial in pruned:
        last = max(trial.intermediate_values)
        assert trial.value == trial.intermediate_values[last]
        assert len(trial.user_attrs["history"]) == last
    best = result.study.best_trial
    assert best.state == TrialState.COMPLETE and best.params["train.lr"] == 1.0


# -- failures ----------------------------------------------------------------------------------------


#: What a trial can legitimately meet: a loss that is not a number, no memory left, settings a model refuses.
LEGITIMATE_FAILURES = {
    "nan": (lambda: TrainingError("the training loss is not a number"), "TrainingError: the training loss"),
    "cpu-oom": (
        lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        "TrainingError: out of memory",
    ),
    "memory": (lambda: MemoryError("no more"), "MemoryError: no more"),
    "refused": (lambda: ConfigError("invalid settings: model.x"), "ConfigError: invalid settings"),
}


@pytest.mark.parametrize("kind", sorted(LEGITIMATE_FAILURES))
def test_a_failing_trial_is_recorded_and_the_search_goes_on(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    original = TextClassifier.fit_from
    make_error, reason = LEGITIMATE_FAILURES[kind]

    def fit_from(self: TextClassifier, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.settings, "embed_dim", None) == 16:
            raise make_error()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "fit_from", fit_from)
    space = {**TINY_SPACE, "train.epochs": 1}
    result = tune(data_file, model="bag", space=space, sampler="grid", pruner="none", out=tmp_path / "run")
    assert result.trial_counts() == {"complete": 1, "pruned": 0, "fail": 1, "running": 0, "waiting": 0}
    (failed,) = [t for t in result.study.get_trials() if t.state == TrialState.FAIL]
    assert failed.params["model.embed_dim"] == 16
    assert failed.user_attrs["error"].startswith(reason)
    assert "Traceback" in failed.user_attrs["traceback"]  # kept in the study for report.html and --verbose
    assert result.best_params["model.embed_dim"] == 8
    assert (tmp_path / "run" / "model").is_dir()


def test_a_bug_stops_the_search_and_its_trial_runs_again_once_fixed(
    cli: Cli, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TextClassifier.fit_from

    def buggy(self: TextClassifier, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.settings, "embed_dim", None) == 16:
            raise KeyError("a bug in ajuste")
        return original(self, *args, **kwargs)

    out = tmp_path / "run"
    command = tune_command(data_file, out, "--trials", "4", "--sampler", "grid", "--quiet")
    with monkeypatch.context() as patch:
        patch.setattr(TextClassifier, "fit_from", buggy)
        result = cli(*command)
    assert result.code == 1, result.err
    assert result.err.startswith("internal error: KeyError") and "AJUSTE_DEBUG=1" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    stopped = [t for t in load_study(out).get_trials() if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs["interrupted"] for t in stopped)  # not counted: not the trial's fault
    assert "KeyError" in stopped[0].user_attrs["traceback"]
    assert not (out / "model").exists()
    ok(cli(*command))  # the bug fixed, the same command finishes the study: every point ran once
    trials = load_study(out).get_trials()
    assert sum(1 for t in trials if t.state == TrialState.COMPLETE) == 4


def test_a_search_where_every_trial_fails_says_why_and_still_reports(
    cli: Cli, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fit_from(self: TextClassifier, *args: Any, **kwargs: Any) -> Any:
        raise TrainingError("the training loss is not a number")

    monkeypatch.setattr(TextClassifier, "fit_from", fit_from)
    out = tmp_path / "run"
    line = one_line_error(cli(*tune_command(data_file, out, "--trials", "2", "--quiet")))
    assert "no trial of the search finished" in line and "TrainingError: the training loss" in line
    assert not (out / "model").exists(), "no final model without a finished trial"
    report = out / "report.html"
    report.unlink()
    result = ok(cli("report", out, "--json"))
    assert json.loads(result.out.strip().splitlines()[-1]) == {"report": str(report)}
    assert "Failed trials" in report.read_text(encoding="utf-8")


def test_a_failed_trial_says_what_to_change_in_its_reader_s_words(
    cli: Cli, data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fit_from(self: TextClassifier, *args: Any, **kwargs: Any) -> Any:
        raise TrainingError("the training loss became nan", fix="Lower the learning rate ([[--lr||lr]]).")

    monkeypatch.setattr(TextClassifier, "fit_from", fit_from)
    out = tmp_path / "run"
    result = cli(*tune_command(data_file, out, "--trials", "2"))
    trial_lines = [line for line in result.out.splitlines() + result.err.splitlines() if line.startswith("trial ")]
    assert trial_lines and all("Lower the learning rate (--lr)" in line for line in trial_lines), trial_lines
    last = result.err.strip().splitlines()[-1]
    assert "first error: TrainingError: the training loss became nan. Lower the learning rate (--lr)" in last
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Lower the learning rate (lr)" in report and "[[" not in report
    with pytest.raises(TrainingError) as caught:
        tune(str(data_file), model="bag", trials=1, out=tmp_path / "python")
    assert "Lower the learning rate (lr)" in str(caught.value) and "--lr" not in str(caught.value)


# -- refit and the Python API ------------------------------------------------------------------------


def test_refit_on_train_and_validation_for_the_best_epoch_count(cli: Cli, data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    space = {**TINY_SPACE, "model.embed_dim": 16, "train.epochs": [2, 3]}
    ok(cli(*tune_command(data_file, out, "--sampler", "grid", "--refit", "train+val", "--quiet", space=space)))
    best = load_study(out).best_trial
    record = record_of(out)
    search = record["search"]
    assert search["refit"] == "train+val"
    assert search["epochs"] == best.user_attrs["best_epoch"]
    assert "train+val" in search["how"]
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    assert len(history["epochs"]) == search["epochs"]
    assert not any(key.startswith("val_") for key in history["epochs"][0]), "no validation data in the refit"
    assert len(record["test_accesses"]) == 1


def test_the_python_api_returns_the_search_and_a_working_model(data_file: Path, tmp_path: Path) -> None:
    result = tune(data_file, model="bag", space=TINY_SPACE, sampler="tpe", pruner="median", trials=2, out=tmp_path)
    assert isinstance(result, TuneResult)
    assert result.run_dir == tmp_path
    assert result.best_params == result.study.best_trial.user_attrs["settings"]
    assert result.best_value == result.study.best_value
    assert set(result.metrics) == {"val", "test"}
    assert {"accuracy", "macro_f1", "loss"} <= set(result.metrics["test"])
    predictions = result.classifier.predict(["win a free prize now", "see you at lunch mum"])
    assert len(predictions.labels) == 2 and set(predictions.labels) <= {"ham", "spam"}


@pytest.mark.parametrize("ensemble", [1, 3])
def test_trials_leave_nothing_behind(data_file: Path, tmp_path: Path, ensemble: int) -> None:
    before = count_classifiers()
    alive: list[int] = []
    space = {**TINY_SPACE, "model.embed_dim": [8, 12, 16]}
    result = run_tune(
        config(data_file, tmp_path / "run", space, trials=6, ensemble=ensemble),
        on_trial=lambda trial, study: alive.append(count_classifiers() - before),
    )
    assert result.trial_counts()["complete"] == 6
    assert count_classifiers() - before >= 1, "the count sees the final model that the result holds"
    assert len(alive) == 6
    # Only the models of the best trials, as many as the final ensemble may take, are kept.
    assert alive == [min(n, ensemble) for n in range(1, 7)], f"classifiers alive after each trial: {alive}"


# -- the command line's refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--trials", "3", "--timeout", "abc"), "timeout"),
        (("--trials", "0"), "trials"),
        (("--trials", "3", "--sampler", "foo"), "invalid choice: 'foo'"),
        (("--trials", "3", "--pruner", "sometimes"), "invalid choice: 'sometimes'"),
        (("--trials", "many"), "invalid int value"),
        ((), "no budget"),
    ],
)
def test_bad_flags_are_refused_on_one_line(
    cli: Cli, data_file: Path, tmp_path: Path, flags: tuple[str, ...], expected: str
) -> None:
    out = tmp_path / "run"
    line = one_line_error(cli(*tune_command(data_file, out, *flags)))
    assert expected in line
    assert not out.exists(), "a refused command writes no folder"


def test_no_budget_is_refused_by_the_python_api_too(data_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no budget"):
        tune(data_file, model="bag", space=TINY_SPACE, sampler="tpe", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_report_rebuilds_the_page_of_a_search(cli: Cli, finished: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = finished
    report = run_dir / "report.html"
    report.unlink()
    ok(cli("report", run_dir, "--quiet"))
    html = report.read_text(encoding="utf-8")
    assert "Best trials" in html and "Final model" in html


def test_report_refuses_a_folder_that_is_no_search(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a run", encoding="utf-8")
    line = one_line_error(cli("report", tmp_path))
    assert "not a tuning run folder" in line
    assert "does not exist" in one_line_error(cli("report", tmp_path / "missing"))


def test_no_finished_trial_is_a_training_error(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fit_from(self: TextClassifier, *args: Any, **kwargs: Any) -> Any:
        raise MemoryError("bad value")

    monkeypatch.setattr(TextClassifier, "fit_from", fit_from)
    with pytest.raises(TrainingError, match="MemoryError: bad value"):
        tune(data_file, model="bag", space=TINY_SPACE, sampler="random", pruner="none", trials=1, out=tmp_path)


def test_the_command_silences_optuna_s_own_trial_log(data_file: Path, tmp_path: Path, cli: Cli) -> None:
    # The command prints one line per trial itself (none with --quiet): Optuna's log would repeat them.
    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default
    result = ok(cli(*tune_command(data_file, tmp_path / "run", "--trials", "2", "--quiet")))
    assert optuna.logging.get_verbosity() == optuna.logging.ERROR  # a failed trial's traceback too
    assert result.err == ""


def test_grid_on_a_default_space_runs_the_budget_and_says_how(data_file: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "run"
    args = ["tune", "--data", data_file, "--model", "bag", "--sampler", "grid", "--trials", "6", "--out", out]
    result = ok(cli(*args, "--pruner", "none"))  # a low learning rate's slow start is not the question here
    assert "train.warmup 5 → 1" in result.out and "train.lr" not in result.out.split("coarsened")[1].splitlines()[0]
    points = int(result.out.split("coarsened to ")[1].split(" points")[0])
    assert 2 <= points <= 6, "about the budget, never above it"
    trials = load_study(out).get_trials()
    assert len(trials) == points and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == points


def test_ties_on_validation_accuracy_go_to_the_lowest_validation_loss(data_file: Path, tmp_path: Path) -> None:
    # Six validation texts: most settings score 100%, so the choice among them is the tie-break's.
    space = {"model.embed_dim": [8, 16], "train.epochs": [2, 3], "train.lr": [0.05, 0.1], "model.buckets": 1000}
    result = tune(data_file, model="bag", space=space, sampler="grid", pruner="none", out=tmp_path / "run")
    complete = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
    top = max(t.value for t in complete)
    tied = [t for t in complete if t.value == top]
    assert len(tied) > 1, "the test needs a tie"
    lowest = min(tied, key=lambda t: (t.user_attrs["val_metrics"]["val_loss"], t.number))
    assert result.best_trial == lowest.number
    search = record_of(tmp_path / "run")["search"]
    assert search["best_trial"] == lowest.number and "lowest validation loss" in search["chosen_by"]
    assert result.choice is not None and result.choice["tied_at_best"] == len(tied)


def test_the_command_says_how_the_final_trial_was_chosen_and_how_close_it_was() -> None:
    from ajuste.cli.commands import _choice_line

    tie = {"protocol": "validation", "by": CHOSEN_BY, "metric": "accuracy", "scored_on": "the validation split"}
    line = _choice_line(5, {**tie, "value": 1.0, "texts": 128, "tied_at_best": 7, "one_text": 1 / 128})
    assert "trial 5" in line and "128 texts, one text 0.78 points" in line and "7 trials tied" in line
    assert "lowest validation loss" in line and "--rescore 3" in line and "--cv 5" in line
    alone = _choice_line(5, {**tie, "value": 1.0, "texts": 128, "tied_at_best": 1, "one_text": 1 / 128})
    assert "tied" not in alone and "--rescore" not in alone  # no tie: nothing to suggest
    folds = {**tie, "protocol": "cv", "scored_on": "5 folds of train+val", "texts": 1152, "tied_at_best": 3}
    line = _choice_line(2, {**folds, "value": 0.98, "metric": "loss", "one_text": None})
    assert "5 folds of train+val (1,152 texts)" in line and "one text" not in line and "--cv" not in line


@pytest.mark.parametrize("family", ["zorb", ["bag", "linear"], {"a": 1}, 3])
def test_a_config_s_unknown_model_family_is_one_line_for_tune(family: object, tmp_path: Path) -> None:
    # tune met it while building the default space: KeyError 'zorb', "unhashable type: 'list'" (internal errors)
    from ajuste.search.tune import search_space
    from ajuste.validation import validate

    config = validate(TuneConfig, {"data": {"path": "x.csv"}, "model": {"family": family}})
    with pytest.raises(ConfigError, match=r"model\.family: unknown model family, got"):
        search_space(config)


def test_a_model_setting_given_with_its_family_is_fixed_not_searched() -> None:
    # ajuste.tune(model={"family": "bag", "embed_dim": 8}) searched embed_dim all the same (the best trial had 192,
    # and the final run.yaml said so): only training settings were taken out of the space
    from ajuste.search.tune import search_space
    from ajuste.validation import validate

    config = validate(TuneConfig, {"data": {"path": "x.csv"}, "model": {"family": "bag", "embed_dim": 8}})
    space = search_space(config)
    assert not any("embed_dim" in name for name in space.distributions())
    assert space.fixed_by_user == {"model.embed_dim": 8}


def test_a_trial_line_shows_a_solver_family_no_training_settings(data_file: Path, tmp_path: Path, cli: Cli) -> None:
    # `linear` is solved in one pass: its space fixes epochs=1, which the line used to show as a setting
    result = ok(cli("tune", "--data", data_file, "--model", "linear,bag", "--trials", "2", "--out", tmp_path / "run"))
    lines = [line for line in (result.out + result.err).splitlines() if line.startswith("trial ")]
    linear = [line for line in lines if "  linear " in line]
    bag = [line for line in lines if "  bag " in line]
    assert linear and bag, lines
    assert all("classifier=" in line and "epochs=" not in line for line in linear), linear
    assert all("epochs=" in line for line in bag), bag


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"model": "bag", "space": {"model.family": ["bag", "linear"]}}, "model and the space's model.family both"),
        ({"model": []}, "tune's model list is empty"),
        ({"model": "bag", "train": [1]}, "train is a mapping of setting names to values"),
        ({"model": "bag", "out": 123}, "out is the path of a folder"),
    ],
)
def test_tune_from_python_refuses_what_the_command_line_would(
    arguments: dict[str, Any], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each ran: a family the user left out searched, every default family searched, a TypeError, a folder "123"
    monkeypatch.chdir(tmp_path)
    texts, labels = make_texts(40)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    with pytest.raises(ConfigError, match=said):
        tune(data, trials=1, **{"out": tmp_path / "run", **arguments})
    assert list(tmp_path.iterdir()) == [data], "nothing written"


def test_the_python_api_says_what_it_takes_instead_of_failing_inside(tmp_path: Path) -> None:
    from ajuste.data import load_data
    from ajuste.runs.distill import distill

    texts, labels = make_texts(40)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    with pytest.raises(ConfigError, match="load_data takes a DataSettings"):
        load_data(str(data))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="TextClassifier takes a family's settings object"):
        TextClassifier("bag")  # type: ignore[arg-type]
    model = TextClassifier().compile()
    model.fit(texts, labels, epochs=1, verbose=False)
    with pytest.raises(ConfigError, match="evaluate's seed must be a whole number >= 0"):
        model.evaluate(texts[:4], labels[:4], seed=-1)
    with pytest.raises(ConfigError, match="train is a mapping"):
        distill(tmp_path / "teacher", train=[1])  # type: ignore[arg-type]

"""Run folders: what ``ajuste.train`` writes, that run.yaml reproduces the run, and that writing is atomic."""

from __future__ import annotations

import csv
import importlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import ajuste
import ajuste.runs.folder
from ajuste.config import parse_config, read_yaml
from ajuste.errors import ConfigError, RunFolderError
from ajuste.models import BagSettings
from ajuste.runs import RunFolder
from ajuste.training import TextClassifier
from tests.conftest import make_texts, write_csv

# ``ajuste.runs.train`` is the function that ``ajuste.runs`` re-exports; its module is reached this way.
TRAIN_MODULE = importlib.import_module("ajuste.runs.train")
RUN_FILES = {"run.yaml", "model", "metrics.json", "history.json", "split.json"}


@dataclass
class Source:
    """A data file with known flaws: which rows cleaning and deduplication must drop."""

    path: Path
    texts: list[str]
    labels: list[str]
    dropped: set[int]


def flawed_source(folder: Path, n: int = 120, classes: tuple[str, ...] = ("ham", "spam")) -> Source:
    texts, labels = make_texts(n, seed=11, classes=classes)
    dropped: set[int] = set()
    extra = [
        ("", "ham"),  # empty text
        ("   ", "spam"),  # blank text
        ("a text without a label", ""),  # missing label
        (texts[0], labels[0]),  # exact duplicate
        (f"  {texts[1]} ", labels[1]),  # duplicate once stripped
        (texts[2], "spam" if labels[2] == "ham" else "ham"),  # duplicate with another label: first one kept
    ]
    for text, label in extra:
        dropped.add(len(texts))
        texts.append(text)
        labels.append(label)
    return Source(write_csv(folder / "data.csv", texts, labels), texts, labels, dropped)


def run_config(data: Path, out: Path, *, seed: int = 123, **data_settings: Any) -> ajuste.RunConfig:
    return ajuste.RunConfig(
        data=ajuste.DataSettings(path=str(data), **data_settings),
        model=BagSettings(embed_dim=16, buckets=1000),
        train=ajuste.TrainSettings(lr=0.05, epochs=3),
        seed=seed,
        out=str(out),
    )


def hidden_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Source, ajuste.RunResult]:
    folder = tmp_path_factory.mktemp("run")
    source = flawed_source(folder)
    config = ajuste.RunConfig(
        data=ajuste.DataSettings(path=str(source.path)),
        model=BagSettings(embed_dim=16, buckets=1000),  # training settings left to the family's defaults
        out=str(folder / "runs" / "first"),
    )
    return source, ajuste.train(config)


def without_seconds(history: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in history["epochs"]]


def read(run_dir: Path, name: str) -> Any:
    text = (run_dir / name).read_text(encoding="utf-8")
    return yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)


# -- what a run folder holds ----------------------------------------------------------------------


def test_run_folder_holds_every_file(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    assert result.run_dir.is_dir()
    assert {p.name for p in result.run_dir.iterdir()} == RUN_FILES
    model = {p.name for p in (result.run_dir / "model").iterdir()}
    assert {"config.json", "model.safetensors", "vocabulary.json"} <= model
    assert hidden_leftovers(result.run_dir.parent) == []


def test_run_yaml_records_resolved_settings_and_versions(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    run = read(result.run_dir, "run.yaml")
    assert set(run) == {"data", "model", "train", "seed", "out", "ajuste", "record"}
    # the family's defaults are written out, not left unset
    assert (run["train"]["lr"], run["train"]["epochs"], run["train"]["batch_size"]) == (5e-3, 10, 32)
    assert run["data"]["balance"] == "none"
    assert run["seed"] == 123
    assert run["model"] == {**BagSettings(embed_dim=16, buckets=1000).model_dump(mode="json")}
    import tokenizers
    import torch
    import transformers

    versions = run["ajuste"]
    assert versions["ajuste"] == ajuste.__version__
    assert versions["torch"] == str(torch.__version__)
    assert versions["transformers"] == transformers.__version__
    assert versions["tokenizers"] == tokenizers.__version__
    assert {"python", "peft", "platform"} <= set(versions)


def test_run_yaml_records_exactly_one_test_access(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    record = read(result.run_dir, "run.yaml")["record"]
    assert len(record["test_accesses"]) == 1
    access = record["test_accesses"][0]
    assert access["split"] == "test" and access["texts"] == len(result.data.test)
    assert record["epochs_run"] == 10 and record["best_epoch"] in range(1, 11)
    assert record["model"]["family"] == "bag"
    assert record["data"]["clean"]["rows_in"] == 126


def test_the_test_split_is_evaluated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = flawed_source(tmp_path)
    evaluated: list[list[int]] = []
    original = TextClassifier.evaluate

    def spy(self: TextClassifier, x: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        evaluated.append(list(x.rows))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "evaluate", spy)
    result = ajuste.train(run_config(source.path, tmp_path / "run"))
    assert evaluated.count(result.data.test.rows) == 1
    assert len(evaluated) == 3  # train, val, test


def test_metrics_json_has_train_val_and_test(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    metrics = read(result.run_dir, "metrics.json")
    assert set(metrics) == {"train", "val", "test"}
    for split, values in metrics.items():
        assert values["n"] == len(getattr(result.data, split))
        assert {"accuracy", "accuracy_ci95", "macro_f1", "per_class", "confusion_matrix", "loss"} <= set(values)
    assert metrics == json.loads(json.dumps(result.metrics))


def test_history_json_matches_the_fit(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    history = read(result.run_dir, "history.json")
    assert history == json.loads(json.dumps(result.classifier.history_.to_dict()))
    assert len(history["epochs"]) == 10 and "val_macro_f1" in history["epochs"][0]


def test_split_json_traces_back_to_the_source_rows(finished: tuple[Source, ajuste.RunResult]) -> None:
    source, result = finished
    split = read(result.run_dir, "split.json")
    assert split["source"] == str(source.path) and split["seed"] == 123
    parts = {name: set(split[name]) for name in ("train", "val", "test")}
    assert [len(parts[name]) for name in parts] == [len(split[name]) for name in parts]  # no row twice
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
    union = parts["train"] | parts["val"] | parts["test"]
    assert union | source.dropped == set(range(len(source.texts)))
    assert not union & source.dropped
    report = result.data.report
    counted = report["clean"]["dropped_empty_text"] + report["clean"]["dropped_missing_label"]
    assert counted + report["dedupe"]["dropped_duplicates"] == len(source.dropped)
    assert report["dedupe"]["conflicting_labels"] == 1
    for name in ("train", "val", "test"):
        dataset = getattr(result.data, name)
        assert sorted(dataset.rows) == split[name]
        for row, text, label in zip(dataset.rows, dataset.texts, dataset.labels):
            assert (source.texts[row].strip(), source.labels[row]) == (text, label)


def test_train_takes_the_sections_of_a_run_yaml_as_a_mapping(tmp_path: Path) -> None:
    source = flawed_source(tmp_path)
    values = run_config(source.path, tmp_path / "run").model_dump(mode="json")
    assert ajuste.train(values).run_dir == tmp_path / "run"  # the same run as from the RunConfig
    values["model"]["embed_dim"] = -1
    with pytest.raises(ConfigError, match=r"invalid settings: model\.embed_dim"):  # not pydantic's or an AttributeError
        ajuste.train(values)
    with pytest.raises(ConfigError, match="expected a RunConfig or a mapping"):
        ajuste.train("run.yaml")  # type: ignore[arg-type]


def test_split_json_accounts_for_undersampling(tmp_path: Path) -> None:
    texts, labels = make_texts(90, seed=2, classes=("ham", "ham", "spam"))  # twice as much ham as spam
    path = write_csv(tmp_path / "data.csv", texts, labels)
    result = ajuste.train(run_config(path, tmp_path / "run", balance="undersample"))
    split = read(result.run_dir, "split.json")
    union = set(split["train"]) | set(split["val"]) | set(split["test"])
    balance = result.data.report["balance"]
    assert balance["before"] == {"ham": 60, "spam": 30} and balance["after"] == {"ham": 30, "spam": 30}
    assert len(union) == 60 and union <= set(range(90))
    assert sorted(labels[row] for row in union).count("ham") == 30
    assert read(result.run_dir, "run.yaml")["data"]["balance"] == "undersample"


def test_oversampled_train_rows_are_listed_once(tmp_path: Path) -> None:
    texts, labels = make_texts(90, seed=2, classes=("ham", "ham", "spam"))
    path = write_csv(tmp_path / "data.csv", texts, labels)
    result = ajuste.train(run_config(path, tmp_path / "run", balance="oversample"))
    split = read(result.run_dir, "split.json")
    assert len(result.data.train) > len(split["train"]) == len(set(split["train"]))
    assert set(split["train"]) == set(result.data.train.rows)


def test_the_run_folder_reads_back_the_trained_model_and_its_record(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    run = RunFolder.open(result.run_dir)
    assert run.path == result.run_dir
    metrics = run.read_metrics()
    assert metrics is not None and metrics["test"]["accuracy"] == result.metrics["test"]["accuracy"]
    run_file = run.read_run_file()
    assert run_file is not None and run_file.config.seed == 123
    assert run_file.record.test_accesses[0].texts == len(result.data.test)
    texts = result.data.test.texts
    assert run.load().predict(texts).labels == result.classifier.predict(texts).labels
    loaded = ajuste.load(result.run_dir)
    assert loaded.history_ is not None and len(loaded.history_) == 10
    assert loaded.evaluate(result.data.test)["accuracy"] == result.metrics["test"]["accuracy"]


def test_summary_is_json_with_the_headline_numbers(finished: tuple[Source, ajuste.RunResult]) -> None:
    _, result = finished
    summary = json.loads(json.dumps(result.summary()))
    assert summary["run_dir"] == str(result.run_dir)
    assert summary["data"]["rows_read"] == 126
    assert summary["data"]["dropped_duplicates"] == 3
    assert summary["data"]["train"] + summary["data"]["val"] + summary["data"]["test"] == 120
    for split in ("train", "val", "test"):
        assert set(summary[split]) == {"accuracy", "macro_f1", "loss", "accuracy_ci95"}


# -- run.yaml reproduces the run ------------------------------------------------------------------


def test_run_yaml_fed_back_reproduces_the_metrics(finished: tuple[Source, ajuste.RunResult], tmp_path: Path) -> None:
    _, first = finished
    values = read_yaml(first.run_dir / "run.yaml")
    assert "record" not in values and "ajuste" not in values
    values["out"] = str(tmp_path / "again")
    second = ajuste.train(parse_config(values))
    assert read(second.run_dir, "metrics.json") == read(first.run_dir, "metrics.json")
    assert read(second.run_dir, "split.json") == read(first.run_dir, "split.json")
    assert without_seconds(read(second.run_dir, "history.json")) == without_seconds(read(first.run_dir, "history.json"))
    again = read(second.run_dir, "run.yaml")
    for key in ("data", "model", "train", "seed"):
        assert again[key] == read(first.run_dir, "run.yaml")[key]


def test_a_different_seed_gives_a_different_split(tmp_path: Path) -> None:
    source = flawed_source(tmp_path)
    a = ajuste.train(run_config(source.path, tmp_path / "a", seed=1))
    b = ajuste.train(run_config(source.path, tmp_path / "b", seed=2))
    assert read(a.run_dir, "split.json")["test"] != read(b.run_dir, "split.json")["test"]


# -- atomic writing -------------------------------------------------------------------------------


class Crash(Exception):
    pass


def crash_on(name: str) -> Callable[..., None]:
    original = ajuste.runs.folder.write_json

    def write_json(path: Path, content: Any) -> None:
        if path.name == name:
            raise Crash(f"simulated crash while writing {name}")
        original(path, content)

    return write_json


def fail_model(self: TextClassifier, folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"half a file")
    raise Crash("simulated crash while writing the model")


@pytest.mark.parametrize("where", ["model", "metrics.json", "split.json", "run.yaml"])
def test_a_crash_while_writing_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    source = flawed_source(tmp_path)
    if where == "model":
        monkeypatch.setattr(TextClassifier, "write_model", fail_model)
    elif where == "run.yaml":

        def write_yaml(*args: Any, **kwargs: Any) -> None:
            raise Crash("simulated crash while writing run.yaml")

        monkeypatch.setattr(ajuste.runs.folder, "write_yaml", write_yaml)
    else:
        monkeypatch.setattr(ajuste.runs.folder, "write_json", crash_on(where))
    target = tmp_path / "runs" / "crashed"
    with pytest.raises(Crash):
        ajuste.train(run_config(source.path, target))
    assert not target.exists()
    assert list((tmp_path / "runs").iterdir()) == []  # no partial hidden folder either


def test_an_interrupt_while_writing_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = flawed_source(tmp_path)

    def interrupted(path: Path, content: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ajuste.runs.folder, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ajuste.train(run_config(source.path, tmp_path / "runs" / "interrupted"))
    assert list((tmp_path / "runs").iterdir()) == []


def snapshot_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_existing_run_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = flawed_source(tmp_path)
    target = tmp_path / "run"
    ajuste.train(run_config(source.path, target))
    before = snapshot_files(target)

    def no_work(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("data was loaded before the output folder was checked")

    monkeypatch.setattr(TRAIN_MODULE, "load_data", no_work)
    with pytest.raises(RunFolderError, match="already exists"):
        ajuste.train(run_config(source.path, target, seed=5))
    assert snapshot_files(target) == before


def test_an_empty_target_folder_is_used(tmp_path: Path) -> None:
    source = flawed_source(tmp_path)
    target = tmp_path / "empty"
    target.mkdir()
    ajuste.train(run_config(source.path, target))
    assert {p.name for p in target.iterdir()} == RUN_FILES


def test_overwrite_replaces_only_after_the_new_run_is_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = flawed_source(tmp_path)
    target = tmp_path / "runs" / "run"
    ajuste.train(run_config(source.path, target))
    before = snapshot_files(target)

    with monkeypatch.context() as patch:
        patch.setattr(ajuste.runs.folder, "write_json", crash_on("split.json"))
        with pytest.raises(Crash):
            ajuste.train(run_config(source.path, target, seed=5), overwrite=True)
    assert snapshot_files(target) == before  # the old run is untouched by the failed one
    assert [p.name for p in target.parent.iterdir()] == ["run"]

    ajuste.train(run_config(source.path, target, seed=5), overwrite=True)
    assert read(target, "run.yaml")["seed"] == 5
    assert {p.name for p in target.iterdir()} == RUN_FILES
    assert [p.name for p in target.parent.iterdir()] == ["run"]  # the old one is gone, nothing hidden left


def test_opening_an_incomplete_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "run.yaml").write_text("seed: 1\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match="not a complete run folder"):
        RunFolder.open(tmp_path)


def test_split_rows_are_data_rows_of_the_file(finished: tuple[Source, ajuste.RunResult]) -> None:
    source, result = finished
    with source.path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    split = read(result.run_dir, "split.json")
    for row in split["test"]:
        assert rows[row]["text"].strip() in result.data.test.texts


def test_run_folder_has_the_permissions_of_a_plain_folder(finished: tuple[Source, ajuste.RunResult]) -> None:
    mask = os.umask(0)
    os.umask(mask)
    _, result = finished
    assert stat.S_IMODE(result.run_dir.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((result.run_dir / "model").stat().st_mode) == 0o777 & ~mask


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a finished training was lost at its last step ("internal error: FileNotFoundError" in /proc, OSError on a
    # read-only disk); root passes permission checks, so the place is tried with an empty folder made and removed
    from ajuste.atomic import unwritable_place
    from ajuste.cli.main import main

    assert unwritable_place(tmp_path / "a" / "b" / "run") is None
    assert list(tmp_path.iterdir()) == []  # nothing left behind, no folder made on the way
    assert isinstance(unwritable_place(Path("/proc/ajuste-test-run")), OSError)  # a place no one writes in
    texts, labels = make_texts(40)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    fitted: list[bool] = []
    monkeypatch.setattr(TextClassifier, "fit", lambda *a, **k: fitted.append(True))
    for command in (["train", "--model", "bag"], ["tune", "--model", "bag", "--trials", "1"]):
        code = main([*command, "--data", str(data), "--epochs", "1", "--out", "/proc/ajuste-test-run"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert "cannot write the output folder /proc/ajuste-test-run: expected a place this user may create" in err
    assert not fitted  # refused before training


def test_a_switch_that_is_not_true_or_false_replaces_nothing(tmp_path: Path) -> None:
    # overwrite="no" is truthy: read as given, it replaced the run it was meant to keep
    texts, labels = make_texts(40)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    config = {"data": {"path": str(data)}, "model": {"family": "linear"}, "out": str(tmp_path / "run")}
    ajuste.train(config)
    before = (tmp_path / "run" / "run.yaml").read_bytes()
    for value in ("no", 1, None):
        with pytest.raises(ConfigError, match="overwrite must be True or False"):
            ajuste.train(config, overwrite=value)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="overwrite must be True or False"):
            ajuste.tune(str(data), model="linear", trials=1, out=tmp_path / "search", overwrite=value)  # type: ignore[arg-type]
    assert (tmp_path / "run" / "run.yaml").read_bytes() == before and not (tmp_path / "search").exists()


def test_paths_in_a_run_s_settings_may_be_path_objects(tmp_path: Path) -> None:
    # "must be a string" for a pathlib.Path, which tune and distill take
    texts, labels = make_texts(40)
    data = write_csv(tmp_path / "data.csv", texts, labels)
    result = ajuste.train({"data": {"path": data}, "model": {"family": "linear"}, "out": tmp_path / "run"})
    assert result.run_dir == tmp_path / "run" and result.config.data.path == str(data)

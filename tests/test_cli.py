"""The command line's happy paths: train (bag, gpt, a checkpoint, --config), evaluate, predict, datasets, help."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CliResult, make_texts, write_csv, write_jsonl

Cli = Callable[..., CliResult]
FAST_BAG = ("--model", "bag", "--embed-dim", "16", "--buckets", "1000", "--lr", "0.05")


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    return result


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


@pytest.fixture(scope="module")
def bag_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """One bag run trained through the CLI, shared by the evaluate and predict tests: (run, data, summary)."""
    from ajuste.cli.main import main

    folder = tmp_path_factory.mktemp("cli")
    texts, labels = make_texts(120)
    data = write_csv(folder / "data.csv", texts, labels)
    run = folder / "run"
    assert main(["train", "--data", str(data), *FAST_BAG, "--epochs", "4", "--out", str(run), "--quiet"]) == 0
    summary = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return run, data, summary


# -- train ----------------------------------------------------------------------------------------


def test_train_json_reports_the_run(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = ok(cli("train", "--data", csv_file, "--model", "bag", "--epochs", "2", "--out", out, "--json"))
    summary = result.json()
    assert summary["run_dir"] == str(out) and out.is_dir()
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    data = summary["data"]
    assert data["rows_read"] == 120
    assert (data["train"], data["val"], data["test"]) == (84, 12, 24)
    assert data["classes"]["test"] == {"ham": 12, "spam": 12}
    for split in ("val", "test"):
        assert 0.0 <= summary[split]["accuracy"] <= 1.0
        assert 0.0 <= summary[split]["macro_f1"] <= 1.0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))["train"]["epochs"] == 2
    assert result.out.strip().count("\n") == 0, "with --json, stdout holds only the JSON line"


def test_train_shows_a_summary_for_people(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    result = ok(cli("train", "--data", csv_file, *FAST_BAG, "--epochs", "1", "--out", tmp_path / "run"))
    assert "rows read" in result.out and "run folder" in result.out
    assert all(split in result.out for split in ("train", "val", "test"))


def test_quiet_keeps_the_result_itself(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], sms_dir: Path) -> None:
    # predict and evaluate printed nothing at all under --quiet, datasets and cache list neither
    run, data, _ = bag_run
    predicted = ok(cli("predict", run, "win a free prize now", "--quiet")).out.splitlines()
    assert len(predicted) == 2 and predicted[0].split()[0] == "label"
    assert predicted[1].split()[0] in ("ham", "spam") and predicted[1].rstrip().endswith("win a free prize now")
    scored = ok(cli("evaluate", run, data, "-q")).out.splitlines()
    assert scored[0].split()[:3] == ["split", "texts", "accuracy"] and scored[1].split()[:2] == ["data", "120"]
    assert len(scored) == 2  # the scores alone: no per-class table, no confusion matrix, no note
    assert "sms-spam" in ok(cli("datasets", "--data-dir", sms_dir, "-q")).out
    assert ok(cli("predict", run, "hello", "-q", "--json")).out.count("\n") == 1  # the JSON line is the result


def test_train_quiet_prints_nothing(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    result = ok(cli("train", "--data", csv_file, *FAST_BAG, "--epochs", "1", "--out", tmp_path / "run", "--quiet"))
    assert result.out == ""
    assert (tmp_path / "run" / "run.yaml").is_file()


def test_train_jsonl_data(cli: Cli, tmp_path: Path) -> None:
    texts, labels = make_texts(60, seed=4, classes=("ham", "spam", "other"))
    data = write_jsonl(tmp_path / "data.jsonl", texts, labels)
    summary = ok(cli("train", "--data", data, *FAST_BAG, "--epochs", "1", "--out", tmp_path / "run", "--json")).json()
    assert set(summary["data"]["classes"]["train"]) == {"ham", "spam", "other"}


def test_train_gpt_from_flags(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("--model", "gpt", "--num-layers", "1", "--num-heads", "2", "--emb-dim", "32", "--epochs", "1")
    summary = ok(cli("train", "--data", csv_file, *args, "--out", out, "--json")).json()
    assert "accuracy" in summary["test"]
    model = yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))["model"]
    assert (model["family"], model["num_layers"], model["num_heads"], model["emb_dim"]) == ("gpt", 1, 2, 32)
    assert 1 <= model["max_length"] <= model["context_length"]
    assert (out / "model" / "tokenizer.json").is_file()


def test_train_a_checkpoint_folder(cli: Cli, csv_file: Path, tmp_path: Path, tiny_bert: Path) -> None:
    out = tmp_path / "run"
    args = ("--model", tiny_bert, "--trainable", "last_block", "--epochs", "1")
    summary = ok(cli("train", "--data", csv_file, *args, "--out", out, "--json")).json()
    assert "macro_f1" in summary["val"]
    run = yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))
    assert run["model"]["family"] == "pretrained" and run["model"]["checkpoint"] == str(tiny_bert)
    assert run["model"]["trainable"] == "last_block" and run["model"]["pooling"] == "pooler"
    assert (run["train"]["lr"], run["train"]["epochs"], run["train"]["batch_size"]) == (2e-4, 1, 16)
    assert run["record"]["model"]["trainable_parameters"] < run["record"]["model"]["parameters"]
    assert (out / "model" / "backbone" / "config.json").is_file()


def test_config_file_with_a_flag_override(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    ok(cli("train", "--data", csv_file, *FAST_BAG, "--epochs", "2", "--seed", "7", "--out", first, "--quiet"))
    first_run = yaml.safe_load((first / "run.yaml").read_text(encoding="utf-8"))

    # fed back as is (but for the output folder) it reproduces the metrics
    same = ok(cli("train", "--config", first / "run.yaml", "--out", tmp_path / "same", "--json")).json()
    first_metrics = json.loads((first / "metrics.json").read_text(encoding="utf-8"))
    assert same["test"]["accuracy"] == first_metrics["test"]["accuracy"]
    assert same["val"]["macro_f1"] == first_metrics["val"]["macro_f1"]
    assert same["test"]["loss"] == first_metrics["test"]["loss"]

    # a flag overrides the file, everything else comes from it
    second = tmp_path / "second"
    ok(cli("train", "--config", first / "run.yaml", "--epochs", "3", "--out", second, "--quiet"))
    second_run = yaml.safe_load((second / "run.yaml").read_text(encoding="utf-8"))
    assert second_run["train"]["epochs"] == 3
    assert second_run["seed"] == 7 and second_run["train"]["lr"] == 0.05
    assert second_run["model"] == first_run["model"]
    assert second_run["data"] == first_run["data"]
    assert second_run["out"] == str(second)
    history = json.loads((second / "history.json").read_text(encoding="utf-8"))
    assert len(history["epochs"]) == 3


def test_train_subset_learns_from_a_stratified_sample_of_the_training_split(
    cli: Cli, csv_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ("train", "--data", csv_file, *FAST_BAG, "--epochs", "1", "--subset", "40")
    summary = ok(cli(*args, "--out", out, "--json")).json()
    assert summary["data"]["train"] == 84 and summary["data"]["trained_on"] == 40
    assert summary["data"]["classes"]["trained_on"] == {"ham": 20, "spam": 20}
    written = yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))
    assert written["train"]["subset"] == 40
    assert written["record"]["data"]["train_subset"] == {
        "texts": 40,
        "of": 84,
        "seed": 123,
        "classes": {"ham": 20, "spam": 20},
    }
    said = ok(cli(*args, "--out", tmp_path / "said")).out
    assert "trained on 40 of the 84 training texts (a sample: ham=20, spam=20)" in " ".join(said.split())
    again = ok(cli("train", "--config", out / "run.yaml", "--out", tmp_path / "again", "--json")).json()
    assert again["test"] == summary["test"], "run.yaml's subset is the same sample"
    trained = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["train"]
    assert trained["n"] == 40 and {c["support"] for c in trained["per_class"].values()} == {20}, "stratified"
    assert len(json.loads((out / "split.json").read_text(encoding="utf-8"))["train"]) == 84, "the split is unchanged"
    seen = ok(cli("evaluate", out, csv_file, "--json")).json()["data"]["seen"]
    assert seen == {"train": 40, "val": 12}, "the training texts left out of the sample did not train the model"

    too_many = cli(*args[:-1], "85", "--out", tmp_path / "bad")
    assert too_many.code != 0 and too_many.err.count("\n") == 1, too_many.err
    assert "--subset 85 does not fit the training split: expected a number of texts from 2" in too_many.err
    assert "84" in too_many.err and not (tmp_path / "bad").exists()
    assert cli(*args[:-1], "0", "--out", tmp_path / "bad").code != 0
    searched = cli("tune", "--data", csv_file, "--subset", "40", "--trials", "1", "--out", tmp_path / "bad")
    assert searched.code == 2 and "--subset" in searched.err


def test_overwrite_flag(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(cli("train", "--data", csv_file, *FAST_BAG, "--epochs", "1", "--out", out, "--quiet"))
    refused = cli("train", "--data", csv_file, *FAST_BAG, "--epochs", "1", "--out", out, "--quiet")
    assert refused.code == 2 and "--overwrite" in refused.err and refused.err.count("\n") == 1
    ok(cli("train", "--data", csv_file, *FAST_BAG, "--epochs", "1", "--seed", "9", "--out", out, "--overwrite", "-q"))
    assert yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))["seed"] == 9


@pytest.mark.slow
def test_train_sms_spam_with_bag(cli: Cli, sms_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = ok(cli("train", "--dataset", "sms-spam", "--data-dir", sms_dir, "--model", "bag", "--out", out, "--json"))
    result = summary.json()
    assert result["data"]["rows_read"] == 5574
    assert result["data"]["balance"] == "undersample"
    classes = result["data"]["classes"]["test"]
    assert classes["ham"] == classes["spam"]
    assert result["test"]["accuracy"] >= 0.94


# -- evaluate -------------------------------------------------------------------------------------


def test_evaluate_json(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    run, data, _ = bag_run
    result = ok(cli("evaluate", run, data, "--json")).json()
    assert result["run_dir"] == str(run)
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    seen = {"train": len(split["train"]), "val": len(split["val"])}  # its own data: training and validation in it
    assert result["data"] == {"rows_read": 120, "scored": 120, "skipped": 0, "seen": seen}
    metrics = result["metrics"]
    assert metrics["n"] == 120
    assert 0.0 <= metrics["accuracy_ci95"][0] <= metrics["accuracy"] <= metrics["accuracy_ci95"][1] <= 1.0
    assert set(metrics["per_class"]) == {"ham", "spam"}
    assert sum(sum(row) for row in metrics["confusion_matrix"]) == 120

    texts, labels = make_texts(10, seed=99)
    small = write_csv(tmp_path / "small.csv", [*texts, ""], [*labels, "ham"])
    scored = ok(cli("evaluate", run, small, "--json")).json()
    assert scored["data"] == {"rows_read": 11, "scored": 10, "skipped": 1, "seen": {"train": 0, "val": 0}}


def test_evaluate_takes_the_data_as_train_does(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]]) -> None:
    run, data, _ = bag_run
    positional = ok(cli("evaluate", run, data, "--json")).json()
    flagged = ok(cli("evaluate", run, "--data", data, "--json")).json()
    assert flagged["metrics"] == positional["metrics"]
    assert flagged["data"] == positional["data"]


def test_evaluate_says_when_the_texts_trained_or_chose_the_model(
    cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    run, data, _ = bag_run
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    said = " ".join(ok(cli("evaluate", run, data)).out.split())  # the note may wrap
    test = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]
    assert f"note {len(split['train'])} of these 120 texts trained the model and {len(split['val'])} chose it" in said
    assert f"its test split, scored once, gave accuracy {test['accuracy']:.4f} on {test['n']} texts" in said
    # its test split alone: nothing to say
    texts, labels = make_texts(120)  # the fixture's data
    test_only = write_csv(tmp_path / "test.csv", [texts[i] for i in split["test"]], [labels[i] for i in split["test"]])
    assert "note" not in ok(cli("evaluate", run, test_only)).out
    # a run whose data was moved cannot be read again: no note and no guess (seen is null), the scores all the same
    moved = tmp_path / "moved.csv"
    data.rename(moved)
    try:
        gone = ok(cli("evaluate", run, moved, "--json")).json()
    finally:
        moved.rename(data)
    assert gone["data"]["seen"] is None and gone["metrics"]["n"] == 120


def test_evaluate_gives_the_interval_train_recorded(cli: Cli, tmp_path: Path) -> None:
    # the same model on the same test texts, in another order and under a run seed other than 0: one interval
    # (200 test texts: with a few dozen the bootstrap's quantiles fall on the same values under any seed)
    texts, labels = make_texts(1000)
    labels = [("spam" if y == "ham" else "ham") if i % 4 == 0 else y for i, y in enumerate(labels)]  # some errors
    data, run = write_csv(tmp_path / "data.csv", texts, labels), tmp_path / "run"
    ok(cli("train", "--data", data, *FAST_BAG, "--epochs", "2", "--seed", "7", "--out", run, "--quiet"))
    recorded = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]
    assert 0.0 < recorded["accuracy"] < 1.0  # an interval of some width
    rows = json.loads((run / "split.json").read_text(encoding="utf-8"))["test"][::-1]
    test = write_csv(tmp_path / "test.csv", [texts[i] for i in rows], [labels[i] for i in rows])
    measured = ok(cli("evaluate", run, test, "--json")).json()["metrics"]
    assert measured["n"] == recorded["n"] == len(rows)
    assert measured["accuracy"] == pytest.approx(recorded["accuracy"])
    assert measured["accuracy_ci95"] == pytest.approx(recorded["accuracy_ci95"])


def test_evaluate_for_people(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]]) -> None:
    run, data, _ = bag_run
    result = ok(cli("evaluate", run, data))
    assert "120 scored" in result.out and "precision" in result.out
    matrix = cli("evaluate", run, data, "--json").json()["metrics"]["confusion_matrix"]
    lines = result.out.splitlines()
    start = lines.index("confusion (rows: true class, columns: predicted)")
    assert lines[start + 1].split()[-2:] == ["ham", "spam"]
    for line, row in zip(lines[start + 2 : start + 4], matrix):  # the table's counts are the --json matrix's
        assert [int(count) for count in line.split()[1:]] == row


# -- predict --------------------------------------------------------------------------------------


def test_predict_texts_json(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]]) -> None:
    run, _, _ = bag_run
    result = ok(cli("predict", run, "text one", "WIN a free prize now", "--json")).json()
    predictions = result["predictions"]
    assert [p["text"] for p in predictions] == ["text one", "WIN a free prize now"]
    for prediction in predictions:
        assert prediction["label"] in ("ham", "spam")
        assert set(prediction["probabilities"]) == {"ham", "spam"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)


def test_predict_texts_for_people(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]]) -> None:
    run, _, _ = bag_run
    result = ok(cli("predict", run, "see you at lunch"))
    assert "see you at lunch" in result.out and "p(spam)" in result.out


def test_predict_says_how_many_of_the_texts_given_are_empty(
    cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]]
) -> None:
    run, _, _ = bag_run
    result = ok(cli("predict", run, "see you at lunch", "", "   "))
    assert "2 of the 3 texts are empty" in result.out
    assert "empty" not in ok(cli("predict", run, "see you at lunch")).out
    assert ok(cli("predict", run, "", "hello", "--json")).json()["empty_texts"] == 1


def test_a_shortened_flag_is_refused_not_guessed(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]]) -> None:
    """argparse took --over for --overwrite (and would take --time for --timeout): a flag added later could change
    what an old command line means."""
    run, _, _ = bag_run
    result = cli("predict", run, "hello", "--jso")
    assert result.code == 2 and "unrecognized arguments: --jso" in result.err


def predict_input(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    texts, _ = make_texts(9, seed=21)
    texts = [texts[0], "", *texts[1:5], "   ", *texts[5:]]  # empty, and spaces only: both "empty"
    ids = [f"id-{i:02d}" for i in range(len(texts))]
    path = tmp_path / "input.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(zip(ids, texts))
    return path, texts, ids


def expected_labels(run: Path, texts: list[str]) -> list[str]:
    import ajuste

    return ajuste.load(run).predict(texts).labels


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".tsv"])
def test_predict_file_keeps_every_row_in_order(
    cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    run, _, _ = bag_run
    source, texts, ids = predict_input(tmp_path)
    output = tmp_path / f"out{suffix}"
    result = ok(cli("predict", run, "--input", source, "--output", output, "--json")).json()
    assert result["rows"] == len(texts) == 11 and result["empty_texts"] == 2
    assert result["output"] == str(output)
    if suffix == ".jsonl":
        rows = read_jsonl(output)
        assert [r["row"] for r in rows] == list(range(11))
    else:
        rows = read_csv(output, "\t" if suffix == ".tsv" else ",")
        assert list(rows[0]) == ["row", "id", "text", "label", "p_ham", "p_spam"]
        assert [int(r["row"]) for r in rows] == list(range(11))
    assert [r["id"] for r in rows] == ids
    assert [r["text"] or "" for r in rows] == texts  # empty texts are kept as rows
    assert [r["label"] for r in rows] == expected_labels(run, texts)
    for r in rows:
        assert float(r["p_ham"]) + float(r["p_spam"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(result["counts"].values()) == 11


def test_predict_jsonl_input_without_ids(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    run, _, _ = bag_run
    texts = ["free prize now", "", "see you tonight"]
    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    output = tmp_path / "out.csv"
    ok(cli("predict", run, "--input", source, "--output", output, "--quiet"))
    rows = read_csv(output)
    assert list(rows[0]) == ["row", "text", "label", "p_ham", "p_spam"]
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == expected_labels(run, texts)


def test_predict_text_lines_input(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    run, _, _ = bag_run
    source = tmp_path / "messages.txt"
    source.write_text("Free entry! Text WIN to 80086 now\nI will be home at 8\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = ok(cli("predict", run, "--input", source, "--output", output, "--json")).json()
    assert result["rows"] == 2
    assert [r["text"] for r in read_jsonl(output)] == ["Free entry! Text WIN to 80086 now", "I will be home at 8"]


def test_predict_file_to_json(cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    run, _, _ = bag_run
    source, texts, _ = predict_input(tmp_path)
    predictions = ok(cli("predict", run, "--input", source, "--json")).json()["predictions"]
    assert [p["text"] or "" for p in predictions] == texts
    assert [p["label"] for p in predictions] == expected_labels(run, texts)


def test_predict_refuses_to_replace_an_output_unless_overwrite(
    cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    run, _, _ = bag_run
    source, _, _ = predict_input(tmp_path)
    output = tmp_path / "out.csv"
    output.write_text("keep me\n", encoding="utf-8")
    refused = cli("predict", run, "--input", source, "--output", output)
    assert refused.code == 2 and "--overwrite" in refused.err
    assert output.read_text(encoding="utf-8") == "keep me\n"
    quiet = ok(cli("predict", run, "--input", source, "--output", output, "--overwrite", "-q"))
    assert quiet.out == ""
    assert len(read_csv(output)) == 11


def test_predict_never_writes_into_the_run_it_reads_nor_jsonl_under_a_json_name(
    cli: Cli, bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    run, _, _ = bag_run
    source, _, _ = predict_input(tmp_path)
    model = run / "model" / "config.json"
    before = model.read_bytes()
    for inside in (model, run / "model" / "predictions.csv"):
        refused = cli("predict", run, "--input", source, "--output", inside, "--overwrite")
        assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
        assert "inside the run folder" in refused.err and "outside it" in refused.err
    assert model.read_bytes() == before and not (run / "model" / "predictions.csv").exists()
    named = cli("predict", run, "--input", source, "--output", tmp_path / "out.json")
    assert named.code == 2 and "Name it out.jsonl" in named.err and not (tmp_path / "out.json").exists()


# -- datasets and help ----------------------------------------------------------------------------


def test_datasets(cli: Cli, sms_dir: Path) -> None:
    listed = ok(cli("datasets", "--data-dir", sms_dir, "--json")).json()["datasets"]
    assert [d["name"] for d in listed] == ["sms-spam"]
    sms = listed[0]
    assert sms["found"] == "data-dir" and Path(sms["path"]) == sms_dir / "sms_spam" / "SMSSpamCollection"
    assert sms["rows"] == 5574 and sms["defaults"] == {"balance": "undersample"}
    people = ok(cli("datasets", "--data-dir", sms_dir))
    assert "sms-spam" in people.out


def test_datasets_not_yet_downloaded(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AJUSTE_DATA_DIR", raising=False)
    monkeypatch.setenv("AJUSTE_CACHE_DIR", str(tmp_path / "cache"))
    result = ok(cli("datasets"))
    assert "sms-spam" in result.out and "not yet downloaded" in result.out
    assert not (tmp_path / "cache").exists()  # listing never downloads


def test_version(cli: Cli) -> None:
    import ajuste

    result = ok(cli("--version"))
    assert ajuste.__version__ in result.out


def test_python_dash_m_ajuste_is_the_command() -> None:
    """For an environment whose scripts folder is not on the PATH."""
    import subprocess
    import sys

    import ajuste

    done = subprocess.run([sys.executable, "-m", "ajuste", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"ajuste {ajuste.__version__}"
    done = subprocess.run([sys.executable, "-m", "ajuste", "trian"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "invalid choice: 'trian'" in done.stderr


@pytest.mark.parametrize("command", [(), ("train",), ("evaluate",), ("predict",), ("datasets",)])
def test_help(cli: Cli, command: tuple[str, ...]) -> None:
    result = ok(cli(*command, "--help"))
    assert result.out.startswith("usage: ajuste")
    for name in command:
        assert f"ajuste {name}" in result.out
    if not command:
        assert all(name in result.out for name in ("train", "evaluate", "predict", "datasets"))
    if command == ("train",):
        assert all(flag in result.out for flag in ("--data", "--model", "--epochs", "--config", "--trainable"))


def test_no_command_prints_help(cli: Cli) -> None:
    result = cli()
    assert result.code == 2 and "usage: ajuste" in result.out


def test_a_reader_that_stops_early_ends_the_command_quietly(bag_run: tuple[Path, Path, dict[str, Any]]) -> None:
    # `ajuste evaluate RUN DATA | head -1`: rich's broken-pipe handling exited 1, read as a failure, with nothing said
    import os
    import subprocess
    import sys

    run, data, _ = bag_run
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        code = "import sys; from ajuste.cli.main import main; sys.exit(main(sys.argv[1:]))"
        done = subprocess.run(
            [sys.executable, "-c", code, "evaluate", str(run), str(data)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 141  # 128 + SIGPIPE, as a Unix tool that the signal ended
    assert done.stderr == ""


@pytest.mark.parametrize("as_json", [True, False])
def test_a_large_output_cut_short_by_its_reader_is_not_a_success(
    bag_run: tuple[Path, Path, dict[str, Any]], tmp_path: Path, as_json: bool
) -> None:
    # `ajuste predict RUN --input big.csv --json | head -c 10` exited 0: one large write to a pipe returned after
    # the part the pipe took, and the rest was dropped without an error
    import subprocess
    import sys

    run, _, _ = bag_run
    texts = [f"message number {i} about a free prize, a meeting and the weather today" for i in range(3000)]
    source = write_csv(tmp_path / "many.csv", texts, ["ham"] * len(texts))
    code = "import sys; from ajuste.cli.main import main; sys.exit(main(sys.argv[1:]))"
    given = ["--input", str(source), "--json"] if as_json else texts  # the table of 3,000 rows, or its JSON
    reading = subprocess.Popen(
        [sys.executable, "-c", code, "predict", str(run), *given, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert reading.stdout is not None
    first = reading.stdout.read(10)
    reading.stdout.close()  # the reader stops, far from the end of the output
    assert reading.wait(timeout=120) == 141 and first
    whole = subprocess.run(
        [sys.executable, "-c", code, "predict", str(run), *given, "-q"], capture_output=True, timeout=120, check=True
    )
    assert len(whole.stdout) > 200_000, "more than a pipe holds"
    if as_json:
        assert len(json.loads(whole.stdout)["predictions"]) == 3000


def test_labels_texts_and_paths_that_look_like_markup_are_shown_as_they_are(cli: Cli, tmp_path: Path) -> None:
    # a label "[spam]" vanished from every table, and a label or text holding "[/]" stopped the command
    folder = tmp_path / "odd [spam] folder [bold]"
    folder.mkdir()
    texts = [f"win a [/] prize {i} [bold]" if i % 2 else f"see you at lunch {i}" for i in range(60)]
    labels = ["[spam]" if i % 2 else "[/]" for i in range(60)]
    data = write_csv(folder / "data.csv", texts, labels)
    run = folder / "run"
    trained = cli("train", "--data", data, "--model", "linear", "--out", run)
    assert trained.code == 0, trained.err
    assert "train classes [/]=" in trained.out and "[spam]=" in trained.out
    assert f"run folder {run}" in trained.out
    predicted = cli("predict", run, "[/] hello", "[bold]x[/bold] y")
    assert predicted.code == 0, predicted.err
    assert "p([spam])" in predicted.out and "[/] hello" in predicted.out and "[bold]x[/bold] y" in predicted.out
    evaluated = cli("evaluate", run, data)
    assert evaluated.code == 0, evaluated.err
    assert "\n[spam] " in evaluated.out and "\n[/] " in evaluated.out  # per class and confusion rows

"""``--val-data`` and ``--test-data``: splits given in their own files, with a leak check against training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]
TEXTS, LABELS = make_texts(150, seed=31)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A main file of 100 texts, and validation and test files of 25 each; 3 test texts also in the main file."""
    main_texts, main_labels = TEXTS[:100] + TEXTS[125:128], LABELS[:100] + LABELS[125:128]
    return {
        "main": write_csv(tmp_path / "main.csv", main_texts, main_labels),
        "val": write_csv(tmp_path / "val.csv", TEXTS[100:125], LABELS[100:125]),
        "test": write_csv(tmp_path / "test.csv", TEXTS[125:150], LABELS[125:150]),
    }


def train(cli: Cli, files: dict[str, Path], out: Path, *flags: str) -> dict:
    result = cli("train", "--data", files["main"], "--embed-dim", "8", "--epochs", "1", "--out", out, "--json", *flags)
    assert result.code == 0, result.err
    return result.json()


def test_both_splits_from_their_files_and_a_leak_removed_from_training(
    cli: Cli, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    summary = train(cli, files, out, "--val-data", str(files["val"]), "--test-data", str(files["test"]))
    data = summary["data"]
    assert (data["train"], data["val"], data["test"]) == (100, 25, 25)  # the 3 leaked texts left training
    assert data["removed_from_training_also_in_test"] == 3 and data["removed_from_training_also_in_val"] == 0
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert split["sources"] == {"train": str(files["main"]), "val": str(files["val"]), "test": str(files["test"])}
    assert split["test"] == list(range(25)) and split["val"] == list(range(25))  # rows of their own files
    record = yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))
    assert record["data"]["val_path"] == str(files["val"])
    assert record["record"]["data"]["leak_check"]["removed_from_training_also_in_test"] == 3
    assert record["record"]["test_accesses"][0]["texts"] == 25


def test_only_a_test_file_leaves_validation_to_the_split(cli: Cli, files: dict[str, Path], tmp_path: Path) -> None:
    summary = train(cli, files, tmp_path / "run", "--test-data", str(files["test"]))
    data = summary["data"]
    assert data["test"] == 25
    # 100 texts left: validation takes 0.1 / (0.7 + 0.1) of them, stratified
    assert (data["train"], data["val"]) == (88, 12)


def test_two_fractions_divide_the_main_data_between_train_and_the_split_not_given(
    cli: Cli, files: dict[str, Path], tmp_path: Path
) -> None:
    # 100 texts once the 3 leaked ones leave: with --test-data, 0.8,0.2 gives validation 20 of them
    tested = train(cli, files, tmp_path / "run", "--test-data", str(files["test"]), "--split", "0.8,0.2")["data"]
    assert (tested["train"], tested["val"], tested["test"]) == (80, 20, 25)
    # with --val-data, 0.9,0.1 gives the test split a tenth of the 103
    out = tmp_path / "run2"
    validated = train(cli, files, out, "--val-data", str(files["val"]), "--split", "0.9,0.1")["data"]
    assert (validated["train"], validated["val"], validated["test"]) == (93, 25, 10)
    record = yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))
    assert record["data"]["split"] == [0.9, 0.1]
    again = cli("train", "--config", out / "run.yaml", "--out", tmp_path / "again", "--json")  # the record reruns
    assert again.code == 0, again.err
    assert again.json()["data"]["test"] == 10


@pytest.mark.parametrize(
    ("given", "said"),
    [((), "no file gives a split. Give three, as in 0.7,0.1,0.2"), (("val", "test"), "Leave out --split")],
)
def test_two_fractions_need_exactly_one_split_file(
    cli: Cli, files: dict[str, Path], tmp_path: Path, given: tuple[str, ...], said: str
) -> None:
    flags = [f for name in given for f in (f"--{name}-data", str(files[name]))]
    result = cli("train", "--data", files["main"], "--split", "0.8,0.2", *flags, "--out", tmp_path / "run")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "two split fractions (0.8,0.2) are for train and the one split" in result.err and said in result.err
    assert not (tmp_path / "run").exists()


def test_a_label_that_training_never_sees_is_refused(cli: Cli, files: dict[str, Path], tmp_path: Path) -> None:
    odd = write_csv(tmp_path / "odd.csv", TEXTS[100:110], ["weather"] * 10)
    result = cli("train", "--data", files["main"], "--val-data", odd, "--out", tmp_path / "run")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "labels that training never sees" in result.err and "weather" in result.err
    assert not (tmp_path / "run").exists()


def test_tune_takes_the_given_splits(cli: Cli, files: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump({"space": {"model.embed_dim": [8, 16], "train.epochs": 1}}), encoding="utf-8")
    result = cli(
        "tune", "--data", files["main"], "--model", "bag", "--config", config, "--trials", "2",
        "--val-data", files["val"], "--test-data", files["test"], "--out", tmp_path / "tune", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.json()["data"]["test"] == 25 and result.json()["data"]["val"] == 25


def test_validation_texts_also_in_the_test_file_leave_validation(
    cli: Cli, files: dict[str, Path], tmp_path: Path
) -> None:
    # choosing on texts the test also scores would be choosing on the test: they leave validation, test stays whole
    val = write_csv(tmp_path / "val5.csv", TEXTS[100:120] + TEXTS[130:135], LABELS[100:120] + LABELS[130:135])
    out = tmp_path / "run"
    summary = train(cli, files, out, "--val-data", str(val), "--test-data", str(files["test"]))
    data = summary["data"]
    assert (data["val"], data["test"]) == (20, 25)
    assert data["removed_from_val_also_in_test"] == 5
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert split["val"] == list(range(20)) and split["test"] == list(range(25))  # rows of their own files
    shown = cli(
        "train",
        "--data",
        files["main"],
        "--embed-dim",
        "8",
        "--epochs",
        "1",
        "--out",
        tmp_path / "shown",
        "--val-data",
        str(val),
        "--test-data",
        str(files["test"]),
    )
    assert shown.code == 0 and "5 removed from it, also in the test file" in shown.out


@pytest.mark.parametrize("command", ["train", "tune"])
def test_one_file_for_validation_and_test_is_refused(
    cli: Cli, files: dict[str, Path], tmp_path: Path, command: str
) -> None:
    out = tmp_path / "run"
    flags = ("--val-data", files["test"], "--test-data", files["test"], "--model", "bag", "--epochs", "1")
    result = cli(
        command, "--data", files["main"], *flags, "--out", out, *(("--trials", "1") if command == "tune" else ())
    )
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "every validation text is also in the test file, so the model would be chosen on its test" in line
    assert "leave out --val-data" in line
    assert not out.exists()

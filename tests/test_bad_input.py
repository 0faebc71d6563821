"""Bad input through the command line: exit code 2, one line on stderr that says how to fix it, nothing written.

Every case is its own test. Each checks the exit code, that stderr holds exactly one non-empty line, that
no traceback shows anywhere, what the message names, and that no run folder (not even a hidden partial
one) appears at the --out path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import ajuste
from ajuste.cli.main import main
from tests.conftest import CliResult, deny_reading, make_texts, write_csv, write_jsonl

Cli = Callable[..., CliResult]
TINY_BAG = ("--model", "bag", "--epochs", "1", "--embed-dim", "8", "--buckets", "64")


def user_error(result: CliResult) -> str:
    """The one error line of a run that failed for a reason the user can fix."""
    assert result.code == 2, f"exit code {result.code}, stderr: {result.err!r}"
    assert "Traceback" not in result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


def assert_nothing_written(target: Path) -> None:
    assert not target.exists(), f"{target} was written"
    beside = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")]
    assert beside == [], f"partial folders left beside {target}: {beside}"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Where a run folder would go; its parent exists, so leftovers beside it can be seen."""
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder / "run"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bag run trained once, as `ajuste train --data FILE --model bag --epochs 1 --out DIR -q` does."""
    folder = tmp_path_factory.mktemp("trained")
    texts, labels = make_texts(60)
    data = write_csv(folder / "train.csv", texts, labels)
    run = folder / "run"
    assert main(["train", "--data", str(data), *TINY_BAG, "--out", str(run), "-q"]) == 0
    return run


def write_rows(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def config_error(cli: Cli, command: str, out: Path, yaml_text: str) -> str:
    """The one error line of ``command`` run with a config file holding ``yaml_text`` (written beside ``out``)."""
    config = out.parent / "config.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    return user_error(cli(command, "--config", str(config), "--out", str(out)))


# -- the data file -------------------------------------------------------------------------------


def test_missing_data_file(cli: Cli, tmp_path: Path, out: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    message = user_error(cli("train", "--data", missing, "--out", out))
    assert f"data file {missing} does not exist" in message
    assert "Check the path" in message
    assert_nothing_written(out)


def test_data_path_is_a_folder(cli: Cli, tmp_path: Path, out: Path) -> None:
    folder = tmp_path / "data.csv"
    folder.mkdir()
    message = user_error(cli("train", "--data", folder, "--out", out))
    assert "is a folder" in message
    assert_nothing_written(out)


def test_data_file_without_read_permission(
    cli: Cli, csv_file: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny_reading(csv_file, monkeypatch)
    message = user_error(cli("train", "--data", csv_file, "--out", out))
    assert f"cannot read {csv_file}" in message
    assert "expected a file this user may read, found permission denied" in message
    assert "chmod u+r" in message
    assert_nothing_written(out)


def test_a_text_longer_than_the_csv_field_limit_is_data(cli: Cli, tmp_path: Path, out: Path) -> None:
    """Python's csv refuses fields over 128 KB unless told otherwise; a long document is no quoting error."""
    texts, labels = make_texts(60)
    texts[7] = "win cash prize " * 14_000  # 210 KB in one field
    path = write_csv(tmp_path / "long.csv", texts, labels)
    result = cli("train", "--data", path, *TINY_BAG, "--out", out, "-q", "--json")
    assert result.code == 0, result.err
    assert result.json()["data"]["rows_read"] == 60


@pytest.fixture
def latin1_file(tmp_path: Path) -> Path:
    texts, labels = make_texts(40)
    texts[5] = "rendez-vous au café à midi"
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\n" + "".join(f"{t},{lab}\n" for t, lab in zip(texts, labels)).encode("latin-1"))
    return path


def test_undecodable_text_names_the_encoding_and_suggests_the_flag(cli: Cli, latin1_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", latin1_file, "--out", out))
    assert "is not valid utf-8" in message
    assert "byte 0xe9 at line 7" in message
    assert "--encoding latin-1" in message
    assert_nothing_written(out)


def test_the_suggested_encoding_then_works(cli: Cli, latin1_file: Path, out: Path) -> None:
    result = cli("train", "--data", latin1_file, "--encoding", "latin-1", *TINY_BAG, "--out", out, "-q", "--json")
    assert result.code == 0, result.err
    assert result.json()["data"]["rows_read"] == 40
    assert (out / "model").is_dir()


def test_unknown_encoding_name(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--encoding", "latin-9000", "--out", out))
    assert "unknown text encoding 'latin-9000'" in message
    assert_nothing_written(out)


def test_missing_text_column_lists_columns_and_suggests(cli: Cli, tmp_path: Path, out: Path) -> None:
    path = write_rows(tmp_path / "data.csv", "id,sentense,label", [f"{i},hello {i},ham" for i in range(20)])
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "cannot tell which column" in message
    assert "holds the texts" in message
    assert "found columns id, sentense, label" in message
    assert "--text-col 'sentense'" in message
    assert_nothing_written(out)


def test_missing_label_column_lists_columns_and_suggests(cli: Cli, tmp_path: Path, out: Path) -> None:
    path = write_rows(tmp_path / "data.csv", "id,text,labl", [f"{i},hello {i},ham" for i in range(20)])
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "holds the labels" in message
    assert "found columns id, text, labl" in message
    assert "--label-col 'labl'" in message
    assert_nothing_written(out)


def test_label_col_flag_naming_an_absent_column(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--label-col", "lable", "--out", out))
    assert "label column 'lable' not in" in message
    assert "found columns text, label" in message
    assert "Did you mean 'label'?" in message
    assert_nothing_written(out)


@pytest.mark.parametrize("flags", [("--text-col", "text"), ("--label-col", "label"), ("--text-col", "body")])
def test_a_column_named_for_label_tab_text_lines_is_refused(
    cli: Cli, tmp_path: Path, out: Path, flags: tuple[str, str]
) -> None:
    # a lines file's columns are ajuste's own names: "--text-col text" was accepted and did nothing
    texts, labels = make_texts(40)
    path = tmp_path / "data.txt"
    path.write_text("".join(f"{y}\t{t}\n" for t, y in zip(texts, labels)), encoding="utf-8")
    message = user_error(cli("train", "--data", path, *flags, "--out", out))
    assert "holds label<TAB>text lines, with no named columns" in message and f"{flags[0]} '{flags[1]}'" in message
    assert_nothing_written(out)


def test_a_column_named_for_a_file_of_texts_to_predict_is_refused(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    lines = tmp_path / "texts.txt"
    lines.write_text("free prize now\nsee you at 8\n", encoding="utf-8")
    predictions = tmp_path / "p.csv"
    message = user_error(cli("predict", trained_run, "--input", lines, "--text-col", "text", "--output", predictions))
    assert "holds one text per line, with no columns" in message and not predictions.exists()


def test_a_column_named_for_a_built_in_dataset_is_refused(cli: Cli, sms_dir: Path, out: Path) -> None:
    given = ("--dataset", "sms-spam", "--data-dir", sms_dir, "--label-col", "v1", "--out", out)
    message = user_error(cli("train", *given))
    assert "the built-in dataset sms-spam has its own texts and labels" in message and "--label-col" in message
    assert_nothing_written(out)


@pytest.mark.parametrize("command", ["train", "tune"])
def test_an_empty_model_name_is_named_as_such(cli: Cli, csv_file: Path, out: Path, command: str) -> None:
    # it read as a checkpoint with no path: "family 'pretrained' needs a checkpoint folder or hub id"
    message = user_error(cli(command, "--data", csv_file, "--model", "", "--out", out))
    assert "--model names no model: found ''" in message and "pretrained" not in message
    assert_nothing_written(out)


def test_empty_file(cli: Cli, tmp_path: Path, out: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "holds no data rows" in message
    assert "expected at least one labelled text, found an empty file" in message
    assert_nothing_written(out)


def test_empty_lines_file_is_an_empty_file(cli: Cli, tmp_path: Path, out: Path) -> None:
    # label<TAB>text lines have no header: "column names only (label, text)" named ajuste's own names
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    assert "found an empty file" in user_error(cli("train", "--data", path, "--out", out))
    assert_nothing_written(out)


def test_header_only_file(cli: Cli, tmp_path: Path, out: Path) -> None:
    path = write_rows(tmp_path / "header.csv", "text,label", [])
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "holds no data rows" in message and "found column names only (text, label)" in message
    assert_nothing_written(out)


def test_nothing_left_after_cleaning(cli: Cli, tmp_path: Path, out: Path) -> None:
    path = write_rows(tmp_path / "blank.csv", "text,label", ["   ,ham", ",spam", "a text,", "another, "])
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "no labelled text left" in message
    assert "4 rows, of which 2 without text and 2 without label" in message
    assert "--text-col" in message
    assert_nothing_written(out)


def test_a_single_class(cli: Cli, tmp_path: Path, out: Path) -> None:
    texts, _ = make_texts(30)
    path = write_csv(tmp_path / "one.csv", texts, ["ham"] * 30)
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "at least two classes" in message
    assert "only 'ham' (30 texts)" in message
    assert_nothing_written(out)


def test_a_class_too_small_to_split(cli: Cli, tmp_path: Path, out: Path) -> None:
    texts, labels = make_texts(40)
    path = write_csv(tmp_path / "small.csv", [*texts, "odd one", "odd two"], [*labels, "rare", "rare"])
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "too small to split" in message
    assert "expected at least 3 texts per class" in message
    assert "'rare' (2)" in message
    assert_nothing_written(out)


def test_too_few_texts_for_every_split(cli: Cli, tmp_path: Path, out: Path) -> None:
    texts, labels = make_texts(9)
    path = write_csv(tmp_path / "nine.csv", texts, labels)
    message = user_error(cli("train", "--data", path, *TINY_BAG, "--out", out))
    assert "too few texts to split" in message
    assert "divide into 6/0/3" in message
    assert "--split" in message
    assert_nothing_written(out)


def test_malformed_jsonl_line_gives_its_number(cli: Cli, tmp_path: Path, out: Path) -> None:
    texts, labels = make_texts(20)
    path = write_jsonl(tmp_path / "data.jsonl", texts, labels)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[11] = '{"text": "cut short", "label": '
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "line 12 of" in message
    assert "is not valid JSON" in message
    assert_nothing_written(out)


def test_badly_quoted_csv(cli: Cli, tmp_path: Path, out: Path) -> None:
    texts, labels = make_texts(20)
    path = write_csv(tmp_path / "data.csv", texts, labels)
    path.write_text(path.read_text(encoding="utf-8") + '"never closed,ham\nlast,spam\n', encoding="utf-8")
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "not a valid CSV file" in message
    assert "starts at line 22" in message
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("name", "content", "given", "suggested"),
    [
        ("comma.csv", "review,stars\ngood,5\nbad,1\n", "tsv", "csv"),
        ("tabs.tsv", "review\tstars\ngood\t5\nbad\t1\n", "csv", "tsv"),
    ],
)
def test_a_file_read_in_another_format_says_which_it_looks(
    cli: Cli, tmp_path: Path, out: Path, name: str, content: str, given: str, suggested: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    message = user_error(cli("train", "--data", path, "--format", given, "--out", out))
    assert f"reads as {given.upper()} into one column named" in message
    assert f"The file looks {suggested.upper()}: pass --format {suggested}." in message
    assert_nothing_written(out)


def test_unknown_format_extension(cli: Cli, tmp_path: Path, out: Path) -> None:
    path = tmp_path / "data.xml"
    path.write_bytes(b"<rows/>")
    message = user_error(cli("train", "--data", path, "--out", out))
    assert "--format" in message
    assert_nothing_written(out)


# -- the data source -----------------------------------------------------------------------------


def test_unknown_dataset_name(cli: Cli, out: Path) -> None:
    message = user_error(cli("train", "--dataset", "sms-spma", "--out", out))
    assert "unknown dataset 'sms-spma'" in message
    assert "one of sms-spam" in message
    assert "ajuste datasets" in message
    assert_nothing_written(out)


def test_dataset_missing_from_the_data_dir(cli: Cli, tmp_path: Path, out: Path) -> None:
    empty = tmp_path / "datasets"
    empty.mkdir()
    message = user_error(cli("train", "--dataset", "sms-spam", "--data-dir", empty, "--out", out))
    assert f"{empty / 'sms_spam' / 'SMSSpamCollection'}" in message
    assert_nothing_written(out)


def test_both_data_sources(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--dataset", "sms-spam", "--data", csv_file, "--out", out))
    assert "both --dataset and --data" in message
    assert_nothing_written(out)


def test_no_data_source(cli: Cli, out: Path) -> None:
    message = user_error(cli("train", "--out", out))
    assert "--dataset NAME" in message
    assert "--data FILE" in message
    assert_nothing_written(out)


# -- the model -----------------------------------------------------------------------------------


def test_unknown_model_name(cli: Cli, csv_file: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # tests never reach for the hub
    message = user_error(cli("train", "--data", csv_file, "--model", "nonexistent-model-xyz", "--out", out))
    assert "unknown model 'nonexistent-model-xyz'" in message
    assert "expected a model family (see `ajuste train --help`), a checkpoint folder" in message
    assert_nothing_written(out)


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_hub_id_when_the_hub_cannot_be_reached(
    cli: Cli, csv_file: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the hub on loopback, where nothing listens: the id is looked up in the local hub cache only and the message
    # says why, rather than after the client's retries (which would end in its own connection message)
    port = _closed_port()
    _hub_at(monkeypatch, f"http://127.0.0.1:{port}")
    message = user_error(cli("train", "--data", csv_file, "--model", "someone/tiny-bert", "--out", out))
    assert "unknown model 'someone/tiny-bert'" in message
    assert f"not in the local hub cache, and the hub (127.0.0.1:{port}) cannot be reached" in message
    assert_nothing_written(out)


def test_hub_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from ajuste.models.pretrained import hub_unreachable

    port = _closed_port()
    _hub_at(monkeypatch, f"http://127.0.0.1:{port}")
    assert hub_unreachable() == f"127.0.0.1:{port}"
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")  # behind a proxy the client goes through it: no probe
    assert hub_unreachable() is None
    monkeypatch.delenv("HTTPS_PROXY")
    with socket.socket() as server:  # something listens: reachable
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        _hub_at(monkeypatch, f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_unreachable() is None


def test_build_refuses_an_unknown_model_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    import ajuste
    from ajuste.errors import ModelError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # tests never reach for the hub
    with pytest.raises(ModelError, match="unknown model 'nonexistent-model-xyz'"):
        ajuste.build("nonexistent-model-xyz")  # in build, as its docstring says, not in fit


def test_tune_refuses_an_unknown_model_before_the_search(
    cli: Cli, csv_file: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # tests never reach for the hub
    message = user_error(
        cli("tune", "--data", csv_file, "--model", "nonexistent-model-xyz", "--trials", "3", "--out", out)
    )
    assert "unknown model 'nonexistent-model-xyz'" in message and "first error" not in message
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("storage", "said"),
    [
        ("foo://x", "unsupported --storage: expected journal:FILE, or postgresql+psycopg://"),
        ("journal:", "--storage journal: needs a file. Give --storage journal:PATH/study.log."),
    ],
)
def test_tune_with_a_storage_it_cannot_use(cli: Cli, csv_file: Path, out: Path, storage: str, said: str) -> None:
    # the storage is checked inside the settings' validation: its own message, not pydantic's wrapping of it
    message = user_error(cli("tune", "--data", csv_file, "--storage", storage, "--trials", "1", "--out", out))
    assert message.startswith(f"error: {said}"), message
    assert "invalid settings" not in message and ", got " not in message
    assert_nothing_written(out)


def test_tune_model_flag_and_a_space_with_families(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    config = tmp_path / "search.yaml"
    config.write_text("space:\n  model.family: [bag, gpt]\n", encoding="utf-8")
    for model in ("linear", "bag"):  # outside the space's families, or narrowing them: either is one of two choices
        message = user_error(
            cli("tune", "--data", csv_file, "--config", config, "--model", model, "--trials", "1", "--out", out)
        )
        assert "--model and the config's space both choose the families to search" in message
        assert f"--model {model} and space model.family ['bag', 'gpt']" in message
    assert_nothing_written(out)


def test_missing_checkpoint_folder(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    missing = tmp_path / "checkpoints" / "tiny"
    message = user_error(cli("train", "--data", csv_file, "--model", missing, "--out", out))
    assert str(missing) in message
    assert "checkpoint folder" in message
    assert_nothing_written(out)


def test_incomplete_checkpoint_folder(cli: Cli, csv_file: Path, tiny_bert: Path, tmp_path: Path, out: Path) -> None:
    checkpoint = tmp_path / "no-weights"
    shutil.copytree(tiny_bert, checkpoint, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    assert (checkpoint / "config.json").is_file()
    message = user_error(cli("train", "--data", csv_file, "--model", checkpoint, "--out", out))
    assert f"checkpoint folder {checkpoint} is incomplete" in message
    assert "config.json" in message  # what is there
    assert "missing weights" in message
    assert "save_pretrained" in message
    assert_nothing_written(out)


# -- settings and flags --------------------------------------------------------------------------


def test_several_bad_settings_in_one_message(cli: Cli, csv_file: Path, out: Path) -> None:
    args = ("--model", "gpt", "--emb-dim", "100", "--num-heads", "3", "--lr", "-1")
    message = user_error(cli("train", "--data", csv_file, *args, "--out", out))
    assert "--emb-dim must be a multiple of --num-heads" in message  # a check across settings: flags too
    assert "try --emb-dim=99" in message
    assert "--lr: must be > 0" in message  # named by the flag typed, not the setting it fills (train.lr)
    assert_nothing_written(out)


def test_a_check_across_settings_keeps_the_names_of_a_config_file(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  family: gpt\n  max_length: 300\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", tmp_path / "run"))
    assert "max_length (300) cannot exceed context_length (256)" in message  # what the file says
    message = user_error(
        cli("train", "--data", csv_file, "--model", "gpt", "--max-length", "300", "--out", tmp_path / "b")
    )
    assert "--max-length (300) cannot exceed --context-length (256)" in message


def test_flag_for_another_family(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--model", "bag", "--num-layers", "2", "--out", out))
    assert "--num-layers applies to --model gpt only, not bag" in message
    assert_nothing_written(out)


def test_split_fractions_that_do_not_sum_to_one(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--split", "0.7,0.2,0.2", "--out", out))
    assert "--split: fractions must sum to 1" in message
    assert "sum 1.1" in message
    assert_nothing_written(out)


def test_argparse_bad_int(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--epochs", "three", "--out", out))
    assert "argument --epochs: invalid int value: 'three'" in message
    assert "--help" in message
    assert_nothing_written(out)


def test_argparse_bad_choice(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--balance", "smote", "--out", out))
    assert "argument --balance: invalid choice: 'smote'" in message
    assert_nothing_written(out)


def test_argparse_value_starting_with_a_dash(cli: Cli, csv_file: Path, out: Path) -> None:
    # argparse reads "-1m" as an option, so the flag looks empty: the message says so and how to write it
    message = user_error(cli("tune", "--data", csv_file, "--timeout", "-1m", "--out", out))
    assert "argument --timeout: expected one argument" in message
    assert "write --timeout=-1m" in message
    # written that way, the value is read and refused for what it is
    message = user_error(cli("tune", "--data", csv_file, "--timeout=-1m", "--out", out))
    assert "--timeout: expected a duration such as 90s, 10m or 1h, got '-1m'" in message
    # a flag that is truly missing its value gets no such hint
    assert "write" not in user_error(cli("train", "--data", csv_file, "--out", out, "--lr"))
    assert_nothing_written(out)


def test_argparse_bad_split(cli: Cli, csv_file: Path, out: Path) -> None:
    message = user_error(cli("train", "--data", csv_file, "--split", "0.6,0.2,0.1,0.1", "--out", out))
    assert (
        "expected three fractions like 0.7,0.1,0.2 (or two, like 0.8,0.2, with --val-data or --test-data), got"
        in message
    )
    assert_nothing_written(out)


def test_an_option_the_command_does_not_take_points_at_that_command_s_help(cli: Cli, csv_file: Path) -> None:
    message = user_error(cli("evaluate", "somewhere", csv_file, "--epochs", "3"))
    assert "unrecognized arguments: --epochs 3" in message
    assert "Run `ajuste evaluate --help` for the options" in message


def test_unknown_subcommand(cli: Cli) -> None:
    assert "invalid choice: 'trian'" in user_error(cli("trian"))


def test_config_file_that_is_not_yaml(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: {family: bag\ntrain: [\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert "is not valid YAML" in message and "at line 2, column" in message  # what and where
    assert_nothing_written(out)


def test_a_tab_in_a_config_file_is_named(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model:\n\tfamily: bag\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert "found character '\\t' that cannot start any token at line 2, column 1" in message
    assert "YAML indents with spaces, not tabs" in message
    assert_nothing_written(out)


def test_a_key_given_twice_in_a_config_file_is_named(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    # YAML keeps the last silently: the second train section replaced the first without a word
    config = tmp_path / "run.yaml"
    config.write_text("train: {epochs: 1}\nmodel: {family: bag}\ntrain: {epochs: 3}\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert "found the key 'train' twice in one mapping (YAML would keep the last) at line 3, column 1" in message
    config.write_text("model: {family: bag, embed_dim: 8, embed_dim: 16}\n", encoding="utf-8")
    assert "the key 'embed_dim' twice" in user_error(cli("train", "--data", csv_file, "--config", config))
    # a merge (<<) still reads, and a key of the mapping may override one that it brings
    config.write_text("base: &b {family: gpt}\nmodel: {<<: *b, family: bag}\n", encoding="utf-8")
    assert "base: unknown setting" in user_error(cli("train", "--data", csv_file, "--config", config))
    assert_nothing_written(out)


def test_config_file_with_a_bad_section(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: bag\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert "section 'model'" in message
    assert "must be a mapping" in message
    assert_nothing_written(out)


def test_config_file_with_several_problems(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  family: bag\n  embed_dm: 8\ntrain:\n  epochs: 0\nsede: 3\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert "did you mean 'embed_dim'?" in message
    assert "train.epochs: must be >= 1" in message
    assert "did you mean 'seed'?" in message
    assert_nothing_written(out)


@pytest.mark.parametrize("fractions", ["nan,0.5,0.5", "0.5,inf,0.5", "0.7,0.3,-inf"])
def test_split_fractions_that_are_not_finite(cli: Cli, csv_file: Path, out: Path, fractions: str) -> None:
    message = user_error(cli("train", "--data", csv_file, "--split", fractions, "--out", out))
    assert "argument --split: expected three fractions like 0.7,0.1,0.2 (or two" in message
    assert "each a finite number > 0" in message
    assert f"got '{fractions}'" in message
    assert "--help" in message
    assert_nothing_written(out)


def test_split_fraction_nan_in_a_config_file(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  split: [.nan, 0.5, 0.5]\n", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert "data.split: every fraction must be a finite number > 0 (as in 0.7,0.1,0.2), got nan,0.5,0.5" in message
    assert "sum" not in message  # named for what it is, not as fractions that fail to add up
    assert_nothing_written(out)


def test_config_path_that_is_a_run_folder_points_at_its_run_yaml(
    cli: Cli, csv_file: Path, trained_run: Path, out: Path
) -> None:
    message = user_error(cli("train", "--data", csv_file, "--config", trained_run, "--out", out))
    assert f"config path {trained_run} is a folder" in message
    assert "expected a YAML file, found a folder holding run.yaml" in message
    assert f"Pass --config {trained_run / 'run.yaml'}" in message
    assert_nothing_written(out)
    followed = cli("train", "--data", csv_file, "--config", trained_run / "run.yaml", *TINY_BAG, "--out", out, "-q")
    assert followed.code == 0, followed.err  # the fix it gives works


def test_config_path_that_is_a_folder_without_run_yaml(cli: Cli, csv_file: Path, tmp_path: Path, out: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    message = user_error(cli("train", "--data", csv_file, "--config", folder, "--out", out))
    assert f"config path {folder} is a folder" in message
    assert "expected a YAML file, found a folder." in message
    assert "Point --config at a YAML file" in message
    assert_nothing_written(out)


def test_config_file_without_read_permission(
    cli: Cli, csv_file: Path, tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("seed: 3\n", encoding="utf-8")
    deny_reading(config, monkeypatch)
    message = user_error(cli("train", "--data", csv_file, "--config", config, "--out", out))
    assert f"cannot read config file {config}" in message
    assert "expected a file this user may read, found permission denied" in message
    assert "chmod u+r" in message
    assert_nothing_written(out)


def test_out_exists_without_overwrite(cli: Cli, csv_file: Path, out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    message = user_error(cli("train", "--data", csv_file, *TINY_BAG, "--out", out))
    assert f"the output folder {out} already exists" in message
    assert "--overwrite" in message
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert [p.name for p in out.parent.iterdir()] == ["run"]


# -- predict and evaluate ------------------------------------------------------------------------


def test_predict_with_a_missing_run_folder(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "no-run"
    message = user_error(cli("predict", missing, "hello there"))
    assert f"run folder {missing} does not exist" in message
    assert "ajuste train" in message


def test_evaluate_with_a_missing_run_folder(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-run"
    assert f"run folder {missing} does not exist" in user_error(cli("evaluate", missing, csv_file))


def test_evaluate_data_that_is_neither_a_file_nor_a_dataset(cli: Cli, trained_run: Path) -> None:
    message = user_error(cli("evaluate", str(trained_run), "sms-spm"))
    assert "DATA sms-spm is neither a data file nor a built-in dataset" in message
    assert "Did you mean sms-spam?" in message
    assert "--dataset" not in message, "evaluate takes the dataset as DATA, not with --dataset"


def test_evaluate_with_no_data_or_data_twice(cli: Cli, trained_run: Path, csv_file: Path) -> None:
    message = user_error(cli("evaluate", str(trained_run)))
    assert "evaluate needs one source of labelled texts" in message
    assert "found none" in message and f"ajuste evaluate {trained_run} FILE" in message
    message = user_error(cli("evaluate", str(trained_run), str(csv_file), "--dataset", "sms-spam"))
    assert f"found DATA {csv_file} and --dataset sms-spam" in message and "Keep one of them" in message


def test_evaluate_with_a_data_flag_naming_nothing(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    message = user_error(cli("evaluate", str(trained_run), "--dataset", "sms-spm"))
    assert "--dataset sms-spm is not a built-in dataset" in message and "Did you mean sms-spam?" in message
    missing = tmp_path / "missing.csv"
    assert f"--data {missing} does not exist" in user_error(cli("evaluate", str(trained_run), "--data", missing))


@pytest.fixture
def incomplete_run(trained_run: Path, tmp_path: Path) -> Path:
    """A run folder whose model/ has its config.json but lost its weights."""
    run = tmp_path / "incomplete"
    (run / "model").mkdir(parents=True)
    shutil.copy(trained_run / "model" / "config.json", run / "model" / "config.json")
    assert json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))["format"] == "ajuste-model"
    return run


def test_a_model_config_naming_a_class_twice_is_damaged(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    """A hand-edited config.json with a label twice loaded, and the second column could never be an answer."""
    run = tmp_path / "edited"
    shutil.copytree(trained_run, run)
    config_file = run / "model" / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["labels"] = [config["labels"][0]] * len(config["labels"])
    config_file.write_text(json.dumps(config), encoding="utf-8")
    message = user_error(cli("predict", run, "hello"))
    assert "config.json is damaged" in message and "at least two labels, each once" in message


@pytest.mark.parametrize("runtime", ["pytorch", "onnx"])
def test_a_model_config_naming_more_labels_than_the_weights_score_is_damaged(
    cli: Cli, csv_file: Path, tmp_path: Path, runtime: str
) -> None:
    """A linear run (or its export) whose config.json gained a label answered with a column of blanks, its
    probabilities put under the wrong names."""
    run = tmp_path / "linear"
    assert cli("train", "--data", csv_file, "--model", "linear", "--out", run, "-q").code == 0
    if runtime == "onnx":
        assert cli("export", run, "--out", tmp_path / "exported", "-q").code == 0
        run = tmp_path / "exported"
    config_file = run / "model" / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["labels"] = [*config["labels"], "another"]
    config_file.write_text(json.dumps(config), encoding="utf-8")
    message = user_error(cli("predict", run, "hello"))
    if runtime == "onnx":
        assert "gives 2 scores a text, and its config.json names 3 labels" in message
        assert message.endswith("Export the run again with `ajuste export`.")
    else:
        assert "2 score columns do not match the 3 labels" in message and "train again" in message


def test_predict_with_an_incomplete_run_folder(cli: Cli, incomplete_run: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\nwin a prize\n", encoding="utf-8")
    output = tmp_path / "predictions.csv"
    message = user_error(cli("predict", incomplete_run, "--input", texts, "--output", output))
    assert "is incomplete" in message
    assert "model.safetensors" in message
    assert "Train again" in message
    assert_nothing_written(output)


def test_evaluate_with_an_incomplete_run_folder(cli: Cli, incomplete_run: Path, csv_file: Path) -> None:
    message = user_error(cli("evaluate", incomplete_run, csv_file))
    assert "is incomplete" in message
    assert "model.safetensors" in message


def test_evaluate_with_a_folder_that_is_not_a_run(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "random"
    folder.mkdir()
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    message = user_error(cli("evaluate", folder, csv_file))
    assert "is not a complete run folder" in message
    assert "found notes.txt" in message


def test_predict_and_evaluate_read_a_model_folder_that_save_wrote(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    """A model saved from Python was 'not a complete run folder' to the commands; export still needs a run."""
    saved = tmp_path / "saved"
    ajuste.load(trained_run).save(saved)
    texts, labels = make_texts(20, seed=4)
    path = write_csv(tmp_path / "new.csv", texts, labels)
    run = json.loads(cli("evaluate", trained_run, path, "--json").out)
    alone = json.loads(cli("evaluate", saved, path, "--json").out)
    assert alone["metrics"]["accuracy"] == run["metrics"]["accuracy"] and alone["data"]["seen"] is None
    predicted = [json.loads(cli("predict", folder, *texts[:3], "--json").out) for folder in (saved, trained_run)]
    assert predicted[0]["predictions"] == predicted[1]["predictions"]
    assert run["data"]["seen"] == json.loads(cli("evaluate", trained_run / "model", path, "--json").out)["data"]["seen"]
    message = user_error(cli("export", saved, "--out", tmp_path / "x"))
    assert "is a model folder, not a run folder" in message and "this needs the run folder" in message


def test_evaluate_with_labels_the_model_never_saw(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    texts, labels = make_texts(20)
    path = write_csv(tmp_path / "new.csv", texts, ["maybe" if i % 4 == 0 else lab for i, lab in enumerate(labels)])
    message = user_error(cli("evaluate", trained_run, path))
    assert "labels the model never saw" in message
    assert "expected labels among 'ham', 'spam'" in message
    assert "found 'maybe'" in message


def test_evaluate_with_nothing_left_after_cleaning(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "blank.csv", "text,label", [" ,ham", "no label,"])
    message = user_error(cli("evaluate", trained_run, path))
    assert "no labelled text to evaluate" in message
    assert "2 rows, of which 1 without text and 1 without label" in message


def test_evaluate_with_a_malformed_file(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "hi", "label": "ham"}\nnot json\n', encoding="utf-8")
    assert "line 2 of" in user_error(cli("evaluate", trained_run, path))


def test_predict_input_that_does_not_exist(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.csv"
    message = user_error(cli("predict", trained_run, "--input", tmp_path / "none.txt", "--output", output))
    assert "does not exist" in message
    assert_nothing_written(output)


def test_predict_output_exists_without_overwrite(cli: Cli, trained_run: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n", encoding="utf-8")
    output = tmp_path / "predictions.csv"
    output.write_text("old", encoding="utf-8")
    message = user_error(cli("predict", trained_run, "--input", texts, "--output", output))
    assert "already exists" in message
    assert "--overwrite" in message
    assert output.read_text(encoding="utf-8") == "old"


def test_predict_bad_int(cli: Cli, trained_run: Path) -> None:
    assert "invalid int value" in user_error(cli("predict", trained_run, "hi", "--batch-size", "x"))


def test_predict_with_nothing_to_predict(cli: Cli, trained_run: Path) -> None:
    assert "nothing to predict" in user_error(cli("predict", trained_run))


def test_trained_run_predicts(cli: Cli, trained_run: Path) -> None:
    """The fixture the cases above rely on is a working run: their errors come from the input alone."""
    result = cli("predict", trained_run, "win a free prize", "see you at lunch", "--json")
    assert result.code == 0, result.err
    assert len(result.json()["predictions"]) == 2


# -- where predictions go ------------------------------------------------------------------------


@pytest.fixture
def texts_file(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("hello\nwin a prize\n", encoding="utf-8")
    return path


def test_predict_input_without_read_permission(
    cli: Cli, trained_run: Path, texts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "predictions.csv"
    deny_reading(texts_file, monkeypatch)
    message = user_error(cli("predict", trained_run, "--input", texts_file, "--output", output))
    assert f"cannot read {texts_file}" in message
    assert "expected a file this user may read, found permission denied" in message
    assert_nothing_written(output)


def test_predict_output_in_a_folder_that_does_not_exist(
    cli: Cli, trained_run: Path, texts_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "typo" / "predictions.csv"
    message = user_error(cli("predict", trained_run, "--input", texts_file, "--output", output))
    assert f"cannot write {output}" in message
    assert f"expected an --output inside an existing folder, found no folder {output.parent}" in message
    assert f"mkdir -p {output.parent}" in message
    assert not output.parent.exists()  # refused, not created


def test_an_existing_output_is_refused_before_the_run_folder_is_read(
    cli: Cli, texts_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "predictions.csv"
    output.write_text("old", encoding="utf-8")
    # the run folder does not even exist: the error about the output shows that it came first
    message = user_error(cli("predict", tmp_path / "no-run", "--input", texts_file, "--output", output))
    assert f"{output} already exists" in message
    assert "--overwrite" in message
    assert output.read_text(encoding="utf-8") == "old"


def deny_writing(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` refuse new files: for real where permissions bind, else (root writes anywhere)
    by answering the permission question as the system would for a folder without write permission."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(path)) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)


def test_predict_output_that_is_a_folder(cli: Cli, trained_run: Path, texts_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    message = user_error(cli("predict", trained_run, "--input", texts_file, "--output", folder))
    assert f"cannot write {folder}: expected a file name for --output, found a folder" in message
    assert f"such as {folder / 'predictions.csv'}" in message
    assert list(folder.iterdir()) == []


def test_predict_output_in_a_folder_without_write_permission(
    cli: Cli, trained_run: Path, texts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    output = folder / "predictions.csv"
    deny_writing(folder, monkeypatch)
    message = user_error(cli("predict", trained_run, "--input", texts_file, "--output", output))
    assert f"cannot write {output}" in message
    assert "found permission denied" in message
    assert "Choose an --output in a folder you own" in message
    assert list(folder.iterdir()) == []


def test_a_write_refused_while_predicting_is_one_line_and_leaves_nothing(
    cli: Cli, trained_run: Path, texts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder passes the early check, then refuses the file itself (an ACL, a read-only mount)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    output = folder / "predictions.jsonl"
    real = os.open

    def refusing_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(path)).parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    message = user_error(cli("predict", trained_run, "--input", texts_file, "--output", output))
    assert f"cannot write {output}" in message
    assert "found permission denied" in message
    assert list(folder.iterdir()) == []


def test_the_predictions_file_follows_the_umask(cli: Cli, trained_run: Path, texts_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.csv"
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        previous = os.umask(umask)
        try:
            result = cli("predict", trained_run, "--input", texts_file, "--output", output, "--overwrite")
        finally:
            os.umask(previous)
        assert result.code == 0, result.err
        assert stat.S_IMODE(output.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- models too large for this machine -----------------------------------------------------------


def forbid_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A safety net: should the memory check let a huge model through, the test fails (exit 1) instead
    of allocating hundreds of gigabytes."""
    import transformers

    from ajuste.models import bag

    def allocate(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the model was allocated")

    monkeypatch.setattr(bag, "BagOfEmbeddings", allocate)
    monkeypatch.setattr(transformers, "GPT2Model", allocate)


def _too_large_here(gigabytes: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's memory as it reads it; on a machine with more than ``gigabytes`` available, 64 GB instead, so
    that the refusal is checked everywhere (not skipped)."""
    from ajuste.models import memory

    available = memory.available_memory()
    assert available is not None  # Linux: /proc/meminfo
    if available > gigabytes * 1e9:
        monkeypatch.setattr(memory, "available_memory", lambda: 64 * 10**9)


@pytest.mark.parametrize(
    ("flags", "smaller"),
    [
        (("--model", "bag", "--buckets", "10000000", "--embed-dim", "4096"), "Use a smaller --buckets or --embed-dim"),
        (
            ("--model", "gpt", "--emb-dim", "8192", "--num-layers", "48", "--vocab-size", "262144"),
            "Use a smaller --emb-dim, --num-layers or --vocab-size",
        ),
    ],
)
def test_a_model_too_large_for_memory_is_refused_before_building(
    cli: Cli, tmp_path: Path, out: Path, flags: tuple[str, ...], smaller: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _too_large_here(600, monkeypatch)  # both need over 600 GB to train
    forbid_allocation(monkeypatch)
    path = write_csv(tmp_path / "tiny.csv", *make_texts(30))
    message = user_error(cli("train", "--data", path, *flags, "--epochs", "1", "--out", out))
    assert f"a {flags[1]} model this large does not fit in memory" in message
    assert re.search(r"expected at most [0-9.]+ GB, the memory this machine has available", message)
    found = re.search(r"found about ([0-9]+) GB needed for the weights, gradients and optimizer state", message)
    assert found and int(found.group(1)) > 600
    assert smaller in message
    assert_nothing_written(out)


@pytest.mark.parametrize("family", ["bag", "gpt"])
def test_the_memory_estimate_counts_the_parameters_a_model_really_has(family: str) -> None:
    """The refusal above rests on this count: it is exact for the weights, checked on small models."""
    from ajuste.models.bag import BagFamily
    from ajuste.models.base import count_parameters
    from ajuste.models.gpt import GPTFamily
    from ajuste.models.settings import BagSettings, GPTSettings

    texts, _ = make_texts(40)
    if family == "bag":
        bag_settings = BagSettings(embed_dim=8, buckets=64)
        bag = BagFamily(bag_settings)
        bag.fit_preprocessing(texts)
        assert bag.vocabulary is not None
        module, estimate = bag.build(3), bag.parameter_count(3)
    else:
        gpt_settings = GPTSettings(num_layers=2, num_heads=2, emb_dim=32, context_length=64, vocab_size=300)
        gpt = GPTFamily(gpt_settings)
        gpt.fit_preprocessing(texts)
        module, estimate = gpt.build(3), gpt.parameter_count(3)
    assert count_parameters(module)[1] == estimate


@pytest.mark.parametrize(("seed", "says"), [("-5", "must be >= 0"), ("99999999999999999999999", "must be <=")])
@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_seed_out_of_range_is_one_line(cli: Cli, csv_file: Path, out: Path, command: str, seed: str, says: str):
    model = ("--model", "bag", "--epochs", "1", "--trials", "1") if command == "tune" else TINY_BAG
    said = user_error(cli(command, "--data", str(csv_file), *model, f"--seed={seed}", "--out", str(out)))
    assert "seed" in said and says in said
    assert_nothing_written(out)


def test_a_bag_s_numpy_prediction_refuses_a_batch_size_below_one(cli: Cli, trained_run: Path) -> None:
    assert "the batch size must be at least 1" in user_error(
        cli("predict", str(trained_run), "hi", "--batch-size", "0")
    )


def test_an_unlabeled_column_without_an_unlabeled_file_is_one_line(cli: Cli, trained_run: Path, out: Path) -> None:
    said = user_error(cli("distill", str(trained_run), "--epochs", "1", "--unlabeled-col", "text", "--out", str(out)))
    assert "--unlabeled-col names a column of the unlabeled file, and no unlabeled file is given" in said
    assert_nothing_written(out)


def test_a_damaged_idf_file_of_a_linear_run_is_one_line(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "linear"
    assert cli("train", "--data", str(csv_file), "--model", "linear", "--out", str(run)).code == 0
    (run / "model" / "idf.safetensors").write_bytes(b"")
    said = user_error(cli("predict", str(run), "hi"))
    assert "idf.safetensors is damaged" in said


def test_a_damaged_study_database_is_one_line(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "search"
    tune = ("tune", "--data", str(csv_file), "--model", "bag", "--epochs", "1", "--trials", "1", "--out", str(run))
    assert cli(*tune).code == 0
    (run / "study.db").write_bytes(b"garbage, not a database")
    for result in (cli("report", str(run)), cli(*tune)):
        said = user_error(result)
        assert "study.db is damaged" in said and "--overwrite" in said
    (run / "study.db").unlink()
    said = user_error(cli(*tune))
    assert "lost its study" in said and "study.db is missing" in said


@pytest.mark.parametrize("journal", ["missing/folder/j.log", "a-folder", "garbage.log"])
def test_a_journal_that_cannot_be_used_is_one_line_and_leaves_no_search(
    cli: Cli, csv_file: Path, tmp_path: Path, out: Path, journal: str
) -> None:
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "garbage.log").write_text("garbage\n", encoding="utf-8")
    storage = f"journal:{tmp_path / journal}"
    said = user_error(
        cli(
            "tune",
            "--data",
            str(csv_file),
            "--model",
            "bag",
            "--epochs",
            "1",
            "--trials",
            "1",
            "--storage",
            storage,
            "--out",
            str(out),
        )
    )
    assert "cannot use the journal file" in said
    assert_nothing_written(out)


def test_an_unknown_key_of_the_tune_section_lists_the_known_ones(cli: Cli, csv_file: Path, out: Path) -> None:
    said = config_error(cli, "tune", out, f"data: {{path: {csv_file}}}\ntune: {{trials: 1, bogus: 1}}\n")
    assert "tune.bogus: unknown setting; known: " in said and "trials" in said and "sampler" in said


def test_a_hub_id_one_typo_from_a_family_is_named_in_the_fix() -> None:
    from ajuste.models.pretrained import _near_family

    assert _near_family("bagg") == "bag" and _near_family("MiniLM") == "minilm"
    assert _near_family("nonesuch") is None


def test_a_validation_file_holding_every_training_text_is_one_line(cli: Cli, csv_file: Path, out: Path) -> None:
    said = user_error(cli("train", "--data", str(csv_file), "--val-data", str(csv_file), *TINY_BAG, "--out", str(out)))
    assert "every training text is also in the validation file" in said
    assert_nothing_written(out)


def test_a_misspelt_data_key_is_named_rather_than_no_data(cli: Cli, csv_file: Path, out: Path) -> None:
    said = config_error(cli, "train", out, f"data: {{pth: {csv_file}}}\nmodel: {{family: bag}}\n")
    assert "data.pth: unknown setting" in said and "'path'" in said


def test_a_csv_header_naming_a_column_twice_is_one_line(cli: Cli, tmp_path: Path, out: Path) -> None:
    data = tmp_path / "twice.csv"
    data.write_text("text,text,label\n" + "".join(f"a{i},b{i},{'xy'[i % 2]}\n" for i in range(20)), encoding="utf-8")
    said = user_error(cli("train", "--data", str(data), *TINY_BAG, "--out", str(out)))
    assert "names a column more than once" in said and "'text'" in said
    assert_nothing_written(out)


def test_a_flag_that_needs_distill_from_says_so_in_the_singular(cli: Cli, csv_file: Path, out: Path) -> None:
    said = user_error(cli("tune", "--data", str(csv_file), "--trials", "1", "--augment", "2", "--out", str(out)))
    assert "--augment needs --distill-from" in said


def test_a_search_refused_under_its_lock_leaves_no_folder(cli: Cli, tmp_path: Path, out: Path) -> None:
    empty = tmp_path / "header-only.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    user_error(cli("tune", "--data", str(empty), "--model", "bag", "--trials", "1", "--out", str(out)))
    assert_nothing_written(out)


def test_the_same_column_for_text_and_label_is_one_line(cli: Cli, csv_file: Path, out: Path) -> None:
    flags = ("--text-col", "text", "--label-col", "text")
    said = user_error(cli("train", "--data", str(csv_file), *flags, *TINY_BAG, "--out", str(out)))
    assert "--text-col and --label-col are the same column" in said
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("section", "says"),
    [("train: {epochs: true}", "epochs must be a number, got true"), ("model: {family: bag, ngrams: on}", "ngrams")],
)
def test_a_number_given_as_true_or_false_is_one_line(
    cli: Cli, csv_file: Path, out: Path, section: str, says: str
) -> None:
    said = config_error(cli, "train", out, f"data: {{path: {csv_file}}}\n{section}\n")
    assert says in said
    assert_nothing_written(out)


def test_a_setting_that_takes_words_reads_yaml_booleans_its_own_way() -> None:
    from ajuste.search.settings import TuneSettings

    assert (TuneSettings(screen=False).screen, TuneSettings(screen=True).screen) == ("off", "auto")


def test_finalize_without_a_search_is_one_line_and_leaves_no_folder(cli: Cli, csv_file: Path, out: Path) -> None:
    said = user_error(cli("tune", "--data", str(csv_file), "--model", "bag", "--finalize", "--out", str(out)))
    assert "no search in" in said and "to finalize" in said
    assert_nothing_written(out)


def test_a_csv_row_with_more_fields_than_its_header_is_one_line(cli: Cli, tmp_path: Path, out: Path) -> None:
    rows = "".join(f"text {i},{'xy'[i % 2]}\n" for i in range(20))
    data = tmp_path / "unquoted.csv"
    data.write_text("text,label\n" + rows + "hello, world,x\n", encoding="utf-8")
    said = user_error(cli("train", "--data", str(data), *TINY_BAG, "--out", str(out)))
    assert "line 22 of" in said and "more fields than its header" in said and "Quote" in said
    trailing = tmp_path / "trailing.csv"  # an empty field after the last column is no text cut in two
    trailing.write_text("text,label\n" + rows.replace("\n", ",\n"), encoding="utf-8")
    assert cli("train", "--data", str(trailing), *TINY_BAG, "--out", str(out)).code == 0


def test_a_utf16_file_is_offered_utf16(cli: Cli, tmp_path: Path, out: Path) -> None:
    data = tmp_path / "wide.csv"
    data.write_text("text,label\n" + "".join(f"a{i},{'xy'[i % 2]}\n" for i in range(20)), encoding="utf-16")
    assert "--encoding utf-16" in user_error(cli("train", "--data", str(data), *TINY_BAG, "--out", str(out)))
    assert cli("train", "--data", str(data), "--encoding", "utf-16", *TINY_BAG, "--out", str(out)).code == 0


@pytest.mark.parametrize(("flag", "value"), [("--lr", "nan"), ("--weight-decay", "inf")])
def test_nan_or_infinity_is_called_what_it_is(cli: Cli, csv_file: Path, out: Path, flag: str, value: str) -> None:
    said = user_error(cli("train", "--data", str(csv_file), *TINY_BAG, flag, value, "--out", str(out)))
    assert f"must be a finite number, got {value}" in said


def test_a_teacher_without_its_split_is_named_so(cli: Cli, trained_run: Path, tmp_path: Path, out: Path) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(trained_run, teacher)
    (teacher / "split.json").unlink()
    said = user_error(cli("distill", str(teacher), "--epochs", "1", "--out", str(out)))
    assert "has no split.json" in said
    assert_nothing_written(out)


def test_a_wrong_unlabeled_column_names_its_own_flag(cli: Cli, trained_run: Path, csv_file: Path, out: Path) -> None:
    flags = ("--unlabeled", str(csv_file), "--unlabeled-col", "zz")
    said = user_error(cli("distill", str(trained_run), "--epochs", "1", *flags, "--out", str(out)))
    assert "Pass --unlabeled-col with one of them" in said


def test_an_unreadable_unlabeled_file_is_not_told_of_flags_distill_lacks(
    cli: Cli, trained_run: Path, tmp_path: Path, out: Path
) -> None:
    # distill has no --format, --encoding or --dataset: the fixes that name them could not be followed
    binary = bytes(range(256)) * 4
    (tmp_path / "texts.dat").write_bytes(binary)
    (tmp_path / "texts.txt").write_bytes(binary)
    cases = {
        "texts.dat": "Give --unlabeled a file with one of those extensions",
        "texts.txt": "Save the --unlabeled file as UTF-8",
        "missing.txt": "given as --unlabeled does not exist. Check the path of --unlabeled.",
    }
    for name, fix in cases.items():
        said = user_error(cli("distill", trained_run, "--epochs", "1", "--unlabeled", tmp_path / name, "--out", out))
        assert fix in said, said
        assert "--format" not in said and "--encoding" not in said and "--dataset" not in said
    assert_nothing_written(out)


# -- characters that UTF-8 cannot hold ------------------------------------------------------------


def test_valid_text_replaces_lone_surrogates_only() -> None:
    from ajuste.texts import valid_text

    assert valid_text(None) == "" and valid_text(3) == "3"
    assert valid_text("ünïcödé ✓ 🚀") == "ünïcödé ✓ 🚀"
    assert valid_text("a \ud800 b \udce9") == "a \ufffd b \ufffd"
    assert valid_text("\ud83d\ude80") == "🚀"  # the two halves of a pair are the character


@pytest.mark.parametrize(
    "model", [TINY_BAG, ("--model", "gpt", "--num-layers", "1", "--num-heads", "2", "--emb-dim", "16", "--epochs", "1")]
)
def test_a_lone_surrogate_in_the_data_trains_and_predicts(cli: Cli, tmp_path: Path, model: tuple[str, ...]) -> None:
    # a JSON escape of half a UTF-16 pair is valid JSON: bag's n-gram hashing, gpt's tokenizer and the written
    # predictions all failed on it (an internal error)
    texts, labels = make_texts(60)
    texts[3] += " \ud800 x"
    data = tmp_path / "data.jsonl"
    lines = (json.dumps({"text": t, "label": y}) for t, y in zip(texts, labels))  # ensure_ascii: "\\ud800"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "\\ud800" in data.read_text(encoding="utf-8")
    run, output = tmp_path / "run", tmp_path / "predictions.csv"
    assert cli("train", "--data", data, *model, "--out", run, "--quiet").code == 0
    assert cli("predict", run, "--input", data, "--output", output).code == 0
    assert texts[3].replace("\ud800", "\ufffd") in output.read_text(encoding="utf-8")
    said = cli("predict", run, "caf\udce9 prize", "--json")  # a command-line byte that is not UTF-8
    assert said.code == 0 and "caf\ufffd prize" in said.out


# -- fixes that the command can follow ------------------------------------------------------------


def test_distill_names_student_where_a_flag_is_for_another_family(cli: Cli, trained_run: Path, out: Path) -> None:
    said = user_error(cli("distill", trained_run, "--student", "bag", "--num-layers", "2", "--out", out))
    assert "--num-layers applies to --student gpt only, not bag" in said
    assert_nothing_written(out)


def test_distill_offers_no_flag_of_a_family_that_cannot_be_a_student(cli: Cli, trained_run: Path, out: Path) -> None:
    helped = cli("distill", "--help")
    assert helped.code == 0 and "--embed-dim" in helped.out and "--num-layers" in helped.out
    assert "--analyzer" not in helped.out and "--classifier" not in helped.out, "linear learns from labels only"
    found = cli("distill", trained_run, "--student", "bag", "--analyzer", "word", "--out", out)
    assert found.code == 2 and "unrecognized arguments: --analyzer word" in found.err
    assert len(found.err.strip().splitlines()) == 1 and "Traceback" not in found.err
    assert_nothing_written(out)


def test_finalize_and_report_are_not_told_to_overwrite(cli: Cli, csv_file: Path, tmp_path: Path) -> None:
    # --finalize refuses --overwrite, and report has none: neither may be advised it
    out = tmp_path / "search"
    assert cli("tune", "--data", csv_file, "--model", "linear", "--trials", "1", "--out", out, "-q").code == 0
    said = user_error(cli("tune", "--data", csv_file, "--model", "bag", "--trials", "1", "--finalize", "--out", out))
    assert "holds another search" in said and "Give --finalize the data" in said and "--overwrite" not in said
    (out / "study.db").write_bytes(b"not a database at all" * 100)
    said = user_error(cli("report", out))
    assert "is damaged" in said and "`ajuste tune ... --overwrite`" in said


def test_a_column_named_for_a_file_of_lines_is_refused(cli: Cli, trained_run: Path, texts_file: Path) -> None:
    # a .txt file holds one text per line: a column named for it was looked for among the one made up ('text')
    output = texts_file.parent / "predictions.csv"
    message = user_error(cli("predict", trained_run, "--input", texts_file, "--text-col", "body", "--output", output))
    assert f"{texts_file} holds one text per line, with no columns, and --text-col names one ('body')" in message
    assert "Leave out --text-col" in message
    assert_nothing_written(output)


def _damaged(tiny_bert: Path, folder: Path, how: str) -> Path:
    shutil.copytree(tiny_bert, folder)
    if how == "no tokenizer files":
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    elif how == "weights cut short":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "config not JSON":
        (folder / "config.json").write_text("{not json", encoding="utf-8")
    elif how == "config of another size":
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 64}), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("how", "said"),
    [
        # it trained and predicted one answer for every text: every word was [UNK] to a 5-token tokenizer
        ("no tokenizer files", "has no tokenizer vocabulary of its own: expected a tokenizer of about the 200"),
        ("weights cut short", "model.safetensors is damaged: found Error while deserializing header"),
        ("config not JSON", "cannot be read: found It looks like the config file"),  # was "unknown model"
        ("config of another size", "cannot be loaded: found"),
    ],
)
def test_a_damaged_checkpoint_is_refused_in_one_line(
    cli: Cli, csv_file: Path, tiny_bert: Path, tmp_path: Path, out: Path, how: str, said: str
) -> None:
    checkpoint = _damaged(tiny_bert, tmp_path / "checkpoint", how)
    message = user_error(cli("train", "--data", csv_file, "--model", checkpoint, "--epochs", "1", "--out", out))
    assert said in message, message
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--trainable", "last_n:9"), "--trainable: last_n:9 asks for more blocks than the 2 it has"),
        (("--max-length", "65"), "--max-length: 65 exceeds the checkpoint's context (64)"),
    ],
)
def test_a_setting_that_does_not_fit_the_checkpoint_is_named_by_its_flag(
    cli: Cli, csv_file: Path, tiny_bert: Path, out: Path, flags: tuple[str, ...], said: str
) -> None:
    # it was named as the setting it fills ("model.trainable last_n:9 asks..."), not as the flag typed
    message = user_error(cli("train", "--data", csv_file, "--model", tiny_bert, *flags, "--out", out))
    assert said in message, message
    assert_nothing_written(out)


@pytest.mark.parametrize("where", ["run", "model"])
def test_a_run_folder_given_as_a_checkpoint_is_named_as_one(
    cli: Cli, csv_file: Path, trained_run: Path, out: Path, where: str
) -> None:
    # it was "checkpoint folder ... is incomplete ... save_pretrained()" (or "Should have a model_type key")
    folder = trained_run if where == "run" else trained_run / "model"
    message = user_error(cli("train", "--data", csv_file, "--model", folder, "--out", out))
    assert f"{folder} is an ajuste {where} folder, not a transformers checkpoint" in message
    assert "ajuste distill RUN" in message
    assert_nothing_written(out)


def test_a_run_without_an_encoder_is_refused_as_static_s_encoder_with_a_fix_for_train(
    cli: Cli, csv_file: Path, trained_run: Path, out: Path
) -> None:
    # the fix spoke of distill's --student to a train command
    message = user_error(cli("train", "--data", csv_file, "--model", "static", "--encoder", trained_run, "--out", out))
    assert "has no pretrained encoder to take piece vectors from" in message and "found a bag run" in message
    assert "--student" not in message and "choose a family other than static" in message
    assert_nothing_written(out)

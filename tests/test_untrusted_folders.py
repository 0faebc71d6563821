"""Opening a run folder never runs code from it: a crafted folder is refused unless the command says otherwise.

The folders are made the way a user gets them: a real run written by ``ajuste train``, then altered by
someone else so that its backbone's config maps to a Python module in the folder (``auto_map``), the
module writing a marker file when imported. Nothing may write that marker without ``--trust-remote-code``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import ajuste
from ajuste.errors import ModelError
from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]

EVIL = """
from pathlib import Path

Path({marker!r}).write_text("code from the folder ran", encoding="utf-8")

from transformers import BertConfig, BertModel


class EvilConfig(BertConfig):
    model_type = "bert"


class EvilModel(BertModel):
    config_class = EvilConfig
"""
AUTO_MAP = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}


def one_line_error(result: CliResult) -> str:
    assert result.code == 2, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def plant_code(folder: Path, marker: Path) -> None:
    """Make the checkpoint in ``folder`` ask for the module ``evil.py`` beside its config."""
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = AUTO_MAP
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(60, seed=5)
    return write_csv(tmp_path_factory.mktemp("untrusted-data") / "data.csv", texts, labels)


@pytest.fixture(scope="module")
def crafted_run(data: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real run of the tiny BERT, then altered: (the run folder, the marker its code would write)."""
    folder = tmp_path_factory.mktemp("crafted")
    config = ajuste.RunConfig(
        data=ajuste.DataSettings(path=str(data)),
        model=ajuste.PretrainedSettings(checkpoint=str(tiny_bert), trainable="head", precision="fp32"),
        train=ajuste.TrainSettings(epochs=1),
        out=str(folder / "run"),
    )
    run = ajuste.train(config).run_dir
    marker = folder / "marker.txt"
    plant_code(run / "model" / "backbone", marker)
    model_config = json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))
    model_config["settings"]["trust_remote_code"] = True  # the folder's own say counts for nothing
    (run / "model" / "config.json").write_text(json.dumps(model_config), encoding="utf-8")
    return run, marker


@pytest.fixture
def no_module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))


def test_predict_refuses_a_folder_that_would_run_its_code(cli: Cli, crafted_run: tuple[Path, Path]) -> None:
    run, marker = crafted_run
    line = one_line_error(cli("predict", run, "free prize now"))
    assert "needs its own Python code" in line and "--trust-remote-code" in line and "auto_map" not in line
    assert "config.json maps AutoConfig, AutoModel to code in the folder" in line
    assert not marker.exists()


def test_export_refuses_a_folder_that_would_run_its_code(
    cli: Cli, crafted_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, marker = crafted_run
    assert "needs its own Python code" in one_line_error(cli("export", run, "--out", tmp_path / "exported"))
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_evaluate_refuses_a_folder_that_would_run_its_code(
    cli: Cli, crafted_run: tuple[Path, Path], data: Path
) -> None:
    run, marker = crafted_run
    assert "needs its own Python code" in one_line_error(cli("evaluate", run, data))
    assert not marker.exists()


def test_load_refuses_a_folder_that_would_run_its_code(crafted_run: tuple[Path, Path]) -> None:
    run, marker = crafted_run
    with pytest.raises(ModelError, match="needs its own Python code"):
        ajuste.load(run)
    with pytest.raises(ModelError, match="needs its own Python code"):
        ajuste.load(run / "model")
    assert not marker.exists()


def test_train_config_refuses_a_checkpoint_that_would_run_its_code(
    cli: Cli, crafted_run: tuple[Path, Path], tiny_bert: Path, tmp_path: Path
) -> None:
    run, marker = crafted_run
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_bert, checkpoint)
    plant_code(checkpoint, marker)
    settings = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))
    settings["model"]["checkpoint"] = str(checkpoint)
    settings["model"]["trust_remote_code"] = True  # a config file cannot allow it either
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    line = one_line_error(cli("train", "--config", config, "--out", tmp_path / "again"))
    assert "needs its own Python code" in line
    assert not marker.exists() and not (tmp_path / "again").exists()


def test_the_run_yaml_never_records_trust_remote_code(crafted_run: tuple[Path, Path]) -> None:
    run, _ = crafted_run
    assert "trust_remote_code" not in (run / "run.yaml").read_text(encoding="utf-8")


def test_the_flag_on_the_command_lets_the_code_run(
    cli: Cli, crafted_run: tuple[Path, Path], tmp_path: Path, no_module_cache: None
) -> None:
    run, marker = crafted_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = cli("predict", copy, "free prize now", "--trust-remote-code", "--json")
    assert marker.exists(), result.err  # the user asked for it on this very command
    marker.unlink()
    assert result.code == 0, result.err
    assert result.json()["predictions"][0]["label"] in ("ham", "spam")

"""Predicting with a bag model without PyTorch: the NumPy forward pass gives the PyTorch model's
probabilities, ``ajuste predict`` on a bag run never imports torch, and a damaged folder is still one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import ajuste
from ajuste.errors import RunFolderError
from ajuste.runs.folder import RunFolder
from ajuste.training.light import NumpyBag, light_model
from tests.conftest import CliResult, make_texts, predict_in_a_new_process, write_csv

Cli = Callable[..., CliResult]
TEXTS, LABELS = make_texts(90, seed=11, classes=("ham", "spam", "other"))
QUERIES = ["win a free prize now", "", "see you at lunch", "!!!", " ".join(["rain and snow tonight"] * 80), "CALL NOW"]


def bag_run(folder: Path, **model: object) -> Path:
    data = write_csv(folder / "data.csv", TEXTS, LABELS)
    config = ajuste.RunConfig.model_validate(
        {"data": {"path": str(data)}, "model": {"family": "bag", **model}, "out": str(folder / "run")}
    )
    return ajuste.train(config).run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bag_run(tmp_path_factory.mktemp("light"), embed_dim=16, ngrams=2, buckets=300, max_length=12)


def test_numpy_gives_the_probabilities_of_pytorch(run: Path) -> None:
    light = RunFolder(run).predictor()
    assert isinstance(light, NumpyBag)
    reference = ajuste.load(run)
    np.testing.assert_allclose(light.predict_proba(QUERIES), reference.predict_proba(QUERIES), atol=1e-6)
    assert light.predict(QUERIES).labels == reference.predict(QUERIES).labels


def test_other_models_and_precisions_load_with_pytorch(run: Path, tmp_path: Path) -> None:
    assert light_model(run / "model", "bf16") is None
    assert light_model(bag_run(tmp_path, embed_dim=8, precision="bf16") / "model") is None
    linear = ajuste.RunConfig.model_validate(
        {"data": {"path": str(write_csv(tmp_path / "d.csv", TEXTS, LABELS))}, "model": {"family": "linear"}}
    ).model_copy(update={"out": str(tmp_path / "linear")})
    assert light_model(ajuste.train(linear).run_dir / "model") is None


def test_predict_on_a_bag_run_does_not_import_torch(run: Path) -> None:
    torch_imported, code, output = predict_in_a_new_process(run, "win a free prize now")
    assert not torch_imported and code == 0, output
    predicted = ajuste.load(run).predict(["win a free prize now"]).labels[0]
    assert f'"label": "{predicted}"' in output


def test_damaged_weights_are_one_line_on_the_light_path(cli: Cli, run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "model" / "model.safetensors").write_bytes(b"not a safetensors file")
    result = cli("predict", copy, "hello")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "damaged" in result.err
    with pytest.raises(RunFolderError):
        RunFolder(copy).predictor()


@pytest.mark.parametrize("damage", ["width", "vocabulary"])
def test_a_folder_whose_files_disagree_is_refused_by_both_paths(
    cli: Cli, run: Path, tmp_path: Path, damage: str
) -> None:
    """The NumPy path answered for a config naming another width than its weights', where PyTorch refused; a
    vocabulary that is not one said a Python error as what it found."""
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    if damage == "width":
        config = json.loads((copy / "model" / "config.json").read_text(encoding="utf-8"))
        config["settings"]["embed_dim"] = 32  # its weights are 16 wide
        (copy / "model" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    else:
        (copy / "model" / "vocabulary.json").write_text("null", encoding="utf-8")
    data = tmp_path / "data.csv"
    write_csv(data, TEXTS, LABELS)
    for command in (("predict", copy, "hello"), ("evaluate", copy, data)):
        result = cli(*command)
        lines = result.err.strip().splitlines()
        assert result.code == 2 and len(lines) == 1, result.err
        assert "NoneType" not in lines[0], lines[0]
        if damage == "width":  # what differs: the settings against the weights, or PyTorch's first difference
            assert "embed_dim 32" in lines[0] if command[0] == "predict" else "size mismatch" in lines[0], lines[0]
        else:
            assert "found a JSON null, not an object with a list of words" in lines[0], lines[0]

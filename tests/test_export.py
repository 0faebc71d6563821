"""``ajuste export``: every family as an ONNX graph (fp32 and int8) that predicts what the PyTorch model
predicts, in a run folder that ``predict``, ``evaluate`` and ``ajuste.load`` use like any other."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import ajuste
from ajuste.errors import ConfigError
from ajuste.export.onnx import CHECK_TEXTS
from ajuste.training.onnx import OnnxClassifier
from tests.conftest import CliResult, make_texts, write_csv

pytest.importorskip("onnxruntime", reason='ONNX export needs: pip install "ajuste[onnx]"')

Cli = Callable[..., CliResult]
CLASSES = ("ham", "spam", "other")

#: Every family, and the kinds of pretrained checkpoints: an encoder (BERT) and a decoder (GPT-2).
CASES: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "linear-logistic": lambda request: {"family": "linear"},
    "linear-svm": lambda request: {"family": "linear", "classifier": "svm", "analyzer": "word+char"},
    "bag": lambda request: {"family": "bag", "embed_dim": 16, "buckets": 500},
    "gpt": lambda request: {"family": "gpt", "num_layers": 1, "num_heads": 2, "emb_dim": 32, "vocab_size": 400},
    "static": lambda request: {"family": "static", "encoder": str(request.getfixturevalue("tiny_bert"))},
    "bert": lambda request: {
        "family": "pretrained",
        "checkpoint": str(request.getfixturevalue("tiny_bert")),
        "trainable": "all",
        "precision": "fp32",
    },
    "gpt2": lambda request: {
        "family": "pretrained",
        "checkpoint": str(request.getfixturevalue("tiny_gpt2")),
        "trainable": "all",
        "precision": "fp32",
    },
}
#: Training that learns the tiny task (the tiny checkpoints are random weights: a pretrained model's rate is too low).
TRAIN: dict[str, dict[str, Any]] = {
    "linear-logistic": {},
    "linear-svm": {},
    "bag": {"epochs": 10},
    "gpt": {"epochs": 8},
    "static": {"epochs": 20, "lr": 0.05},
    "bert": {"epochs": 15, "lr": 3e-3},
    "gpt2": {"epochs": 8, "lr": 3e-3},
}

TEXTS, LABELS = make_texts(150, seed=3, classes=CLASSES)
HELD_OUT, HELD_OUT_LABELS = make_texts(1000, seed=99, classes=CLASSES)
QUERIES = ["win a free prize now", "", "see you at lunch", " ".join(["rain and snow tonight"] * 60), *CHECK_TEXTS]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("export-data") / "data.csv", TEXTS, LABELS)


@pytest.fixture(scope="module", params=sorted(CASES))
def run(request: pytest.FixtureRequest, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder of one family, written by ajuste.train."""
    name = request.param
    folder = tmp_path_factory.mktemp(f"export-{name}")
    config = ajuste.RunConfig.model_validate(
        {
            "data": {"path": str(data)},
            "model": CASES[name](request),
            "train": TRAIN[name],
            "out": str(folder / "run"),
        }
    )
    return ajuste.train(config).run_dir


@pytest.fixture(scope="module")
def exported(run: Path) -> dict[str, Path]:
    """The run exported in fp32 and int8, through the command line."""
    from ajuste.cli.main import main

    folders = {}
    for name, flags in (("fp32", []), ("int8", ["--quantize", "int8"])):
        folders[name] = run.parent / f"onnx-{name}"
        assert main(["export", str(run), "--out", str(folders[name]), "--quiet", *flags]) == 0
    return folders


def test_fp32_predicts_what_pytorch_predicts(run: Path, exported: dict[str, Path]) -> None:
    reference, graph = ajuste.load(run), ajuste.load(exported["fp32"])
    assert isinstance(graph, OnnxClassifier) and graph.classes_ == reference.classes_
    expected = reference.predict(QUERIES + HELD_OUT, precision="fp32")
    found = graph.predict(QUERIES + HELD_OUT)
    assert found.labels == expected.labels
    np.testing.assert_allclose(found.probabilities, expected.probabilities, atol=1e-4)


def test_int8_accuracy_on_held_out_texts_is_within_a_point_of_fp32(exported: dict[str, Path]) -> None:
    fp32, int8 = ajuste.load(exported["fp32"]), ajuste.load(exported["int8"])
    accuracy = {
        name: float(np.mean(np.array(model.predict(HELD_OUT).labels) == np.array(HELD_OUT_LABELS)))
        for name, model in (("fp32", fp32), ("int8", int8))
    }
    assert accuracy["fp32"] > 0.6, accuracy  # well above chance (1/3): the comparison means something
    assert abs(accuracy["int8"] - accuracy["fp32"]) <= 0.01 + 1e-9, accuracy  # one point, not its rounding
    probabilities = int8.predict_proba(QUERIES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_batches_of_any_size_and_length_give_the_same_answers(exported: dict[str, Path]) -> None:
    model = ajuste.load(exported["fp32"])
    together = model.predict_proba(QUERIES)
    one_by_one = np.concatenate([model.predict_proba([text]) for text in QUERIES])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(QUERIES, batch_size=3), together, atol=1e-5)


def test_batches_side_by_side_give_what_batches_one_after_another_give(exported: dict[str, Path]) -> None:
    texts = QUERIES + HELD_OUT  # many batches
    for name in ("fp32", "int8"):
        in_turn, side_by_side = ajuste.load(exported[name]), ajuste.load(exported[name])
        assert isinstance(in_turn, OnnxClassifier) and isinstance(side_by_side, OnnxClassifier)
        in_turn.cores, side_by_side.cores = 1, 3  # three threads, whatever this machine has
        expected = in_turn.predict_proba(texts)
        assert in_turn._single is None  # one session only
        side_by_side.predict_proba(["one batch only"])
        assert side_by_side._single is None  # a call of one batch does not make the second session
        np.testing.assert_allclose(side_by_side.predict_proba(texts), expected, atol=1e-5)
        assert side_by_side._single is not None
        if name == "fp32":  # int8 activations are quantized per batch: other batches, other roundings
            np.testing.assert_allclose(side_by_side.predict_proba(texts, batch_size=7), expected, atol=1e-5)


def test_the_export_is_a_run_folder_that_the_commands_use(
    cli: Cli, run: Path, exported: dict[str, Path], data: Path
) -> None:
    source = cli("evaluate", run, data, "--json", "--precision", "fp32").json()["metrics"]
    for folder in exported.values():
        assert cli("predict", folder, "win a free prize now", "--json").code == 0
        metrics = cli("evaluate", folder, data, "--json").json()["metrics"]
        assert abs(metrics["accuracy"] - source["accuracy"]) <= 0.01 + 1e-9
        record = yaml.safe_load((folder / "run.yaml").read_text(encoding="utf-8"))
        assert record["record"]["export"]["source"] == str(run.resolve())
        assert record["record"]["export"]["same_labels"] == len(CHECK_TEXTS)
        assert record["model"] == yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))["model"]
        assert json.loads((folder / "metrics.json").read_text()) == json.loads((run / "metrics.json").read_text())
    assert (exported["int8"] / "model" / "model.onnx").stat().st_size < (
        exported["fp32"] / "model" / "model.onnx"
    ).stat().st_size


def test_an_exported_folder_holds_data_only(exported: dict[str, Path]) -> None:
    for folder in exported.values():
        suffixes = {p.suffix for p in (folder / "model").rglob("*") if p.is_file()}
        assert ".onnx" in suffixes and suffixes <= {".json", ".safetensors", ".txt", ".onnx"}, suffixes
        assert not (folder / "model" / "model.safetensors").exists()


def test_an_exported_model_is_not_trained_again(exported: dict[str, Path]) -> None:
    model = ajuste.load(exported["fp32"])
    with pytest.raises(ConfigError, match="exported"):
        model.fit(TEXTS, LABELS, epochs=1)
    with pytest.raises(ConfigError, match="exported"):
        model.save(exported["fp32"].parent / "again")


# -- refusals: one line, exit 2 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bag_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export-refusals")
    config = ajuste.RunConfig.model_validate(
        {"data": {"path": str(data)}, "model": {"family": "bag", "embed_dim": 8}, "out": str(folder / "run")}
    )
    return ajuste.train(config).run_dir


def one_line(result: CliResult) -> str:
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def test_a_damaged_onnx_file_is_one_line(cli: Cli, bag_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert cli("export", bag_run, "--out", out, "-q").code == 0
    (out / "model" / "model.onnx").write_bytes(b"\x08\x01garbage" * 20)
    assert "is damaged or not a model" in one_line(cli("predict", out, "hello"))
    (out / "model" / "model.onnx").unlink()
    assert "model.onnx" in one_line(cli("predict", out, "hello"))


def test_export_refusals(cli: Cli, bag_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert cli("export", bag_run, "--out", out, "-q").code == 0
    assert "already exists" in one_line(cli("export", bag_run, "--out", out))
    assert cli("export", bag_run, "--out", out, "--overwrite", "-q").code == 0
    assert "already an exported model" in one_line(cli("export", out, "--out", tmp_path / "twice"))
    assert "which this command reads" in one_line(cli("export", bag_run, "--out", bag_run, "--overwrite"))
    assert "does not exist" in one_line(cli("export", tmp_path / "nothing"))
    assert cli("export", bag_run, "--quantize", "int4").code == 2
    assert not (tmp_path / "twice").exists()


def test_default_out_is_beside_the_run(cli: Cli, bag_run: Path) -> None:
    result = cli("export", bag_run, "--quantize", "int8", "--json")
    assert result.code == 0
    summary = result.json()
    assert Path(summary["run_dir"]) == bag_run.parent / f"{bag_run.name}-onnx-int8"
    assert summary["quantize"] == "int8" and summary["checked_texts"] == len(CHECK_TEXTS)
    # This tiny model is near-uniform on the check texts, so int8 may flip a label: the count reported is the true
    # count, and a label flips only where the model's two best classes are closer than int8 moved a probability.
    reference = ajuste.load(bag_run).predict_proba(list(CHECK_TEXTS), precision="fp32")
    quantized = ajuste.load(summary["run_dir"]).predict_proba(list(CHECK_TEXTS))
    same = reference.argmax(axis=1) == quantized.argmax(axis=1)
    assert summary["same_labels"] == int(same.sum())
    assert summary["max_probability_difference"] == pytest.approx(float(np.abs(reference - quantized).max()))
    top_two = np.sort(reference, axis=1)[:, -2:]
    assert np.all(same | (top_two[:, 1] - top_two[:, 0] <= 2 * summary["max_probability_difference"]))


def test_a_precision_asked_of_an_exported_model_is_said_to_be_ignored_once(
    exported: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    model = ajuste.load(exported["fp32"])
    with caplog.at_level("INFO", logger="ajuste.training.onnx"):
        first = model.predict_proba(QUERIES, precision="bf16")
        again = model.predict_proba(QUERIES, precision="bf16")
    said = [r for r in caplog.records if "precision bf16 ignored" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING", "INFO"], "warned of once, not at every call (a server's)"
    np.testing.assert_allclose(first, again)
    np.testing.assert_allclose(first, model.predict_proba(QUERIES), atol=1e-6)  # the export's own precision

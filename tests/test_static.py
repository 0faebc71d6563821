"""The ``static`` family: an encoder's piece vectors, taken in context and frozen, under a linear layer; as a
student it reads through its teacher's own backbone, and it predicts in NumPy without the encoder."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ajuste
from ajuste.models.static import open_encoder, piece_vectors, standardized
from ajuste.runs.folder import RunFolder
from ajuste.training.light import NumpyBag
from tests.conftest import CliResult, make_texts, predict_in_a_new_process, write_csv

Cli = Callable[..., CliResult]
TEXTS, LABELS = make_texts(120, seed=5)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("static-data") / "texts.csv", TEXTS, LABELS)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, data_file: Path, tiny_bert: Path) -> Path:
    """A tiny BERT fine-tuned end to end: its backbone is no longer the checkpoint's."""
    out = tmp_path_factory.mktemp("static-runs") / "teacher"
    model = {"family": "pretrained", "checkpoint": str(tiny_bert), "trainable": "all", "precision": "fp32"}
    config = ajuste.RunConfig.model_validate(
        {"data": {"path": str(data_file)}, "model": model, "train": {"epochs": 3, "lr": 3e-3}, "out": str(out)}
    )
    ajuste.train(config, verbose=False)
    return out


def _outputs(encoder_path: Path, text: str) -> tuple[list[int], torch.Tensor]:
    """The pieces of ``text`` (special tokens included) and the encoder's output at each."""
    encoder = open_encoder(str(encoder_path))
    inputs = encoder.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        states = encoder.backbone(**inputs).last_hidden_state[0]
    return inputs["input_ids"][0].tolist(), states


def test_a_piece_vector_is_its_output_averaged_over_the_texts_or_alone_when_unseen(tiny_bert: Path) -> None:
    texts = ["free prize now", "call now for a prize"]
    encoder = open_encoder(str(tiny_bert))
    pieces = len(encoder.tokenizer)
    vectors = piece_vectors(encoder, texts, pieces)
    assert vectors.shape == (pieces, 32)
    now = encoder.tokenizer.convert_tokens_to_ids("now")
    seen = [states[ids.index(now)] for ids, states in (_outputs(tiny_bert, text) for text in texts)]
    np.testing.assert_allclose(vectors[now], torch.stack(seen).mean(0).numpy(), atol=1e-5)
    # a piece these texts never show: the encoder's output for it alone, between [CLS] and [SEP]
    unseen = next(i for i in range(pieces) if encoder.tokenizer.convert_ids_to_tokens(i) == "rain")
    ids, states = _outputs(tiny_bert, "rain")
    assert ids == [encoder.tokenizer.cls_token_id, unseen, encoder.tokenizer.sep_token_id]
    np.testing.assert_allclose(vectors[unseen], states[1].numpy(), atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in vectors}) > pieces * 0.9  # every piece a vector of its own


def test_with_the_embedding_layer_a_piece_vector_holds_its_output_there_too(tiny_bert: Path) -> None:
    """layers=last+embeddings: the last layer's average beside the embedding layer's, each in context."""
    texts = ["free prize now", "call now for a prize"]
    encoder = open_encoder(str(tiny_bert))
    pieces = len(encoder.tokenizer)
    both = piece_vectors(encoder, texts, pieces, "last+embeddings")
    assert both.shape == (pieces, 64)
    np.testing.assert_allclose(both[:, :32], piece_vectors(encoder, texts, pieces), atol=1e-5)
    now = encoder.tokenizer.convert_tokens_to_ids("now")
    seen = []
    for text in texts:
        inputs = encoder.tokenizer([text], return_tensors="pt")
        with torch.inference_mode():
            states = encoder.backbone(**inputs, output_hidden_states=True).hidden_states[0][0]
        seen.append(states[inputs["input_ids"][0].tolist().index(now)])
    np.testing.assert_allclose(both[now, 32:], torch.stack(seen).mean(0).numpy(), atol=1e-5)


def test_only_the_linear_layer_learns(tiny_bert: Path) -> None:
    model = ajuste.TextClassifier(ajuste.validation.model_settings({"family": "static", "encoder": str(tiny_bert)}))
    model.fit(TEXTS[:80], LABELS[:80], epochs=3, validation_data=(TEXTS[80:], LABELS[80:]), verbose=False)
    module = model.module_
    assert module is not None
    pieces = module.embedding.weight.shape[0]
    expected = standardized(piece_vectors(open_encoder(str(tiny_bert)), TEXTS[:80], pieces, "last+embeddings"))
    np.testing.assert_allclose(module.embedding.weight.detach().numpy(), expected, atol=1e-5)
    assert not module.embedding.weight.requires_grad and module.fc.weight.requires_grad


def test_trained_vectors_start_from_the_encoder_s_and_learn(tiny_bert: Path, tmp_path: Path) -> None:
    settings = {"family": "static", "encoder": str(tiny_bert), "vectors": "trained"}
    model = ajuste.TextClassifier(ajuste.validation.model_settings(settings))
    model.fit(TEXTS[:80], LABELS[:80], epochs=3, validation_data=(TEXTS[80:], LABELS[80:]), verbose=False)
    module = model.module_
    assert module is not None and module.embedding.weight.requires_grad
    pieces = module.embedding.weight.shape[0]
    start = standardized(piece_vectors(open_encoder(str(tiny_bert)), TEXTS[:80], pieces, "last+embeddings"))
    learnt = module.embedding.weight.detach().numpy()
    moved = np.abs(learnt - start).max(axis=1) > 1e-4
    # The pieces of the training texts moved; a piece no training text holds kept the encoder's vector.
    assert moved.any() and not moved.all()
    # The folder holds the learnt vectors: it predicts what the model in memory predicts.
    model.save(tmp_path / "model")
    loaded, kept = ajuste.load(tmp_path / "model").predict(TEXTS[80:]), model.predict(TEXTS[80:])
    assert loaded.labels == kept.labels
    np.testing.assert_allclose(loaded.probabilities, kept.probabilities, atol=1e-5)


def test_a_static_student_reads_through_its_teacher_and_predicts_without_it(
    teacher: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    teacher = Path(shutil.copytree(teacher, tmp_path / "teacher"))  # a copy, deleted at the end
    result = ajuste.distill(teacher, "static", train={"epochs": 5}, out=tmp_path / "student", verbose=False)
    run_file = yaml.safe_load((tmp_path / "student" / "run.yaml").read_text())
    assert run_file["model"]["encoder"] == str(teacher)  # the teacher's backbone, not the checkpoint it came from
    data = ajuste.load_data(ajuste.DataSettings(path=run_file["data"]["path"]), seed=run_file["seed"])
    student = ajuste.load(tmp_path / "student")
    weights = student.module_.embedding.weight.detach().numpy()  # type: ignore[union-attr]
    pieces = weights.shape[0]
    layers = "last+embeddings"  # the default
    from_teacher = standardized(piece_vectors(open_encoder(str(teacher)), data.train.texts, pieces, layers))
    from_checkpoint = standardized(piece_vectors(open_encoder(str(tiny_bert)), data.train.texts, pieces, layers))
    np.testing.assert_allclose(weights, from_teacher, atol=1e-5)
    assert not np.allclose(weights, from_checkpoint, atol=1e-3)
    assert result.run.metrics["test"]["accuracy"] > 0.5
    # the folder alone predicts, in NumPy, what PyTorch predicts
    light = RunFolder(tmp_path / "student").predictor()
    assert isinstance(light, NumpyBag)
    queries = ["win a free prize now", "", "see you at lunch", "unheardof wordz"]
    np.testing.assert_allclose(light.predict_proba(queries), student.predict_proba(queries), atol=1e-5)
    torch_imported, code, output = predict_in_a_new_process(tmp_path / "student", "win a free prize now")
    assert not torch_imported and code == 0, output
    # the folder is whole without its teacher: it holds the tokenizer and the vectors
    shutil.rmtree(teacher)
    assert ajuste.load(tmp_path / "student").predict(queries).labels == student.predict(queries).labels


def test_distill_trains_the_vectors_of_a_static_student_when_asked(cli: Cli, teacher: Path, tmp_path: Path) -> None:
    frozen, trained = tmp_path / "frozen", tmp_path / "trained"
    for out, flags in ((frozen, []), (trained, ["--vectors", "trained"])):
        result = cli("distill", teacher, "--student", "static", *flags, "--epochs", "2", "--out", out)
        assert result.code == 0, result.err
    assert yaml.safe_load((trained / "run.yaml").read_text())["model"]["vectors"] == "trained"
    weights = [ajuste.load(out).module_.embedding.weight.detach().numpy() for out in (frozen, trained)]  # type: ignore[union-attr]
    assert np.abs(weights[1] - weights[0]).max() > 1e-4  # the same start; only the trained ones moved
    # still a folder that predicts in NumPy what PyTorch predicts
    queries = ["win a free prize now", "see you at lunch"]
    np.testing.assert_allclose(
        RunFolder(trained).predictor().predict_proba(queries), ajuste.load(trained).predict_proba(queries), atol=1e-5
    )


def test_a_static_student_of_a_teacher_without_an_encoder_gets_one_line(
    cli: Cli, data_file: Path, tmp_path: Path
) -> None:
    bag = ajuste.RunConfig.model_validate(
        {"data": {"path": str(data_file)}, "model": {"family": "bag", "embed_dim": 8}, "out": str(tmp_path / "bag")}
    )
    ajuste.train(bag, verbose=False)
    result = cli("distill", tmp_path / "bag", "--student", "static", "--out", tmp_path / "student")
    assert result.code == 2, result.err
    assert "no pretrained encoder" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "student").exists()


def test_tune_searches_a_static_student_that_reads_through_the_teacher(teacher: Path, tmp_path: Path) -> None:
    space = {"train.lr": {"low": 0.01, "high": 0.1, "log": True}, "train.epochs": [3, 5]}
    result = ajuste.tune(model="static", space=space, trials=2, out=tmp_path / "t", distill_from=teacher)
    run_file = yaml.safe_load((tmp_path / "t" / "run.yaml").read_text())
    assert run_file["model"] == {**run_file["model"], "family": "static", "encoder": str(teacher)}
    assert run_file["distill"]["teacher"] == str(teacher)
    assert result.metrics["test"]["accuracy"] > 0.5


def test_the_piece_vector_passes_show_their_progress(tiny_bert: Path) -> None:
    """The encoder's passes can take minutes on real data (the training texts, then every piece they never show,
    read alone): each gets a bar that `fit` shows, advanced to its total; none when the vectors are cached."""
    from contextlib import contextmanager

    from ajuste.models.settings import StaticSettings
    from ajuste.models.static import StaticFamily

    shown: dict[str, list[int]] = {}

    @contextmanager
    def bars(description: str, total: int) -> Iterator[Callable[[int], None]]:
        shown[description] = [total]
        yield shown[description].append

    texts = [f"{text} number {i}" for i, text in enumerate(TEXTS[:70])]  # not read before: not in the cache
    encoder = open_encoder(str(tiny_bert))
    vectors = piece_vectors(encoder, texts, len(encoder.tokenizer), bars=bars)
    (total, *read), (unseen_total, *unseen) = shown.values()
    assert list(shown) == ["piece vectors, training texts", "piece vectors, pieces unseen in training"]
    assert total == sum(read) == len(texts) and len(read) > 1  # batch by batch
    never_shown = len(encoder.tokenizer) - len({i for t in texts for i in encoder.tokenizer(t)["input_ids"]})
    assert unseen_total == sum(unseen) == never_shown > 0
    assert vectors.shape[0] == len(encoder.tokenizer)
    shown.clear()
    StaticFamily(StaticSettings(encoder=str(tiny_bert))).fit_preprocessing(texts, bars)
    assert [bar[0] for bar in shown.values()] == [len(texts), never_shown]
    shown.clear()
    StaticFamily(StaticSettings(encoder=str(tiny_bert))).fit_preprocessing(texts, bars)
    assert shown == {}  # the same vectors, from the cache


def test_an_encoder_that_is_not_there_is_one_line_naming_the_flag(cli: Cli, data_file: Path, tmp_path: Path) -> None:
    for given in (tmp_path / "missing", data_file):
        result = cli("train", "--data", data_file, "--model", "static", "--encoder", given, "--out", tmp_path / "run")
        assert result.code == 2 and "Traceback" not in result.err
        (line,) = result.err.strip().splitlines()
        assert f"the encoder {given}" in line and "--encoder" in line and "--model" not in line
    assert not (tmp_path / "run").exists()

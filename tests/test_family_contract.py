"""The contract every model family of the registry keeps: fit, predict in input order, probabilities that
sum to one, the same predictions after save and load, and bad settings refused with every problem listed.

A family added to the registry without a case here fails ``test_every_registered_family_is_held_to_the_contract``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ajuste
from ajuste.errors import ConfigError
from ajuste.models.registry import FAMILIES
from tests.conftest import make_texts


@dataclass(frozen=True)
class Case:
    """How to build a small model of one family, and two settings it must refuse together."""

    settings: Callable[[pytest.FixtureRequest], dict[str, Any]]
    bad: dict[str, Any]
    problems: tuple[str, ...]
    fit: dict[str, Any]


CASES: dict[str, Case] = {
    "linear": Case(
        lambda request: {"family": "linear"},
        {"C": -1, "word_ngrams": 0},
        ("model.C", "model.word_ngrams"),
        {},
    ),
    "bag": Case(
        lambda request: {"family": "bag", "embed_dim": 8, "buckets": 100},
        {"embed_dim": 0, "ngrams": 9},
        ("model.embed_dim", "model.ngrams"),
        {"epochs": 2},
    ),
    "static": Case(
        lambda request: {"family": "static", "encoder": str(request.getfixturevalue("tiny_bert"))},
        {"max_length": 0, "precision": "fp8"},
        ("model.max_length", "model.precision"),
        {"epochs": 2},
    ),
    "gpt": Case(
        lambda request: {"family": "gpt", "num_layers": 1, "num_heads": 2, "emb_dim": 16, "vocab_size": 300},
        {"num_layers": 0, "dropout": 2.0},
        ("model.num_layers", "model.dropout"),
        {"epochs": 1},
    ),
    "minilm": Case(
        lambda request: {"family": "minilm", "trainable": "head", "precision": "fp32"},
        {"trainable": "some", "lora_rank": 0},
        ("model.trainable", "model.lora_rank"),
        {"epochs": 1},
    ),
    "pretrained": Case(
        lambda request: {
            "family": "pretrained",
            "checkpoint": str(request.getfixturevalue("tiny_bert")),
            "trainable": "last_block",
            "precision": "fp32",
        },
        {"trainable": "some", "pooling": "max"},
        ("model.trainable", "model.pooling"),
        {"epochs": 1},
    ),
}

TEXTS, LABELS = make_texts(60, seed=21, classes=("ham", "spam", "other"))
QUERIES = ["win a free prize now", "see you at lunch", "rain and snow tonight", "", "call now", "thanks mum"]


def test_every_registered_family_is_held_to_the_contract() -> None:
    assert set(CASES) == set(FAMILIES)


def test_a_registration_says_whether_its_family_is_a_solver_as_the_family_class_does() -> None:
    import importlib

    for entry in FAMILIES.values():
        family_class = getattr(importlib.import_module(entry.module), entry.family_class)
        assert entry.solver is bool(family_class.solver), entry.name
    assert FAMILIES["linear"].solver, "at least one family is declared a solver: the check above can fail"


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, Path]:
    """(family, a model fitted on three classes, the folder it was saved to)."""
    name = request.param
    case = CASES[name]
    values = case.settings(request)
    model = ajuste.TextClassifier(ajuste.validation.model_settings(values))
    history = model.fit(TEXTS[:48], LABELS[:48], validation_data=(TEXTS[48:], LABELS[48:]), verbose=False, **case.fit)
    assert len(history) >= 1 and "val_accuracy" in history.epochs[-1]
    folder = model.save(tmp_path_factory.mktemp(f"contract-{name}") / "model")
    return name, model, folder


def test_fit_learns_the_labels_it_was_given(trained: tuple[str, Any, Path]) -> None:
    _, model, _ = trained
    assert model.classes_ == ["ham", "other", "spam"]
    assert model.history_ is not None and len(model.history_) >= 1


def test_predictions_follow_the_input_order(trained: tuple[str, Any, Path]) -> None:
    _, model, _ = trained
    forward = model.predict(QUERIES)
    backward = model.predict(QUERIES[::-1])
    assert forward.labels == backward.labels[::-1]
    np.testing.assert_allclose(forward.probabilities, backward.probabilities[::-1], atol=1e-5)
    one_by_one = [model.predict([text]).labels[0] for text in QUERIES]
    assert one_by_one == forward.labels


def test_probabilities_are_a_distribution_per_text(trained: tuple[str, Any, Path]) -> None:
    _, model, _ = trained
    probabilities = model.predict_proba(QUERIES)
    assert probabilities.shape == (len(QUERIES), 3)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    labels = model.predict(QUERIES).labels
    assert labels == [model.classes_[i] for i in probabilities.argmax(axis=1)]


def test_save_and_load_give_the_same_predictions(trained: tuple[str, Any, Path]) -> None:
    _, model, folder = trained
    loaded = ajuste.load(folder)
    assert loaded.classes_ == model.classes_
    assert type(loaded.settings) is type(model.settings) and loaded.settings == model.settings
    np.testing.assert_allclose(loaded.predict_proba(QUERIES), model.predict_proba(QUERIES), atol=1e-6)


def test_a_saved_model_holds_data_only(trained: tuple[str, Any, Path]) -> None:
    _, _, folder = trained
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".txt", ".model"}, suffixes
    assert json.loads((folder / "config.json").read_text(encoding="utf-8"))["format"] == "ajuste-model"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_settings_are_refused_with_every_problem_listed(name: str, request: pytest.FixtureRequest) -> None:
    case = CASES[name]
    values = {**case.settings(request), **case.bad}
    with pytest.raises(ConfigError) as caught:
        ajuste.validation.model_settings(values)
    message = str(caught.value)
    assert "\n" not in message
    for problem in case.problems:
        assert problem in message, message

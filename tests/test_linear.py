"""The ``linear`` family: scikit-learn's TF-IDF and linear classifiers, solved once, kept as data."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse
import yaml
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

import ajuste
from ajuste.errors import ConfigError
from ajuste.models.settings import LinearSettings
from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]
TEXTS, LABELS = make_texts(90, seed=8, classes=("ham", "spam", "other"))
QUERIES = [*make_texts(30, seed=99, classes=("ham", "spam", "other"))[0], "", "zzz unknown words only"]


def reference(settings: LinearSettings, texts: list[str], labels: list[str], queries: list[str]) -> np.ndarray:
    """What scikit-learn's own pipeline predicts with the same settings."""
    common = {"sublinear_tf": settings.sublinear_tf, "min_df": settings.min_df}
    blocks = []
    if settings.analyzer != "char":
        blocks.append(TfidfVectorizer(ngram_range=(1, settings.word_ngrams), **common))
    if settings.analyzer != "word":
        blocks.append(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, settings.char_ngrams), **common))
    train = scipy.sparse.hstack([b.fit_transform(texts) for b in blocks]).tocsr()
    test = scipy.sparse.hstack([b.transform(queries) for b in blocks]).tocsr()
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    if settings.classifier == "logistic":
        model: Any = LogisticRegression(C=settings.C, max_iter=settings.max_iter)
    else:
        svm = LinearSVC(C=settings.C, random_state=0)  # liblinear's order of visits, fixed as ajuste fixes it
        model = CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)
    return np.asarray(model.fit(train, y).predict_proba(test))


def test_a_second_fit_solves_again_from_the_new_texts_alone() -> None:
    """A solver starts from nothing each time: a second fit had kept the first texts' vocabulary (new words
    unknown, every prediction one class) and classes."""
    second = (
        [text.replace("a", "o") + " fresh words" for text in TEXTS],
        ["x" if lab == "ham" else "y" for lab in LABELS],
    )
    model = ajuste.TextClassifier(LinearSettings())
    model.fit(TEXTS, LABELS, verbose=False)
    model.fit(*second, verbose=False)
    fresh = ajuste.TextClassifier(LinearSettings())
    fresh.fit(*second, verbose=False)
    assert model.classes_ == fresh.classes_ == ["x", "y"]
    np.testing.assert_allclose(model.predict_proba(QUERIES), fresh.predict_proba(QUERIES))


def test_an_svm_fit_is_the_same_whatever_numpy_s_global_generator_holds() -> None:
    """liblinear shuffles the texts with a seed from numpy's global generator unless given one: two fits of the
    same texts had differed by ~1e-4 in probability, depending on what ran before."""
    results = []
    for state in (0, 1, 2):
        np.random.seed(state)
        model = ajuste.TextClassifier(LinearSettings(classifier="svm", C=3.0))
        model.fit(TEXTS, LABELS, verbose=False)
        results.append(model.predict_proba(QUERIES))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


@pytest.mark.parametrize("classifier", ["logistic", "svm"])
@pytest.mark.parametrize("analyzer", ["word", "char", "word+char"])
@pytest.mark.parametrize("classes", [2, 3])
def test_predictions_equal_scikit_learn_s_pipeline(classifier: str, analyzer: str, classes: int) -> None:
    names = ("ham", "spam", "other")[:classes]
    texts, labels = zip(*[(t, label) for t, label in zip(TEXTS, LABELS) if label in names])
    settings = LinearSettings(classifier=classifier, analyzer=analyzer, C=3.0, char_ngrams=4)  # type: ignore[arg-type]
    model = ajuste.TextClassifier(settings)
    model.fit(list(texts), list(labels), verbose=False)
    np.testing.assert_allclose(
        model.predict_proba(QUERIES),
        reference(settings, list(texts), list(labels), QUERIES),
        atol=1e-5,  # fp32 weights
    )


def test_fitting_is_one_solved_epoch_with_a_history() -> None:
    model = ajuste.build("linear")
    history = model.fit(TEXTS[:70], LABELS[:70], validation_data=(TEXTS[70:], LABELS[70:]), epochs=30, verbose=False)
    assert len(history) == 1  # a solver has no epochs to count: the setting is moot
    row = history.epochs[0]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1"} <= set(row) and "lr" not in row
    assert row["accuracy"] == 1.0


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ajuste.build("linear", analyzer="word+char", classifier="svm")
    model.fit(TEXTS, LABELS, verbose=False)
    folder = model.save(tmp_path / "model")
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "vocabulary.json",
        "idf.safetensors",
    }
    vocabularies = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    assert len(vocabularies) == 2 and all(isinstance(v, dict) for v in vocabularies)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loading a linear model unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = ajuste.load(folder)
    assert loaded.predict(QUERIES).labels == model.predict(QUERIES).labels
    np.testing.assert_array_equal(loaded.predict_proba(QUERIES), model.predict_proba(QUERIES))


def test_a_class_missing_from_training_is_never_predicted() -> None:
    model = ajuste.TextClassifier(LinearSettings(), labels=["ham", "other", "spam"])
    texts, labels = zip(*[(t, label) for t, label in zip(TEXTS, LABELS) if label != "other"])
    model.fit(list(texts), list(labels), verbose=False)
    probabilities = model.predict_proba(QUERIES)
    assert probabilities[:, 1].max() < 1e-3
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_an_empty_vocabulary_is_a_settings_error() -> None:
    model = ajuste.build("linear", min_df=1000)
    with pytest.raises(
        ConfigError, match=r"TF-IDF vocabulary of the training texts is empty.*min_df=1000.*Lower min_df\.$"
    ):
        model.fit(TEXTS, LABELS, verbose=False)
    # emoji and one-letter words are no words to sklearn: it said "perhaps the documents only contain stop words"
    with pytest.raises(ConfigError, match=r"no words to count .*emoji.*Use analyzer=\"char\""):
        ajuste.build("linear").fit(["\U0001f600 \U0001f44d", "a b", "\U0001f622 !"] * 4, ["x", "y", "z"] * 4)
    assert ajuste.build("linear", analyzer="char").fit(["\U0001f600 \U0001f44d", "a b"] * 4, ["x", "y"] * 4)


def test_balanced_class_weights_change_the_solution() -> None:
    extra_ham = [t for t, label in zip(TEXTS[40:], LABELS[40:]) if label == "ham"]
    texts, labels = TEXTS[:40] + extra_ham, LABELS[:40] + ["ham"] * len(extra_ham)  # ham outnumbers the others
    plain = ajuste.build("linear")
    plain.fit(texts, labels, verbose=False)
    balanced = ajuste.build("linear", class_weight="balanced")
    balanced.fit(texts, labels, verbose=False)
    ham = plain.classes_.index("ham")
    assert balanced.predict_proba(QUERIES)[:, ham].mean() < plain.predict_proba(QUERIES)[:, ham].mean()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("linear") / "data.csv", TEXTS, LABELS)


def test_the_command_line_trains_predicts_and_evaluates_a_linear_model(cli: Cli, data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = ("--analyzer", "word+char", "--C", "2.5", "--sublinear-tf", "false", "--classifier", "svm")
    result = cli("train", "--data", data, "--model", "linear", *flags, "--out", run, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["test"]["accuracy"] >= 0.9
    settings = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))["model"]
    assert (settings["family"], settings["analyzer"], settings["C"], settings["sublinear_tf"]) == (
        "linear",
        "word+char",
        2.5,
        False,
    )
    predicted = cli("predict", run, "win a free prize now", "--json")
    assert predicted.code == 0 and predicted.json()["predictions"][0]["label"] == "spam"
    evaluated = cli("evaluate", run, data, "--json")
    assert evaluated.code == 0 and evaluated.json()["metrics"]["accuracy"] >= 0.9


def test_a_flag_of_the_linear_family_is_refused_for_another(cli: Cli, data: Path, tmp_path: Path) -> None:
    result = cli("train", "--data", data, "--model", "bag", "--C", "2", "--out", tmp_path / "run")
    assert result.code == 2 and "--C applies to --model linear only, not bag" in result.err


def test_settings_of_a_gradient_descent_are_refused_not_recorded_as_used(cli: Cli, data: Path, tmp_path: Path) -> None:
    # `--lr 0.1 --epochs 5` were accepted, ignored by the solver and written in run.yaml as if they had been used
    result = cli("train", "--data", data, "--model", "linear", "--lr", "0.1", "--epochs", "5", "--out", tmp_path / "a")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "linear is fitted by its solver in one pass, which does not use --epochs, --lr" in result.err
    assert not (tmp_path / "a").exists()
    refused = cli("train", "--data", data, "--model", "linear", "--no-restore-best", "--out", tmp_path / "b")
    assert refused.code == 2 and "--no-restore-best" in refused.err
    with pytest.raises(ConfigError, match=r"does not use train\.weight_decay"):
        ajuste.train({"data": {"path": str(data)}, "model": {"family": "linear"}, "train": {"weight_decay": 0.1}})
    ok = cli(
        "train", "--data", data, "--model", "linear", "--epochs", "1", "--batch-size", "64", "--out", tmp_path / "c"
    )
    assert ok.code == 0, ok.err
    again = cli("train", "--config", tmp_path / "c" / "run.yaml", "--out", tmp_path / "d", "--json")
    assert again.code == 0 and again.json()["test"] == headline_test_metrics(tmp_path / "c"), again.err
    # a search fixes --lr for every family: the linear final model's run.yaml records its own settings only
    tuned = ajuste.tune(
        data, model="linear", sampler="random", pruner="none", trials=1, train={"lr": 0.5}, out=tmp_path / "t"
    )
    written = yaml.safe_load((tuned.run_dir / "run.yaml").read_text(encoding="utf-8"))["train"]
    assert written["lr"] is None and written["epochs"] == 1


def headline_test_metrics(run: Path) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]
    keys = ("accuracy", "macro_f1", "loss", "accuracy_ci95")
    return {key: metrics[key] for key in keys}


def test_tune_searches_the_linear_family_s_default_space(data: Path, tmp_path: Path) -> None:
    result = ajuste.tune(data, model="linear", sampler="random", pruner="none", trials=4, out=tmp_path / "run")
    trials = result.study.get_trials()
    settings = [t.user_attrs["settings"] for t in trials]
    assert [t.user_attrs.get("portfolio") for t in trials[:2]] == [
        "linear defaults",
        "linear model.classifier=svm, model.analyzer=word+char",
    ]
    assert settings[1]["model.classifier"] == "svm" and len({s["model.C"] for s in settings[1:]}) == 3
    assert all(s["train.epochs"] == 1 for s in settings)
    assert {"model.analyzer", "model.sublinear_tf", "model.min_df", "model.class_weight"} <= set(settings[0])
    assert result.metrics["test"]["accuracy"] >= 0.8

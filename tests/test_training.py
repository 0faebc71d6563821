"""TextClassifier: compile, fit (History, early stopping, restore_best, callbacks, grad_accum), evaluate,
predict, determinism, and save → load in a new process without unpickling anything."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ajuste
from ajuste.errors import AjusteError, ConfigError, DataError, NotFittedError, RunFolderError
from ajuste.training import TextClassifier
from ajuste.training.callbacks import is_improvement
from tests.conftest import make_texts, write_csv

TEXTS, LABELS = make_texts(120)
TRAIN = (TEXTS[:80], LABELS[:80])
VAL = (TEXTS[80:100], LABELS[80:100])
TEST = (TEXTS[100:], LABELS[100:])
EPOCH_KEYS = {
    "epoch",
    "loss",
    "accuracy",
    "macro_f1",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "lr",
    "seconds",
    "seconds_validating",
}


def small_bag(**settings: Any) -> TextClassifier:
    """A fast bag model: small embeddings, few n-gram buckets, a high learning rate."""
    model = ajuste.build("bag", **{"embed_dim": 16, "buckets": 1000, **settings})
    return model.compile(lr=0.05)


def tiny_gpt() -> TextClassifier:
    return ajuste.build("gpt", num_layers=2, num_heads=2, emb_dim=32, context_length=32, vocab_size=300).compile()


def fit_quiet(model: TextClassifier, epochs: int = 2, **kwargs: Any) -> ajuste.History:
    return model.fit(*TRAIN, validation_data=VAL, epochs=epochs, verbose=False, **kwargs)


def weights(model: TextClassifier) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.module_.state_dict().items()}


def without_seconds(history: ajuste.History) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in history.epochs]


@pytest.fixture(scope="module")
def trained_bag() -> TextClassifier:
    model = small_bag()
    fit_quiet(model, epochs=4)
    return model


# -- compile --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"lr": 0}, "train.lr"),
        ({"lr": -1e-3}, "train.lr"),
        ({"optimizer": "adagrad"}, "train.optimizer"),
        ({"scheduler": "step"}, "train.scheduler"),
        ({"warmup": 1.0}, "train.warmup"),
        ({"label_smoothing": 1.0}, "train.label_smoothing"),
        ({"weight_decay": -0.1}, "train.weight_decay"),
        ({"max_grad_norm": 0}, "train.max_grad_norm"),
        ({"metrics": ["accuracy", "auc"]}, "unknown metric auc"),
    ],
)
def test_compile_refuses_bad_settings(settings: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        ajuste.build("bag").compile(**settings)


def test_compile_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        ajuste.build("bag").compile(lr=-1, optimizer="adagrad", warmup=2)
    assert all(name in str(error.value) for name in ("train.lr", "train.optimizer", "train.warmup"))


def test_compile_returns_the_model_and_stores_settings() -> None:
    model = ajuste.build("bag")
    assert model.compile(optimizer="sgd", lr=0.1, scheduler="cosine", warmup=0.1) is model
    assert model.compile_settings is not None
    assert (model.compile_settings.optimizer, model.compile_settings.lr) == ("sgd", 0.1)


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"epochs": 0}, "train.epochs"),
        ({"batch_size": 0}, "train.batch_size"),
        ({"grad_accum": 0}, "train.grad_accum"),
        ({"early_stopping": 0}, "train.early_stopping"),
        ({"monitor": "val_auc"}, "train.monitor"),
    ],
)
def test_fit_refuses_bad_settings(settings: dict[str, Any], where: str) -> None:
    model = small_bag()
    with pytest.raises(ConfigError, match=where):
        model.fit(*TRAIN, verbose=False, **settings)
    assert not model.is_fitted


def test_fit_refuses_mismatched_or_missing_labels() -> None:
    model = small_bag()
    with pytest.raises(ConfigError, match="80 texts but 79 labels"):
        model.fit(TRAIN[0], TRAIN[1][:-1], verbose=False)
    with pytest.raises(ConfigError, match="needs labels"):
        model.fit(TRAIN[0], verbose=False)
    with pytest.raises(ConfigError, match="single string"):
        model.fit("one text", ["ham"], verbose=False)
    with pytest.raises(DataError, match="two classes"):
        model.fit(TRAIN[0], ["ham"] * 80, verbose=False)


def test_validation_labels_unseen_in_training_are_refused() -> None:
    with pytest.raises(DataError, match="never saw"):
        small_bag().fit(*TRAIN, validation_data=(VAL[0], ["other"] * len(VAL[0])), epochs=1, verbose=False)


def test_predictions_and_history_read_as_lists() -> None:
    model = small_bag()
    history = model.fit(*TRAIN, epochs=2, verbose=False)
    assert [row["epoch"] for row in history] == [1, 2] and history[-1] is history.epochs[-1]
    predictions = model.predict(VAL[0][:4])
    assert list(predictions) == predictions.labels and predictions[1] == predictions.labels[1]
    tail = predictions[2:]
    assert tail.labels == predictions.labels[2:] and (tail.probabilities == predictions.probabilities[2:]).all()


def test_a_second_fit_goes_on_with_the_first_fit_s_classes() -> None:
    model = small_bag()
    model.fit(*TRAIN, epochs=1, verbose=False)
    with pytest.raises(DataError, match=r"outside the model's classes \(set by its first fit.*Build a new model"):
        model.fit(TRAIN[0], ["other"] * len(TRAIN[0]), epochs=1, verbose=False)


# -- fit and History ------------------------------------------------------------------------------


def test_fit_returns_a_history_row_per_epoch() -> None:
    model = small_bag()
    history = fit_quiet(model, epochs=3)
    assert isinstance(history, ajuste.History) and len(history) == 3
    assert model.history_ is history
    for number, row in enumerate(history.epochs, start=1):
        assert set(row) == EPOCH_KEYS
        assert row["epoch"] == number
        assert row["loss"] > 0 and row["val_loss"] > 0 and row["seconds"] >= 0
        for key in ("accuracy", "macro_f1", "val_accuracy", "val_macro_f1"):
            assert 0.0 <= row[key] <= 1.0
    lrs = history.history["lr"]
    assert lrs[0] > lrs[1] > lrs[2] == pytest.approx(0.0, abs=1e-9)  # linear decay to zero by default
    assert history.history["val_loss"] == [row["val_loss"] for row in history.epochs]
    assert history.best_epoch in (1, 2, 3)
    again = ajuste.History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again.epochs == history.epochs and again.best_epoch == history.best_epoch


def test_fit_without_validation_has_train_metrics_only() -> None:
    history = small_bag().fit(*TRAIN, epochs=2, verbose=False)
    assert set(history.epochs[0]) == {"epoch", "loss", "accuracy", "macro_f1", "lr", "seconds"}


def test_fit_learns_the_small_data(trained_bag: TextClassifier) -> None:
    history = trained_bag.history_
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert history.epochs[-1]["accuracy"] >= 0.9
    assert trained_bag.evaluate(*TEST)["accuracy"] >= 0.85


def test_verbose_fit_shows_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    small_bag().fit(*TRAIN, validation_data=VAL, epochs=2, verbose=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err and "val_accuracy" in captured.err


def test_quiet_fit_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    small_bag().fit(*TRAIN, validation_data=VAL, epochs=1, verbose=False)
    assert capsys.readouterr() == ("", "")


def test_fit_accepts_a_text_dataset() -> None:
    train = ajuste.TextDataset.from_lists(*TRAIN)
    val = ajuste.TextDataset.from_lists(*VAL)
    history = small_bag().fit(train, validation_data=val, epochs=1, verbose=False)
    assert "val_loss" in history.epochs[0]


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    model = small_bag()
    history = fit_quiet(model, epochs=40, early_stopping=2, monitor="val_accuracy")
    assert history.stopped_early
    assert len(history) < 40
    assert len(history) == history.best_epoch + 2
    best = history.epochs[history.best_epoch - 1]["val_accuracy"]
    assert all(row["val_accuracy"] <= best for row in history.epochs[history.best_epoch :])


def test_an_accuracy_tied_with_the_best_is_better_when_its_loss_is_lower() -> None:
    best = {"val_accuracy": 0.9, "val_loss": 0.30}
    assert is_improvement("val_accuracy", {"val_accuracy": 0.9, "val_loss": 0.20}, best)
    assert not is_improvement("val_accuracy", {"val_accuracy": 0.9, "val_loss": 0.40}, best)
    assert not is_improvement("val_accuracy", {"val_accuracy": 0.8, "val_loss": 0.01}, best)
    assert is_improvement("val_accuracy", {"val_accuracy": 0.95, "val_loss": 0.90}, best)
    assert not is_improvement("val_loss", {"val_accuracy": 1.0, "val_loss": 0.30}, best), "a loss has no tie-break"
    assert is_improvement("accuracy", {"accuracy": 0.9, "loss": 0.1}, {"accuracy": 0.9, "loss": 0.2})


def test_restore_best_on_accuracy_keeps_the_tied_epoch_of_lowest_loss() -> None:
    # on a small validation split accuracy reaches its top early and stays there while the loss still falls:
    # the first epoch at the top is the least trained of them
    model = small_bag()
    history = fit_quiet(model, epochs=8, monitor="val_accuracy")
    rows = history.epochs
    top = max(row["val_accuracy"] for row in rows)
    tied = [row for row in rows if row["val_accuracy"] == top]
    assert len(tied) > 1 and len({row["val_loss"] for row in tied}) > 1, "the data must give ties to break"
    chosen = min(tied, key=lambda row: row["val_loss"])
    assert history.best_epoch == chosen["epoch"]
    assert model.evaluate(*VAL)["loss"] == pytest.approx(chosen["val_loss"], rel=1e-4)


class Scramble(ajuste.Callback):
    """Ruin the weights at the start of one epoch, so that the best epoch is the one before."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch == self.epoch:
            with torch.no_grad():
                for parameter in self.model.module_.parameters():
                    parameter.copy_(torch.randn_like(parameter) * 5)


@pytest.mark.parametrize("restore_best", [True, False])
def test_restore_best_ends_with_the_best_epochs_weights(restore_best: bool) -> None:
    model = ajuste.build("bag", embed_dim=16, buckets=1000).compile(lr=1e-3, scheduler="constant")
    history = fit_quiet(model, epochs=3, callbacks=[Scramble(epoch=3)], restore_best=restore_best)
    rows = history.epochs
    assert history.best_epoch == 2 and rows[2]["val_loss"] > rows[1]["val_loss"] + 0.5
    final = model.evaluate(*VAL)
    chosen = rows[1] if restore_best else rows[2]
    assert final["loss"] == pytest.approx(chosen["val_loss"], rel=1e-4)
    assert final["accuracy"] == pytest.approx(chosen["val_accuracy"])


class Recorder(ajuste.Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.calls.append(("train_begin", logs["epochs"], logs["steps_per_epoch"]))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        assert math.isfinite(logs["loss"])
        self.calls.append(("batch_end", batch))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        assert set(logs) == EPOCH_KEYS and logs["epoch"] == epoch
        self.calls.append(("epoch_end", epoch))

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self.calls.append(("train_end", logs["best_epoch"]))


def test_callback_hooks_are_called_in_order() -> None:
    recorder = Recorder()
    model = small_bag()
    history = model.fit(*TRAIN, validation_data=VAL, epochs=2, batch_size=32, callbacks=[recorder], verbose=False)
    assert recorder.model is model
    steps = math.ceil(80 / 32)
    batches = [("batch_end", b) for b in range(1, steps + 1)]
    epoch_1 = [("epoch_begin", 1), *batches, ("epoch_end", 1)]
    epoch_2 = [("epoch_begin", 2), *batches, ("epoch_end", 2)]
    assert recorder.calls == [("train_begin", 2, steps), *epoch_1, *epoch_2, ("train_end", history.best_epoch)]


def test_a_callback_can_stop_training() -> None:
    class StopAfterTwo(ajuste.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
            if epoch == 2:
                self.model.stop_training = True

    recorder = Recorder()
    model = small_bag()
    history = fit_quiet(model, epochs=10, callbacks=[StopAfterTwo(), recorder])
    assert len(history) == 2 and history.stopped_early
    assert recorder.calls[-1][0] == "train_end"
    # a later fit starts afresh, with stop_training reset
    assert len(fit_quiet(model, epochs=3)) == 3


class WeightChanges(ajuste.Callback):
    """Counts the batches after which the weights changed, i.e. the optimizer steps."""

    def __init__(self) -> None:
        self.steps = 0
        self.previous: torch.Tensor | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
        current = self.model.module_.fc.weight.detach().clone()
        if self.previous is not None and not torch.equal(current, self.previous):
            self.steps += 1
        self.previous = current

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.previous is None:
            self.previous = self.model.module_.fc.weight.detach().clone()


@pytest.mark.parametrize(("grad_accum", "steps"), [(1, 10), (2, 5), (3, 4), (10, 1)])
def test_grad_accum_steps_once_per_group_of_batches(grad_accum: int, steps: int) -> None:
    counter = WeightChanges()
    model = ajuste.build("bag", embed_dim=16, buckets=1000).compile(lr=0.05, scheduler="constant")
    history = model.fit(*TRAIN, batch_size=8, grad_accum=grad_accum, epochs=1, callbacks=[counter], verbose=False)
    assert counter.steps == steps
    assert math.isfinite(history.epochs[0]["loss"])


@pytest.mark.parametrize(("warmup", "middle"), [(0.0, 0.5), (0.5, 1.0)])
def test_linear_schedule_counts_optimizer_steps_not_batches(warmup: float, middle: float) -> None:
    # 80 texts in batches of 8, 3 batches per step: 4 steps per epoch, 8 in all
    model = ajuste.build("bag", embed_dim=16, buckets=1000).compile(lr=0.05, scheduler="linear", warmup=warmup)
    history = model.fit(*TRAIN, batch_size=8, grad_accum=3, epochs=2, verbose=False)
    assert history.history["lr"] == [pytest.approx(0.05 * middle), pytest.approx(0.0, abs=1e-12)]


def test_class_weights_and_label_smoothing_change_the_loss() -> None:
    def first_loss(**compile_settings: Any) -> float:
        model = ajuste.build("bag", embed_dim=16, buckets=1000).compile(lr=0.05, **compile_settings)
        return fit_quiet(model, epochs=1).epochs[0]["loss"]

    plain = first_loss()
    weighted = first_loss(class_weights={"ham": 1.0, "spam": 4.0})
    smoothed = first_loss(label_smoothing=0.2)
    assert plain == first_loss()  # the comparison is meaningful: same seed, same loss
    assert weighted != pytest.approx(plain, rel=1e-3)
    assert smoothed != pytest.approx(plain, rel=1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("scheduler", ["constant", "cosine"])
def test_other_optimizers_and_schedules_train(optimizer: str, scheduler: str) -> None:
    model = ajuste.build("bag", embed_dim=16, buckets=1000).compile(
        optimizer=optimizer, lr=0.05, scheduler=scheduler, warmup=0.2
    )
    history = fit_quiet(model, epochs=2)
    assert all(math.isfinite(row["loss"]) for row in history.epochs)
    # constant stays at the peak; cosine, like linear, ends the schedule at zero
    assert history.epochs[-1]["lr"] == pytest.approx(0.05 if scheduler == "constant" else 0.0, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "kind"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_the_optimizer_named_is_the_one_built(name: str, kind: type) -> None:
    from ajuste.training.optim import make_optimizer
    from ajuste.training.settings import CompileSettings

    built = make_optimizer(torch.nn.Linear(4, 2), CompileSettings(optimizer=name, weight_decay=0.01), lr=0.1)
    assert type(built) is kind
    assert [group["weight_decay"] for group in built.param_groups] == [0.01, 0.0]  # none on the bias
    if name == "sgd":
        assert built.param_groups[0]["momentum"] == 0.9


def test_each_schedule_has_its_shape() -> None:
    from ajuste.training.optim import make_scheduler
    from ajuste.training.settings import CompileSettings

    def rates(scheduler: str) -> list[float]:
        optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
        schedule = make_scheduler(optimizer, CompileSettings(scheduler=scheduler, warmup=0.2), total_steps=10)
        seen = []
        for _ in range(10):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    warmup = [1 / 3, 2 / 3]  # two warmup steps of ten, rising to the peak
    assert rates("constant") == pytest.approx(warmup + [1.0] * 8)
    # a quarter of the way through the decay (step 4 of 2..10): linear 0.75, cosine (1 + cos(pi/4)) / 2
    assert rates("linear")[2:5] == pytest.approx([1.0, 0.875, 0.75])
    cosine = [0.5 * (1 + math.cos(math.pi * progress)) for progress in (0.0, 0.125, 0.25)]
    assert rates("cosine")[2:5] == pytest.approx(cosine)


# -- evaluate and predict -------------------------------------------------------------------------


def test_accuracy_interval_depends_on_the_counts_alone() -> None:
    from ajuste.training.metrics import accuracy_interval

    correct = (np.random.default_rng(1).random(200) < 0.8).astype(np.float64)
    interval = accuracy_interval(correct)
    assert interval[0] < correct.mean() < interval[1]
    assert accuracy_interval(correct[::-1]) == interval
    assert accuracy_interval(np.random.default_rng(2).permutation(correct)) == interval


def test_accuracy_interval_of_many_texts_holds_a_block_of_draws_at_a_time() -> None:
    """A 140,000-text training split held 4.5 GB of bootstrap draws at once (a 200,000-row linear run peaked at
    4.9 GB); the draws come a block at a time now, from the same stream, so the interval is the one it was."""
    import tracemalloc

    from ajuste.training.metrics import accuracy_interval

    correct = (np.random.default_rng(1).random(50_000) < 0.9).astype(np.float64)
    draws = np.random.default_rng(0).integers(0, len(correct), size=(2000, len(correct)))
    scores = np.sort(correct)[draws].mean(axis=1)
    expected = [float(np.quantile(scores, 0.025)), float(np.quantile(scores, 0.975))]
    del draws, scores
    tracemalloc.start()  # NumPy reports its arrays to tracemalloc
    try:
        interval = accuracy_interval(correct)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert interval == expected
    assert peak < 100 * 2**20  # all draws at once: 1.6 GB


def test_evaluate_reports_every_metric(trained_bag: TextClassifier) -> None:
    metrics = trained_bag.evaluate(*TEST)
    assert metrics["n"] == 20
    low, high = metrics["accuracy_ci95"]
    assert 0.0 <= low <= metrics["accuracy"] <= high <= 1.0
    assert metrics["labels"] == ["ham", "spam"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == 20
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 20)
    per_class = metrics["per_class"]
    assert set(per_class) == {"ham", "spam"}
    assert [per_class[c]["support"] for c in ("ham", "spam")] == matrix.sum(axis=1).tolist()
    for i, label in enumerate(("ham", "spam")):
        if matrix[:, i].sum():
            assert per_class[label]["precision"] == pytest.approx(matrix[i, i] / matrix[:, i].sum())
        assert per_class[label]["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
    assert metrics["macro_f1"] == pytest.approx(np.mean([per_class[c]["f1"] for c in ("ham", "spam")]))
    probabilities = trained_bag.predict(TEST[0]).probabilities
    expected_loss = -np.mean(np.log([probabilities[i, ["ham", "spam"].index(y)] for i, y in enumerate(TEST[1])]))
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-4)


def test_evaluate_refuses_empty_data(trained_bag: TextClassifier) -> None:
    with pytest.raises(DataError, match="nothing to evaluate"):
        trained_bag.evaluate([], [])


def test_evaluate_loss_is_the_exact_cross_entropy_even_for_confident_mistakes() -> None:
    model = small_bag()
    fit_quiet(model, epochs=2)
    with torch.no_grad():
        model.module_.fc.weight.mul_(100.0)  # logits far apart: probabilities below float32's epsilon
    texts = ["win free prize cash claim now", "see you at lunch later mum"]
    family = model.family_
    with torch.no_grad():
        logits = model.module_.eval()(**family.collate(family.encode(texts)))
    wrong = [model.classes_[i] for i in logits.argmin(dim=1).tolist()]
    expected = float(torch.nn.functional.cross_entropy(logits, torch.tensor([model.classes_.index(w) for w in wrong])))
    assert expected > 20
    metrics = model.evaluate(texts, wrong)
    assert metrics["accuracy"] == 0.0
    assert metrics["loss"] == pytest.approx(expected, rel=1e-4)


def test_evaluate_refuses_unknown_labels(trained_bag: TextClassifier) -> None:
    with pytest.raises(DataError, match="'other'"):
        trained_bag.evaluate(TEST[0], ["other"] * len(TEST[0]))


def test_predict_keeps_input_order_and_matches_one_at_a_time(trained_bag: TextClassifier) -> None:
    texts = [*TEST[0], "", "win", TEST[0][0] + " and then some more words at the end"]
    together = trained_bag.predict(texts, batch_size=4)
    one_by_one = np.vstack([trained_bag.predict([t]).probabilities for t in texts])
    np.testing.assert_allclose(together.probabilities, one_by_one, rtol=1e-5, atol=1e-6)
    assert together.labels == [trained_bag.predict([t]).labels[0] for t in texts]
    np.testing.assert_allclose(together.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert together.classes == ["ham", "spam"]
    assert together.labels == [together.classes[i] for i in together.probabilities.argmax(axis=1)]
    records = together.to_records()
    assert records[0]["label"] == together.labels[0]
    assert records[0]["probabilities"]["spam"] == pytest.approx(float(together.probabilities[0, 1]))


def test_predict_order_with_a_transformer() -> None:
    model = tiny_gpt()
    fit_quiet(model, epochs=1)
    texts = ["win", *TEST[0][:6], "see you at lunch later mum thanks for dinner"]
    together = model.predict(texts, batch_size=3).probabilities
    one_by_one = np.vstack([model.predict([t]).probabilities for t in texts])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-4, atol=1e-5)


def test_predict_accepts_no_texts_and_refuses_a_string(trained_bag: TextClassifier) -> None:
    empty = trained_bag.predict([])
    assert len(empty) == 0 and empty.probabilities.shape == (0, 2)
    with pytest.raises(ConfigError, match="list of texts"):
        trained_bag.predict("free prize")  # type: ignore[arg-type]


def test_predict_and_evaluate_before_fit_raise_not_fitted() -> None:
    model = ajuste.build("bag")
    with pytest.raises(NotFittedError, match="fit"):
        model.predict(["text"])
    with pytest.raises(NotFittedError):
        model.evaluate(["text"], ["ham"])
    with pytest.raises(NotFittedError):
        model.save("anywhere")
    assert isinstance(NotFittedError("x"), ajuste.AjusteError)


def test_a_bad_value_from_the_caller_is_a_value_error(tmp_path: Path) -> None:
    # Python and scikit-learn raise ValueError for a bad argument: `except ValueError` catches ajuste's too
    with pytest.raises(ValueError, match="unknown model"):
        ajuste.build("nope")
    with pytest.raises(ValueError, match="lr"):
        ajuste.build("bag").compile(lr=-1.0)
    with pytest.raises(ValueError, match="fit"):
        ajuste.build("bag").predict(["text"])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        ajuste.build("bag").fit(["a", "b"], ["x"])
    # what is not a bad value stays an AjusteError alone: a missing run folder is not the caller's value
    with pytest.raises(RunFolderError) as missing:
        ajuste.load(tmp_path / "missing")
    assert not isinstance(missing.value, ValueError)


def test_a_python_caller_is_told_the_argument_and_the_command_line_the_flag(tmp_path: Path) -> None:
    texts, labels = make_texts(60)
    with pytest.raises(ConfigError) as caught:
        ajuste.build("bag", min_freq=1000, ngrams=1).fit(texts, labels, epochs=1, verbose=False)
    assert str(caught.value).endswith("Lower min_freq.") and "--" not in str(caught.value)
    assert caught.value.for_command_line().endswith("Lower --min-freq.")
    data = write_csv(tmp_path / "data.csv", texts, labels)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine", encoding="utf-8")
    config = {"data": {"path": str(data)}, "model": {"family": "bag"}, "out": str(taken)}
    with pytest.raises(RunFolderError) as refused:
        ajuste.train(config, verbose=False)
    message = str(refused.value)
    assert "Choose another out, or pass overwrite=True to replace it." in message and "--" not in message
    assert "Choose another --out, or pass --overwrite to replace it." in refused.value.for_command_line()
    assert (taken / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_python_list_may_end_the_argument_s_wording() -> None:
    error = ConfigError("linear cannot learn from a teacher", fix="Search [[--model bag,gpt||model=['bag', 'gpt']]].")
    assert str(error).endswith("Search model=['bag', 'gpt'].")
    assert error.for_command_line().endswith("Search --model bag,gpt.")


def test_a_logged_error_names_the_flags_on_the_command_line_and_the_arguments_in_python(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a warning that quotes an error (a final model that cannot be reused, a trial not re-scored) is worded for
    # its reader, as the error line is: the command line's logging renders the flags
    script = (
        "import logging\n"
        "from ajuste.cli.main import _configure_logging\n"
        "from ajuste.errors import RunFolderError\n"
        "_configure_logging(False)\n"
        "error = RunFolderError('history.json is damaged', fix='Train again with [[--overwrite||overwrite=True]].')\n"
        "logging.getLogger('ajuste.runs').warning('cannot be reused (%s)', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert "Train again with --overwrite." in done.stderr and "overwrite=True" not in done.stderr
    with caplog.at_level(logging.WARNING, logger="ajuste.runs"):
        error = RunFolderError("history.json is damaged", fix="Train again with [[--overwrite||overwrite=True]].")
        logging.getLogger("ajuste.runs").warning("cannot be reused (%s)", error)
    assert "Train again with overwrite=True." in caplog.text and "--overwrite" not in caplog.text


# -- determinism ----------------------------------------------------------------------------------


def train_twice(build: Any, seed_b: int) -> tuple[TextClassifier, TextClassifier]:
    a, b = build(), build()
    fit_quiet(a, epochs=2, seed=7)
    fit_quiet(b, epochs=2, seed=seed_b)
    return a, b


@pytest.mark.parametrize("family", ["bag", "gpt", "tiny_bert"])
def test_same_seed_same_weights_and_history_other_seed_differs(family: str, request: pytest.FixtureRequest) -> None:
    if family == "bag":
        build = small_bag
    elif family == "gpt":
        build = tiny_gpt
    else:
        checkpoint = str(request.getfixturevalue(family))

        def build() -> TextClassifier:
            return ajuste.build(checkpoint, trainable="last_block").compile(lr=1e-3)

    a, b = train_twice(build, seed_b=7)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert without_seconds(a.history_) == without_seconds(b.history_)
    np.testing.assert_array_equal(a.predict(TEST[0]).probabilities, b.predict(TEST[0]).probabilities)

    c = build()
    fit_quiet(c, epochs=2, seed=8)
    wc = weights(c)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert without_seconds(a.history_) != without_seconds(c.history_)


def test_fit_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    small_bag().fit(*TRAIN, epochs=1, verbose=False)
    torch.testing.assert_close(torch.rand(3), expected)


# -- save and load --------------------------------------------------------------------------------

PROBE = [*TEST[0], "", "WIN a FREE prize now", "see you at lunch"]
LOADER = """
import json, sys
import ajuste
texts = json.loads(sys.argv[1])
result = {}
for folder in sys.argv[2:]:
    model = ajuste.load(folder)
    result[folder] = {
        "probabilities": model.predict(texts, precision="fp32").probabilities.tolist(),
        "classes": model.classes_,
        "precision": model.settings.precision,
    }
print(json.dumps(result))
"""
SAFE_SUFFIXES = {".safetensors", ".json", ".txt", ".model"}


def saved_model_builders(tiny_bert: Path, tiny_gpt2: Path) -> dict[str, Any]:
    return {
        "bag": small_bag,
        "gpt": tiny_gpt,
        "tiny_bert-last_block": lambda: ajuste.build(str(tiny_bert), trainable="last_block").compile(lr=1e-3),
        "tiny_gpt2-lora": lambda: ajuste.build(str(tiny_gpt2), trainable="lora", lora_rank=4).compile(lr=1e-2),
    }


@pytest.fixture(scope="module")
def saved_models(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, tiny_gpt2: Path
) -> dict[str, tuple[Path, np.ndarray, list[str], dict[str, Any]]]:
    """Each model trained and saved, its predictions here, and the predictions of a fresh process that loads it."""
    root = tmp_path_factory.mktemp("saved")
    here: dict[str, tuple[Path, np.ndarray, list[str]]] = {}
    for name, build in saved_model_builders(tiny_bert, tiny_gpt2).items():
        model = build()
        model.fit(*TRAIN, validation_data=VAL, epochs=2, batch_size=16, verbose=False)
        folder = model.save(root / name)
        # compared in fp32: a LoRA model is saved merged, equal to the trained one within fp32 rounding only
        here[name] = (folder, model.predict(PROBE, precision="fp32").probabilities, list(model.classes_))
    env = {**os.environ, "PYTHONHASHSEED": "4242", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(PROBE), *(str(f) for f, _, _ in here.values())],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    return {name: (folder, probs, classes, loaded[str(folder)]) for name, (folder, probs, classes) in here.items()}


@pytest.mark.parametrize("name", ["bag", "gpt", "tiny_bert-last_block", "tiny_gpt2-lora"])
def test_saved_model_predicts_the_same_in_a_new_process(saved_models: dict[str, Any], name: str) -> None:
    _, probabilities, classes, loaded = saved_models[name]
    assert loaded["classes"] == classes
    assert loaded["precision"] == ("fp32" if name in ("bag", "gpt") else "bf16")  # the setting is saved too
    np.testing.assert_allclose(np.array(loaded["probabilities"]), probabilities, rtol=1e-5, atol=1e-7)
    assert probabilities.std(axis=0).max() > 1e-5, "predictions should vary across texts for this to mean much"


@pytest.mark.parametrize("name", ["bag", "gpt", "tiny_bert-last_block", "tiny_gpt2-lora"])
def test_model_folder_holds_no_pickles(saved_models: dict[str, Any], name: str) -> None:
    folder = saved_models[name][0]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert {p.suffix for p in files} <= SAFE_SUFFIXES, sorted(p.name for p in files)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["format"] == "ajuste-model" and config["labels"] == ["ham", "spam"]


def test_lora_model_is_saved_merged(saved_models: dict[str, Any]) -> None:
    from safetensors import safe_open

    folder = saved_models["tiny_gpt2-lora"][0]
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert not any("lora_" in key for key in keys)
    assert any(key.startswith("backbone.h.0.attn.c_attn") for key in keys)


@pytest.mark.parametrize("name", ["bag", "gpt", "tiny_bert-last_block", "tiny_gpt2-lora"])
def test_load_never_unpickles(saved_models: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    folder, probabilities, _, _ = saved_models[name]
    model = ajuste.load(folder)
    predicted = model.predict(PROBE, precision="fp32").probabilities
    np.testing.assert_allclose(predicted, probabilities, rtol=1e-5, atol=1e-6)


def test_loaded_model_keeps_its_trainable_policy(saved_models: dict[str, Any]) -> None:
    model = ajuste.load(saved_models["tiny_bert-last_block"][0])
    trainable = {n for n, p in model.module_.named_parameters() if p.requires_grad}
    assert "head.weight" in trainable and not any(n.startswith("backbone.embeddings") for n in trainable)


def test_save_refuses_an_existing_folder_unless_overwrite(trained_bag: TextClassifier, tmp_path: Path) -> None:
    target = trained_bag.save(tmp_path / "model")
    with pytest.raises(RunFolderError, match="already exists"):
        trained_bag.save(target)
    trained_bag.save(target, overwrite=True)
    assert ajuste.load(target).classes_ == ["ham", "spam"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left behind


def test_save_with_overwrite_replaces_a_model_folder_only(
    trained_bag: TextClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # overwrite=True used to delete whatever was at the path: a folder of the user's files, a file, a parent
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("important", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"replaces a model folder, and .*mine is not one.*thesis\.txt"):
        trained_bag.save(tmp_path / "mine", overwrite=True)
    with pytest.raises(RunFolderError, match=r"notes\.txt is a file"):
        trained_bag.save(tmp_path / "notes.txt", overwrite=True)
    with pytest.raises(RunFolderError, match="which is a file"):
        trained_bag.save(tmp_path / "notes.txt" / "model", overwrite=True)
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "run.yaml").write_text("seed: 1\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match="is not one"):  # a run folder is not a model folder either
        trained_bag.save(run, overwrite=True)
    monkeypatch.chdir(run / "model")
    for above in (run / "model", run, Path(".")):
        with pytest.raises(RunFolderError, match="holds the current folder"):
            trained_bag.save(above, overwrite=True)
    assert (tmp_path / "mine" / "thesis.txt").read_text(encoding="utf-8") == "important"
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "hi"
    assert (run / "run.yaml").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ajuste.load(trained_bag.save(empty)).classes_ == ["ham", "spam"]  # an empty folder is a fine target


def test_save_with_overwrite_never_deletes_what_a_model_folder_was_given_since(
    trained_bag: TextClassifier, tmp_path: Path
) -> None:
    # a model folder holding a nested model and the user's data lost both to save(overwrite=True)
    outer = trained_bag.save(tmp_path / "outer")
    trained_bag.save(outer / "inner_model")
    (outer / "my_data").mkdir()
    (outer / "my_data" / "train.csv").write_text("x", encoding="utf-8")
    with pytest.raises(RunFolderError, match=r"holds more than a model: found inner_model, my_data"):
        trained_bag.save(outer, overwrite=True)
    assert (outer / "my_data" / "train.csv").read_text(encoding="utf-8") == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outer"]  # no staging folder left behind
    # a run's model folder: its run.yaml, metrics and split would describe another model than it loads
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "run.yaml").write_text("seed: 1\n", encoding="utf-8")
    with pytest.raises(RunFolderError, match="it is the model folder of the run"):
        trained_bag.save(run / "model", overwrite=True)


def test_load_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="does not exist"):
        ajuste.load(tmp_path / "missing")
    with pytest.raises(RunFolderError, match="not a complete run folder"):
        ajuste.load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(RunFolderError, match="not written by this version"):
        ajuste.load(tmp_path)


def test_labels_given_in_python_are_read_as_a_file_s_are() -> None:
    texts = [f"free prize win now {i}" for i in range(10)] + [f"see you at lunch {i}" for i in range(10)]
    model = ajuste.build("bag", embed_dim=8)
    # a string of labels was taken apart ("abab": the classes 'a' and 'b')
    with pytest.raises(ConfigError, match="the labels must be a list"):
        model.fit(texts[:4], "abab", epochs=1, verbose=False)
    # None and NaN became the classes '' and 'nan'
    for missing in (None, float("nan")):
        with pytest.raises(ConfigError, match=r"1 label is missing \(empty, None or NaN\).*at row 19"):
            model.fit(texts, [1] * 10 + [0] * 9 + [missing], epochs=1, verbose=False)
    # a float array's 1.0 is the class 1, as in a file: evaluate refused the same labels written 1.0
    model.fit(texts, [1] * 10 + [0] * 10, epochs=1, verbose=False)
    assert model.classes_ == ["0", "1"]
    assert model.evaluate(texts, np.array([1.0] * 10 + [0.0] * 10))["n"] == 20


def test_class_weights_must_name_the_classes_with_weights_above_zero() -> None:
    texts = [f"free prize win now {i}" for i in range(10)] + [f"see you at lunch {i}" for i in range(10)]
    labels = [1] * 10 + [0] * 10
    # integer keys never matched the labels, written as strings: every class was weighted 1 without a word
    weighted = ajuste.build("bag", embed_dim=8).compile(class_weights={0: 1.0, 1: 50.0})
    weighted.fit(texts, labels, epochs=1, verbose=False)
    assert weighted.class_weights == {"0": 1.0, "1": 50.0}
    with pytest.raises(ConfigError, match=r"names classes the training data does not have: 'spma'"):
        ajuste.build("bag", embed_dim=8).compile(class_weights={"spma": 2.0}).fit(texts, labels, epochs=1)
    for bad in (-1.0, float("nan"), 0, "2"):
        with pytest.raises(ConfigError, match="must be a finite number > 0"):
            ajuste.build("bag").compile(class_weights={"spam": bad})
    with pytest.raises(ConfigError, match="class_weights must map each class to its weight"):
        ajuste.build("bag").compile(class_weights=[1.0, 2.0])
    # one metric as a string was taken apart: "unknown metric a, c, c, u, r..."
    assert ajuste.build("bag").compile(metrics="accuracy").compile_settings.metrics == ("accuracy",)


def test_the_api_refuses_odd_arguments_in_its_own_words(
    trained_bag: TextClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each was a raw TypeError, KeyError, IndexError or AttributeError from deep inside, or a silent override
    texts = [f"free prize win now {i}" for i in range(10)] + [f"see you at lunch {i}" for i in range(10)]
    labels = ["spam"] * 10 + ["ham"] * 10
    fresh = ajuste.build("bag", embed_dim=8)
    refused = [
        (lambda: trained_bag.predict(None), "predict takes a list of texts: found NoneType"),
        (lambda: trained_bag.predict(b"abc"), "found a single string"),
        (lambda: fresh.fit(5, labels), "the texts must be a list: found int"),
        (lambda: fresh.fit(texts, labels, validation_data={"x": texts}), "a pair (texts, labels): found dict"),
        (lambda: fresh.fit(texts, labels, validation_data=(texts,)), "found tuple of 1 items"),
        (lambda: fresh.fit(texts, labels, seed=None), "seed must be a whole number >= 0: found None"),
        (lambda: fresh.fit(texts, labels, callbacks=[lambda *a: None]), "a list of ajuste.Callback objects: found"),
        (lambda: ajuste.build(None), "build takes a family name or a checkpoint"),
        (lambda: ajuste.build("bag", family="gpt"), "build('bag') was also given family='gpt'"),
        (lambda: ajuste.build(ajuste.BagSettings()), "Pass the settings object to TextClassifier(settings)"),
        (lambda: trained_bag.save(None), "save takes the path of a folder: found None"),
        (lambda: ajuste.load(None), "load takes the path of a run or model folder: found None"),
        (lambda: ajuste.TextClassifier(ajuste.BagSettings(), labels=["a", "b", "a"]), "found 'a' twice"),
        (lambda: ajuste.TextClassifier(ajuste.BagSettings(), labels="ab"), "labels must be a list of the class"),
        (lambda: ajuste.tune(["d.csv"]), "tune's data is a built-in dataset name, a file path, a mapping"),
        (lambda: ajuste.tune("d.csv", space=[1, 2]), "tune's space is a mapping of each searched setting"),
        (lambda: ajuste.tune("d.csv", model=["bag", 3]), "found list of 2 items"),
        (lambda: ajuste.distill(tmp_path, None), "distill's student is a family, such as 'bag', or a mapping"),
        (lambda: ajuste.distill(None), "distill's teacher is the path of a run folder: found None"),
    ]
    for call, said in refused:
        with pytest.raises(AjusteError) as caught:
            call()
        assert said in str(caught.value), (said, str(caught.value))
    # "~/x" is the home folder's x, not a folder named "~" under the current one
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    saved = trained_bag.save("~/model")
    assert saved == tmp_path / "home" / "model" and not (tmp_path / "~").exists()
    assert ajuste.load("~/model").classes_ == trained_bag.classes_


def test_a_text_that_is_a_list_mapping_or_bytes_is_refused_and_a_missing_one_is_empty() -> None:
    # predict([["great", "movie"]]) read "['great', 'movie']" as words; NaN was the word "nan"
    import ajuste
    from ajuste.errors import ConfigError
    from tests.conftest import make_texts

    texts, labels = make_texts(30)
    model = ajuste.build("bag", embed_dim=8, buckets=64).compile()
    model.fit(texts, labels, epochs=1, verbose=False)
    for item, said in ((["great", "movie"], "text 1 is a list"), ({"a": 1}, "text 1 is a dict"), (b"x", "is bytes")):
        with pytest.raises(ConfigError, match=said):
            model.predict(["fine", item])
        with pytest.raises(ConfigError, match=said):
            model.fit(["fine", item, *texts], ["ham", "spam", *labels], epochs=1, verbose=False)
    missing = model.predict_proba([None, float("nan"), ""])
    assert (missing[0] == missing[2]).all() and (missing[1] == missing[2]).all(), "None and NaN are empty texts"

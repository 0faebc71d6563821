"""``ajuste distill``: a student learns the teacher's probabilities (not only the labels), from augmented and
unlabelled texts too, on the teacher's split, with the test split evaluated once."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ajuste
from ajuste.data.augment import augment_texts
from ajuste.errors import RunFolderError
from ajuste.runs.teacher import Teacher
from ajuste.training.distillation import DistillationLoss, TeacherTargets
from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]
TINY_BAG = ("--embed-dim", "16", "--epochs", "6")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(160, seed=3)
    return write_csv(tmp_path_factory.mktemp("data") / "texts.csv", texts, labels)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, data_file: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "teacher"
    config = ajuste.RunConfig.model_validate(
        {"data": {"path": str(data_file)}, "model": {"family": "bag", "embed_dim": 16}, "train": {"epochs": 30}}
    )
    ajuste.train(config.model_copy(update={"out": str(out)}), verbose=False)
    return out


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _flipped(teacher: Path, tmp_path: Path) -> Path:
    """A copy of ``teacher`` whose model names its two classes the other way round: it predicts the wrong one."""
    import shutil

    copy = tmp_path / "flipped-teacher"
    shutil.copytree(teacher, copy)
    config_file = copy / "model" / "config.json"
    config = json.loads(config_file.read_text())
    config["labels"] = list(reversed(config["labels"]))
    config_file.write_text(json.dumps(config))
    return copy


def test_the_student_learns_the_teachers_probabilities_not_only_the_labels(teacher: Path, tmp_path: Path) -> None:
    flipped = _flipped(teacher, tmp_path)
    student = {"family": "bag", "embed_dim": 16}
    last_epoch = {"restore_best": False}  # validation would pick the epoch before the student learnt anything wrong

    def test_accuracy(teacher: Path, alpha: float, out: str) -> float:
        result = ajuste.distill(teacher, student, alpha=alpha, train=last_epoch, out=tmp_path / out, verbose=False)
        return float(result.run.metrics["test"]["accuracy"])

    assert test_accuracy(teacher, 0.0, "a") >= 0.9
    assert test_accuracy(flipped, 0.0, "b") <= 0.3  # it learnt the teacher's (wrong) probabilities, not the labels
    assert test_accuracy(flipped, 1.0, "c") >= 0.9  # with all the weight on the labels, the teacher no longer counts


def test_the_loss_mixes_the_teacher_and_the_label_per_text() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    targets = torch.tensor([1, 0])
    teacher = torch.log_softmax(torch.tensor([[2.0, -1.0], [-3.0, 1.0]]), dim=1)
    labelled = torch.tensor([True, False])
    hard = torch.nn.CrossEntropyLoss()
    mixed = DistillationLoss(2.0, 0.25, hard)(logits, targets, teacher, labelled)
    kl = (
        torch.nn.functional.kl_div(
            torch.log_softmax(logits / 2, dim=1),
            torch.log_softmax(teacher / 2, dim=1),
            reduction="none",
            log_target=True,
        ).sum(dim=1)
        * 4
    )
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    expected = ((1 - 0.25) * kl[0] + 0.25 * ce[0] + kl[1]) / 2  # the unlabelled text learns from the teacher only
    assert torch.isclose(mixed, expected)
    assert kl[0] < 1e-6  # the student already agrees with the teacher on the first text
    only_labels = DistillationLoss(2.0, 1.0, hard)(logits, targets, teacher, torch.tensor([True, True]))
    assert torch.isclose(only_labels, ce.mean())


def test_teacher_targets_that_do_not_match_the_data_are_refused() -> None:
    texts, labels = make_texts(40)
    model = ajuste.build("bag", embed_dim=8)
    with pytest.raises(ajuste.AjusteError, match="probabilities do not match"):
        model.fit(texts, labels, epochs=1, teacher=TeacherTargets(np.full((39, 2), 0.5), [True] * 40))
    linear = ajuste.build("linear")
    with pytest.raises(ajuste.AjusteError, match="solver"):
        linear.fit(texts, labels, teacher=TeacherTargets(np.full((40, 2), 0.5), [True] * 40))


def test_unlabelled_texts_teach_the_student_words_the_labels_never_showed(teacher: Path, tmp_path: Path) -> None:
    # Texts made of words the teacher knows plus a word no labelled text has: the teacher labels them by the words
    # it knows, and the student learns the new word from those labels alone.
    rng = random.Random(5)
    spam, ham = ["win", "free", "prize", "cash", "claim"], ["lunch", "mum", "home", "dinner", "later"]
    unlabelled = [" ".join(rng.sample(spam, 2)) + " zorblax" for _ in range(100)]
    unlabelled += [" ".join(rng.sample(ham, 2)) + " quuxly" for _ in range(100)]
    (tmp_path / "unlabelled.txt").write_text("\n".join(unlabelled) + "\n")
    student = {"family": "bag", "embed_dim": 16}
    settings = {"train": {"epochs": 20, "restore_best": False}, "verbose": False}
    used = ajuste.distill(teacher, student, unlabeled=tmp_path / "unlabelled.txt", out=tmp_path / "u", **settings)
    plain = ajuste.distill(teacher, student, out=tmp_path / "p", **settings)
    assert used.record.unlabeled_texts == len(set(unlabelled))
    assert plain.record.unlabeled_texts == 0
    model = ajuste.load(tmp_path / "u")
    spam_column = model.classes_.index("spam")
    alone = model.predict_proba(["zorblax", "quuxly"])[:, spam_column]
    assert alone[0] - alone[1] > 0.3  # the new words lean the way the teacher labelled their texts
    without = ajuste.load(tmp_path / "p").predict_proba(["zorblax", "quuxly"])[:, spam_column]
    assert abs(without[0] - without[1]) < 0.05  # both unknown words: the same text to that student


def test_the_test_split_is_touched_once_and_never_shown_to_the_teacher(
    teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _files(teacher)
    seen: list[str] = []
    original = Teacher._probabilities

    def spy(self: Teacher, texts: list[str], show: bool = False) -> object:
        seen.extend(texts)
        return original(self, texts, show)

    monkeypatch.setattr(Teacher, "_probabilities", spy)
    test_texts = ajuste.load_data(ajuste.DataSettings(path=str(_data_of(teacher)))).test.texts
    (tmp_path / "unlabelled.txt").write_text("\n".join(test_texts[:10]) + "\nfresh words here\n")
    result = ajuste.distill(teacher, "bag", augment=2, unlabeled=tmp_path / "unlabelled.txt", out=tmp_path / "s")
    assert seen and not set(seen) & set(test_texts)
    assert result.record.unlabeled_texts == 1 and result.record.unlabeled_left_out == 10
    record = yaml.safe_load((tmp_path / "s" / "run.yaml").read_text())
    assert [a["split"] for a in record["record"]["test_accesses"]] == ["test"]
    assert _files(teacher) == before  # the teacher's folder is read, never written


def _data_of(run: Path) -> str:
    return yaml.safe_load((run / "run.yaml").read_text())["data"]["path"]


def test_the_teachers_probabilities_are_computed_once(teacher: Path, tmp_path: Path) -> None:
    first = ajuste.distill(teacher, "bag", augment=1, out=tmp_path / "one", verbose=False)
    again = ajuste.distill(teacher, "bag", augment=1, out=tmp_path / "two", verbose=False)
    assert not first.record.teacher_cached and again.record.teacher_cached
    assert first.run.metrics["test"]["accuracy"] == again.run.metrics["test"]["accuracy"]
    # read as a training run's result is read: its folder and metrics
    assert first.run_dir == tmp_path / "one" and first.metrics == first.run.metrics


def test_distill_on_the_command_line(cli: Cli, teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "student"
    result = cli("distill", teacher, "--student", "bag", *TINY_BAG, "--augment", "2", "--out", out, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert set(summary) >= {"run_dir", "seconds", "data", "val", "test", "teacher", "throughput", "texts"}
    teacher_metrics = json.loads((teacher / "metrics.json").read_text())
    assert summary["teacher"]["test"]["accuracy"] == teacher_metrics["test"]["accuracy"]
    assert summary["throughput"]["student"] > 0 and summary["throughput"]["teacher"] > 0
    assert summary["texts"]["augmented"] > summary["texts"]["labelled"]
    run_file = yaml.safe_load((out / "run.yaml").read_text())
    assert run_file["distill"]["teacher"] == str(teacher)
    assert run_file["distill"]["augment"] == 2 and run_file["model"]["embed_dim"] == 16
    assert run_file["record"]["distillation"]["teacher_family"] == "bag"
    # An ordinary run folder: predict and evaluate use it, and its run.yaml distils it again.
    assert cli("predict", out, "win a free prize now").code == 0
    assert cli("evaluate", out, _data_of(teacher)).code == 0
    again = cli("train", "--config", out / "run.yaml", "--out", tmp_path / "again", "--json")
    assert again.code == 0, again.err
    assert again.json()["test"]["accuracy"] == summary["test"]["accuracy"]


def test_a_teacher_trained_with_a_relative_path_is_distilled_from_another_folder(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    texts, labels = make_texts(80, seed=5)
    write_csv(here / "texts.csv", texts, labels)
    monkeypatch.chdir(here)
    trained = cli("train", "--data", "texts.csv", "--model", "bag", *TINY_BAG, "--out", "teacher")
    assert trained.code == 0, trained.err
    assert _data_of(here / "teacher") == str(here / "texts.csv")  # recorded from where it was read
    monkeypatch.chdir(elsewhere)
    student = cli("distill", here / "teacher", "--student", "bag", *TINY_BAG, "--out", "student", "--json")
    assert student.code == 0, student.err
    assert student.json()["data"]["test"] == trained_test_texts(here / "teacher")
    again = cli("train", "--config", here / "teacher" / "run.yaml", "--out", "again", "--json")
    assert again.code == 0, again.err


def trained_test_texts(run: Path) -> int:
    return len(json.loads((run / "split.json").read_text())["test"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--student", "linear"], "solver"),
        (["--temperature", "0"], "temperature"),
        (["--alpha", "1.5"], "alpha"),
        (["--augment", "-1"], "augment"),
        (["--unlabeled", "missing.txt"], "missing.txt"),
    ],
)
def test_bad_distill_settings_get_one_line(cli: Cli, teacher: Path, tmp_path: Path, args: list, expected: str) -> None:
    result = cli("distill", teacher, *args, "--out", tmp_path / "s")
    assert result.code == 2
    assert expected in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_column_named_for_unlabeled_lines_is_refused(cli: Cli, teacher: Path, tmp_path: Path) -> None:
    lines = tmp_path / "more.txt"
    lines.write_text("free entry now\nsee you soon\n", encoding="utf-8")
    result = cli("distill", teacher, "--unlabeled", lines, "--unlabeled-col", "body", "--out", tmp_path / "s")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "holds one text per line, with no columns, and --unlabeled-col names one ('body')" in result.err
    assert "Leave out --unlabeled-col" in result.err and not (tmp_path / "s").exists()


def test_a_teacher_that_is_not_a_run_or_whose_data_changed_is_refused(
    cli: Cli, teacher: Path, tmp_path: Path, data_file: Path
) -> None:
    result = cli("distill", tmp_path, "--out", tmp_path / "s")
    assert result.code == 2 and "not a complete run folder" in result.err
    with pytest.raises(
        RunFolderError, match=f"model folder, not a run folder.*Pass the run folder that holds it: {teacher}"
    ):
        ajuste.distill(teacher / "model", out=tmp_path / "s")
    import shutil

    moved = tmp_path / "teacher"
    shutil.copytree(teacher, moved)
    changed = tmp_path / "changed.csv"
    texts, labels = make_texts(170, seed=3)
    write_csv(changed, texts, labels)
    run_file = yaml.safe_load((moved / "run.yaml").read_text())
    run_file["data"]["path"] = str(changed)
    (moved / "run.yaml").write_text(yaml.safe_dump(run_file))
    result = cli("distill", moved, "--out", tmp_path / "s")
    assert result.code == 2 and "no longer splits as the teacher's did" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_augmented_copies_are_distinct_seeded_and_new() -> None:
    texts = ["win a free prize now by calling this number today", "see you at lunch", "ok"]
    copies = augment_texts(texts, 4, seed=1)
    assert copies == augment_texts(texts, 4, seed=1)
    assert copies != augment_texts(texts, 4, seed=2)
    assert len(copies) == len(set(copies)) and not set(copies) & set(texts)
    assert 4 <= len(copies) <= 12  # "ok" has no copy other than itself
    long_words = set(texts[0].split())
    assert sum(1 for c in copies if set(c.split()) <= long_words) >= 4


def test_tune_searches_students_with_the_teacher_fixed(teacher: Path, tmp_path: Path) -> None:
    space = {"model.embed_dim": [8, 16], "train.lr": {"low": 0.005, "high": 0.05, "log": True}}
    wrong = ajuste.tune(
        model="bag",
        space=space,
        trials=3,
        train={"restore_best": False, "epochs": 6},
        out=tmp_path / "flipped",
        distill_from=_flipped(teacher, tmp_path),
        distill={"alpha": 0.0},
    )
    assert wrong.metrics["test"]["accuracy"] <= 0.3  # every trial, and the final model, learnt the teacher
    right = ajuste.tune(model="bag", space=space, trials=3, refit="train+val", out=tmp_path / "t", distill_from=teacher)
    assert right.metrics["test"]["accuracy"] >= 0.75
    run_file = yaml.safe_load((tmp_path / "t" / "run.yaml").read_text())
    assert run_file["distill"]["teacher"] == str(teacher)
    assert run_file["seed"] == yaml.safe_load((teacher / "run.yaml").read_text())["seed"]
    data = ajuste.load_data(ajuste.DataSettings(path=_data_of(teacher)))
    assert run_file["record"]["distillation"]["labelled_texts"] == len(data.train) + len(data.val)  # refit on both
    assert [a["split"] for a in run_file["record"]["test_accesses"]] == ["test"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "linear"], "cannot learn from a teacher"),
        (["--dataset", "sms-spam"], "takes the teacher's data"),
        (["--seed", "7"], "--seed must be the teacher's"),
    ],
)
def test_bad_tune_distill_flags_get_one_line(
    cli: Cli, teacher: Path, tmp_path: Path, args: list, expected: str
) -> None:
    result = cli("tune", "--distill-from", teacher, "--trials", "1", *args, "--out", tmp_path / "t")
    assert result.code == 2, result.err
    assert expected in result.err and len(result.err.strip().splitlines()) == 1


def test_distillation_flags_without_a_teacher_are_refused(cli: Cli, data_file: Path, tmp_path: Path) -> None:
    result = cli("tune", "--data", data_file, "--augment", "2", "--trials", "1", "--out", tmp_path / "t")
    assert result.code == 2 and "--augment needs --distill-from" in result.err


def test_a_gpt_student_is_an_ordinary_run_that_exports(cli: Cli, teacher: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason='ONNX export needs: pip install "ajuste[onnx]"')
    student = {"family": "gpt", "num_layers": 1, "num_heads": 2, "emb_dim": 32, "vocab_size": 400}
    result = ajuste.distill(teacher, student, augment=1, train={"epochs": 3}, out=tmp_path / "gpt", verbose=False)
    assert result.record.augmented_texts > 0 and result.run.metrics["test"]["accuracy"] > 0.5
    exported = cli("export", tmp_path / "gpt", "--out", tmp_path / "gpt-onnx", "--json")
    assert exported.code == 0, exported.err
    texts = ["win a free prize now", "see you at lunch"]
    assert (
        ajuste.load(tmp_path / "gpt-onnx").predict(texts).labels == ajuste.load(tmp_path / "gpt").predict(texts).labels
    )

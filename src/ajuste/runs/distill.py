"""``ajuste distill``: a cheap student trained on a teacher run's probabilities, tested once on the teacher's split.

The student sees the teacher's training texts (with their labels and the teacher's probabilities), augmented
copies of them and unlabelled texts (with the teacher's probabilities only); it is chosen on the teacher's
validation split and its test split is evaluated once, so the two models' test accuracies compare on the same
texts. The student is an ordinary run folder whose run.yaml holds a ``distill:`` section: ``ajuste train
--config STUDENT/run.yaml`` distils it again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ajuste.config import RunConfig
from ajuste.data.augment import augment_texts
from ajuste.data.dataset import TextDataset
from ajuste.data.prepare import PreparedData
from ajuste.data.readers import read_texts
from ajuste.errors import ConfigError
from ajuste.runs.record import DistillRecord
from ajuste.runs.teacher import Teacher
from ajuste.runs.train import RunResult, train
from ajuste.training.settings import DistillSettings
from ajuste.validation import folder_path, settings_mapping, validate

if TYPE_CHECKING:
    from ajuste.training.distillation import TeacherTargets

__all__ = [
    "DistillResult",
    "StudentData",
    "distill",
    "distill_config",
    "run_distill",
    "student_data",
    "teacher_as_encoder",
    "teacher_data",
]

log = logging.getLogger(__name__)

#: Texts on which both models' prediction speed is measured (the teacher's first training texts).
THROUGHPUT_TEXTS = 2000


@dataclass
class StudentData:
    """What the student trains on: the texts with labels (a teacher label where there is no true one), the
    teacher's targets, and the record of where the texts came from."""

    train: TextDataset
    targets: TeacherTargets
    record: DistillRecord
    teacher: Teacher


def _unlabeled(settings: DistillSettings) -> list[str]:
    if settings.unlabeled is None:
        return []
    texts, _ = read_texts(
        settings.unlabeled,
        text_col=settings.unlabeled_col,
        flag="[[--unlabeled-col||unlabeled_col]]",
        given_by="[[--unlabeled||unlabeled]]",
    )
    return [" ".join(text.split()) for text in texts if text and text.strip()]


def student_data(
    settings: DistillSettings, data: PreparedData, seed: int, *, with_val: bool = False, show: bool = False
) -> StudentData:
    """The student's training texts and the teacher's targets for them (computed once, then cached).

    ``with_val`` adds the validation texts with their labels (a refit on train+val); ``show`` shows the teacher's
    progress. Unlabelled and augmented
    texts equal to a validation or test text are left out: the student never trains on the texts that choose
    or test it, not even through the teacher."""
    from ajuste.training.distillation import TeacherTargets

    teacher = Teacher.open(settings.teacher)
    teacher.check_split(data)
    labelled = TextDataset(
        data.train.texts + (data.val.texts if with_val else []),
        data.train.labels + (data.val.labels if with_val else []),
        data.train.rows + (data.val.rows if with_val else []),
    )
    held_out = {" ".join(t.split()) for t in (data.test.texts + ([] if with_val else data.val.texts))}
    augmented = [t for t in augment_texts(labelled.texts, settings.augment, seed) if t not in held_out]
    known = {" ".join(t.split()) for t in labelled.texts} | held_out | set(augmented)
    unlabeled_read = _unlabeled(settings)
    unlabeled = list(dict.fromkeys(t for t in unlabeled_read if t not in known))
    extra = augmented + unlabeled
    output = teacher.probabilities(labelled.texts + extra, data.labels, show=show)
    guessed = [data.labels[i] for i in output.probabilities[len(labelled) :].argmax(axis=1)] if extra else []
    train_set = TextDataset(labelled.texts + extra, labelled.labels + guessed, labelled.rows + [-1] * len(extra))
    flags = [True] * len(labelled) + [False] * len(extra)
    targets = TeacherTargets(output.probabilities, flags, settings.temperature, settings.alpha)
    test = teacher.metrics.get("test") or {}
    val = teacher.metrics.get("val") or {}
    record = DistillRecord(
        teacher=str(teacher.folder.path),
        teacher_family=str(teacher.run_file.record.model.get("family", "")),
        teacher_val_accuracy=val.get("accuracy"),
        teacher_test_accuracy=test.get("accuracy"),
        labelled_texts=len(labelled),
        augmented_texts=len(augmented),
        unlabeled_texts=len(unlabeled),
        unlabeled_left_out=len(unlabeled_read) - len(unlabeled),
        teacher_cached=output.cached,
        teacher_seconds=round(output.seconds, 3),
    )
    log.info(
        "student data: %d labelled, %d augmented, %d unlabelled texts; teacher probabilities %s",
        len(labelled),
        len(augmented),
        len(unlabeled),
        "from the cache" if output.cached else f"computed in {output.seconds:.1f} s",
    )
    return StudentData(train_set, targets, record, teacher)


@dataclass
class DistillResult:
    """A distilled run: the training run's result, the teacher's recorded accuracy, and both models' speed."""

    run: RunResult
    record: DistillRecord
    throughput: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        """The student's run folder (as :attr:`RunResult.run_dir`)."""
        return self.run.run_dir

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The student's train, val and test metrics (as :attr:`RunResult.metrics`)."""
        return self.run.metrics

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object of ``ajuste distill``: train's, plus the teacher and the speed comparison."""
        record = self.record
        teacher = {
            "run_dir": record.teacher,
            "family": record.teacher_family,
            "val": {"accuracy": record.teacher_val_accuracy},
            "test": {"accuracy": record.teacher_test_accuracy},
        }
        return {**self.run.summary(), "teacher": teacher, "texts": self.texts(), "throughput": self.throughput}

    def texts(self) -> dict[str, int]:
        record = self.record
        return {
            "labelled": record.labelled_texts,
            "augmented": record.augmented_texts,
            "unlabeled": record.unlabeled_texts,
            "unlabeled_left_out": record.unlabeled_left_out,
        }


def throughput(student: Path, teacher: Path, texts: Sequence[str]) -> dict[str, Any]:
    """Texts per second of both models' ``predict`` over the same texts, each loaded from its folder and
    warmed up first, one after the other in this process."""
    from ajuste.runs.folder import RunFolder

    rates: dict[str, Any] = {"texts": len(texts)}
    for name, path in (("teacher", teacher), ("student", student)):
        model = RunFolder.open(path).predictor()
        model.predict(list(texts[:32]))
        started = time.perf_counter()
        model.predict(list(texts))
        rates[name] = round(len(texts) / max(time.perf_counter() - started, 1e-9), 1)
    rates["speedup"] = round(rates["student"] / rates["teacher"], 1)
    return rates


def run_distill(
    config: RunConfig, *, overwrite: bool = False, verbose: bool | str = "auto", measure: bool = True
) -> DistillResult:
    """Distil as ``config.distill`` says (see :func:`ajuste.runs.train.train`), then time both models."""
    if config.distill is None:
        raise ConfigError("no teacher given", fix="Set the distill section (teacher: RUN_FOLDER).")
    result = train(config, overwrite=overwrite, verbose=verbose)
    record = result.distillation
    if record is None:
        raise RuntimeError("a distillation run recorded no distillation")
    rates: dict[str, Any] = {}
    if measure:
        texts = result.data.train.texts[:THROUGHPUT_TEXTS]
        rates = throughput(result.run_dir, Path(config.distill.teacher), texts)
    return DistillResult(result, record, rates)


def distill_config(
    teacher: str | Path,
    student: str | Mapping[str, Any] = "bag",
    *,
    train: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    **settings: Any,
) -> RunConfig:
    """The run configuration of a distillation: the teacher's data and seed, the student's model and training
    settings, and the distillation settings (``temperature``, ``alpha``, ``augment``, ``unlabeled``...)."""
    if not isinstance(teacher, (str, os.PathLike)) or not str(teacher):
        raise ConfigError("distill's teacher is the path of a run folder", found=repr(teacher)[:80])
    if not isinstance(student, (str, Mapping)):
        raise ConfigError(
            "distill's student is a family, such as 'bag', or a mapping of model settings",
            found=repr(student)[:80],
            fix="Pass student='bag', or student={'family': 'bag', 'embed_dim': 32}.",
        )
    training, folder = settings_mapping(train, "train", "train={'epochs': 3}"), folder_path(out)
    distilled = validate(DistillSettings, {"teacher": str(teacher), **settings}, "distill")
    data, seed = teacher_data(teacher)
    model = {"family": student} if isinstance(student, str) else dict(student)
    values = {
        "data": data,
        "model": model,
        "train": training,
        "seed": seed,
        "out": folder,
        "distill": distilled.model_dump(),
    }
    return validate(RunConfig, values)


def teacher_as_encoder(model: Mapping[str, Any], teacher: str) -> dict[str, Any]:
    """The student's model settings, where a student that reads through an encoder (``static``) and names none
    reads through the teacher's: it starts from what the teacher learnt."""
    from ajuste.models.registry import families_with

    values = dict(model)
    if values.get("family") in families_with("encoder") and values.get("encoder") is None:
        values["encoder"] = teacher
    return values


def teacher_data(teacher: str | Path) -> tuple[dict[str, Any], int]:
    """The data settings and seed of the teacher's run: a student sees the same texts, split the same way."""
    from ajuste.runs.folder import RunFolder

    run_file = RunFolder.open(teacher).read_run_file()
    if run_file is None:
        raise ConfigError(f"{teacher} has no run.yaml", fix="Point at a run folder written by ajuste train or tune.")
    return run_file.config.data.model_dump(), run_file.config.seed


def distill(
    teacher: str | Path,
    student: str | Mapping[str, Any] = "bag",
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    augment: int = 0,
    unlabeled: str | Path | None = None,
    unlabeled_col: str | None = None,
    train: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    verbose: bool | str = "auto",
) -> DistillResult:
    """Distil the run folder ``teacher`` into a ``student`` (a family such as ``bag`` or ``gpt``, or a mapping
    of model settings) and write the student's run folder.

    >>> result = ajuste.distill("runs/spam-minilm", "bag", augment=10)      # doctest: +SKIP
    >>> result.summary()["test"]["accuracy"], result.throughput["speedup"]  # doctest: +SKIP
    """
    config = distill_config(
        teacher,
        student,
        train=train,
        out=out,
        temperature=temperature,
        alpha=alpha,
        augment=augment,
        unlabeled=str(unlabeled) if unlabeled is not None else None,
        unlabeled_col=unlabeled_col,
    )
    return run_distill(config, overwrite=overwrite, verbose=verbose)

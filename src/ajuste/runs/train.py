"""``ajuste.train``: prepare the data, build, compile, fit, evaluate, and write the run folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ajuste.config import RunConfig
from ajuste.data import describe, load_data, resolved_balance
from ajuste.data.dataset import TextDataset
from ajuste.data.prepare import PreparedData, training_sample
from ajuste.errors import ConfigError
from ajuste.runs.folder import RunFolder, default_run_dir, read_paths
from ajuste.runs.record import DistillRecord, RunFile, RunRecord, TestAccess
from ajuste.runtime import configure_threads
from ajuste.training.callbacks import Callback
from ajuste.training.settings import unused_by_solver
from ajuste.validation import validate

if TYPE_CHECKING:  # PyTorch is imported when a run trains, not when ajuste.runs is
    from ajuste.training.classifier import TextClassifier

__all__ = ["HEADLINE_METRICS", "RunResult", "train"]

log = logging.getLogger(__name__)

HEADLINE_METRICS = ("accuracy", "macro_f1", "loss", "accuracy_ci95")


@dataclass
class RunResult:
    """What a training run produced: its folder, timing, data counts, metrics and classifier."""

    run_dir: Path
    seconds: float
    config: RunConfig
    data: PreparedData
    metrics: dict[str, dict[str, Any]]
    classifier: TextClassifier
    distillation: DistillRecord | None = None

    def data_counts(self) -> dict[str, Any]:
        report = self.data.report
        counts: dict[str, Any] = {
            "rows_read": report["clean"]["rows_in"],
            "dropped_empty_text": report["clean"]["dropped_empty_text"],
            "dropped_missing_label": report["clean"]["dropped_missing_label"],
            "dropped_duplicates": report.get("dedupe", {}).get("dropped_duplicates", 0),
            "balance": report["balance"]["method"],
        }
        counts.update(report.get("leak_check", {}))
        counts.update(self.data.counts())
        counts["classes"] = {name: split for name, split in report["split"].items()}
        if "train_subset" in report:  # the model learnt from a sample of the training split
            counts["trained_on"] = report["train_subset"]["texts"]
            counts["classes"]["trained_on"] = report["train_subset"]["classes"]
        return counts

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object of ``ajuste train``."""
        headline = {
            split: {k: v for k, v in values.items() if k in HEADLINE_METRICS} for split, values in self.metrics.items()
        }
        return {"run_dir": str(self.run_dir), "seconds": self.seconds, "data": self.data_counts(), **headline}


def resolve(config: RunConfig, classifier: TextClassifier) -> RunConfig:
    """The configuration with every default made explicit and every path absolute, as written to run.yaml."""
    family = classifier.family_
    defaults = family.defaults() if family is not None else None
    train_values = config.train.model_dump()
    if defaults is not None:
        train_values["lr"] = train_values["lr"] or defaults.lr
        train_values["epochs"] = train_values["epochs"] or defaults.epochs
        train_values["batch_size"] = train_values["batch_size"] or defaults.batch_size
    model_values = config.model.model_dump()
    if family is not None and family.max_length is not None:
        model_values["max_length"] = family.max_length
    pooling = getattr(family, "pooling", None)
    if "pooling" in model_values and pooling:
        model_values["pooling"] = pooling
    data_values = config.data.model_dump()
    data_values["balance"] = resolved_balance(config.data)
    return RunConfig.model_validate(
        {
            "data": data_values,
            "model": model_values,
            "train": train_values,
            "seed": config.seed,
            "out": config.out,
            "distill": config.distill,
        }
    ).anchored()


def _run_config(config: object) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return validate(RunConfig, dict(config))
    raise ConfigError(
        "train takes the run's settings",
        expected="a RunConfig or a mapping such as {'data': {'dataset': 'sms-spam'}, 'model': {'family': 'bag'}}",
        found=type(config).__name__,
    )


def _check_solver_settings(config: RunConfig) -> None:
    """A family fitted by a solver in one pass (linear) refuses the settings of a gradient descent, rather than
    ignore them and record them in run.yaml as if they had been used."""
    from ajuste.models.registry import registration

    family = config.model.family
    unused = unused_by_solver(config.train) if registration(family).solver else []
    if unused:
        flags = ", ".join(
            "[[--no-restore-best||train.restore_best]]"
            if name == "restore_best"
            else f"[[--{name.replace('_', '-')}||train.{name}]]"
            for name in unused
        )
        raise ConfigError(
            f"{family} is fitted by its solver in one pass, which does not use {flags}",
            fix=f"Leave {'it' if len(unused) == 1 else 'them'} out; {family}'s own settings are its model settings "
            "(see `ajuste train --help`).",
        )


def _training_texts(config: RunConfig, data: PreparedData) -> TextDataset:
    """The texts the model learns from: the training split, or the stratified sample of it that
    ``train.subset`` asks for (recorded in the data report, which ``describe`` and run.yaml show)."""
    size = config.train.subset
    if size is None:
        return data.train
    texts = training_sample(
        data.train,
        size,
        config.seed,
        option=f"[[--subset {size}||train.subset={size}]]",
        most=len(data.train),
        fix=f"Give a [[--subset||train.subset]] of at most {len(data.train):,}, or leave it out to train on every "
        "training text.",
    )
    data.report["train_subset"] = {
        "texts": len(texts),
        "of": len(data.train),
        "seed": config.seed,
        "classes": texts.class_counts(),
    }
    return texts


def train(
    config: RunConfig | Mapping[str, Any],
    *,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    verbose: bool | str = "auto",
) -> RunResult:
    """Run the six steps for ``config`` (a RunConfig, or a mapping of its sections as a run.yaml holds them) and
    write the run folder; the test split is evaluated exactly once.

    With ``config.distill``, the model learns from a teacher run as well (see :mod:`ajuste.runs.distill`): the
    data must split as the teacher's did, and the teacher's probabilities are added to the training texts."""
    from ajuste.training.classifier import TextClassifier

    config = _run_config(config)
    _check_solver_settings(config)
    started = time.perf_counter()
    configure_threads()
    if config.distill is not None:
        from ajuste.runs.distill import teacher_as_encoder
        from ajuste.validation import model_settings

        encoder = teacher_as_encoder(config.model.model_dump(), config.distill.teacher)
        config = config.model_copy(update={"model": model_settings(encoder)})
    source = config.data.dataset or Path(config.data.path or "data").stem
    folder = RunFolder(config.out or default_run_dir(source, config.model.family))
    folder.check_target(overwrite, read_paths(config))
    data = load_data(config.data, seed=config.seed)
    trained_on = _training_texts(config, data)
    log.info("data: %s", describe(data))
    student = None
    if config.distill is not None:
        from ajuste.runs.distill import student_data
        from ajuste.training.callbacks import shows_progress

        student = student_data(config.distill, data, config.seed, show=shows_progress(verbose))
    classifier = TextClassifier(config.model, labels=data.labels)
    classifier.compile_from(config.train.compile_settings(), class_weights=data.class_weights)
    classifier.fit_from(
        student.train if student else trained_on,
        None,
        config.train.fit_settings(),
        validation_data=data.val,
        callbacks=callbacks,
        seed=config.seed,
        verbose=verbose,
        teacher=student.targets if student else None,
    )
    metrics = {
        "train": classifier.evaluate(trained_on),
        "val": classifier.evaluate(data.val),
    }
    # The one access to the test split, after every choice has been made on validation.
    metrics["test"] = classifier.evaluate(data.test)
    test_access = TestAccess(texts=len(data.test), purpose="final evaluation")
    seconds = round(time.perf_counter() - started, 3)
    resolved = resolve(config, classifier)
    history = classifier.history_
    record = RunRecord(
        seconds=seconds,
        data=data.report,
        model=classifier.describe(),
        best_epoch=history.best_epoch if history else None,
        epochs_run=len(history) if history else 0,
        test_accesses=[test_access],
        distillation=student.record if student else None,
    )
    split = {"source": data.report["source"], "seed": config.seed, **data.split_record()}
    folder.write(classifier, RunFile(config=resolved, record=record), metrics=metrics, split=split, overwrite=overwrite)
    return RunResult(folder.path, seconds, resolved, data, metrics, classifier, student.record if student else None)

"""``TextClassifier``: build → compile → fit → evaluate → predict → save, the Keras way.

The constructor only stores settings. ``fit`` learns everything that depends on data — the label set,
the tokenizer or vocabulary (from the training texts only), the weights — and stores it in attributes
ending in ``_``. ``predict`` and ``evaluate`` before ``fit`` raise :class:`NotFittedError`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ajuste.atomic import replace_folder, staging_folder, unsafe_place
from ajuste.data.dataset import TextDataset
from ajuste.data.prepare import normalise_label
from ajuste.errors import (
    AjusteError,
    ConfigError,
    DataError,
    NotFittedError,
    RunFolderError,
    checked_switch,
    first_line,
    listing,
)
from ajuste.models import Family, make_family
from ajuste.models.base import count_parameters
from ajuste.models.files import ONNX_FILE, WEIGHTS_FILE
from ajuste.models.settings import PRECISIONS, BagSettings, FamilySettings
from ajuste.runtime import configure_threads
from ajuste.texts import valid_text
from ajuste.training.callbacks import (
    Callback,
    EarlyStopping,
    History,
    ProgressBar,
    frozen_pass_progress,
    shows_progress,
)
from ajuste.training.distillation import DistillationLoss, TeacherTargets
from ajuste.training.light import (
    ENSEMBLE_RUNTIME,
    FORMAT,
    FORMAT_VERSION,
    MEMBERS_DIR,
    MODEL_CONFIG,
    ONNX_RUNTIME,
    Predictions,
    check_batch_size,
    is_model_folder,
    read_model_config,
    text_items,
)
from ajuste.training.loop import (
    Batches,
    EpochPlan,
    EpochStep,
    GradientEpochs,
    SolvedEpoch,
    predict_logits,
    run_training,
)
from ajuste.training.metrics import classification_metrics
from ajuste.training.optim import make_loss, make_optimizer, make_scheduler
from ajuste.training.settings import CompileSettings, FitSettings
from ajuste.validation import model_settings, validate

__all__ = ["TextClassifier", "load_model"]

log = logging.getLogger(__name__)

#: What a model folder of any family holds (an ONNX export's graph, a pretrained model's backbone and tokenizer,
#: an ensemble's members...): replacing a model folder never deletes a name outside these and the new model's.
_MODEL_ENTRIES = frozenset(
    {MODEL_CONFIG, WEIGHTS_FILE, ONNX_FILE, MEMBERS_DIR, "vocabulary.json", "tokenizer.json", "idf.safetensors",
     "backbone", "tokenizer"}
)  # fmt: skip

DataLike = TextDataset | Sequence[str]


def _as_dataset(x: DataLike, y: Sequence[Any] | None, what: str) -> TextDataset:
    if isinstance(x, TextDataset):
        if y is not None:
            raise ConfigError(f"{what}: give labels either inside the TextDataset or as y, not both")
        return x
    if isinstance(x, (str, bytes)):
        raise ConfigError(f"{what} must be a list of texts", found="a single string", fix="Wrap it in a list.")
    for name, given in (("texts", x), ("labels", y)):
        if given is not None and not hasattr(given, "__iter__"):  # fit(5, labels): "'int' object is not iterable"
            raise ConfigError(f"{what}: the {name} must be a list", found=type(given).__name__)
    if y is None:
        raise ConfigError(f"{what} needs labels", fix="Pass y=labels, or a TextDataset.")
    if isinstance(y, (str, bytes)):  # it was taken apart: "abab" gave the classes 'a' and 'b'
        raise ConfigError(f"{what}: the labels must be a list", found="a single string", fix="Give one label per text.")
    texts = text_items(x, what)
    # as a data file's labels are read: 1.0 is the class 1 (a float array's), None and NaN are no label
    labels = [normalise_label(valid_text(label)) for label in y]
    if len(texts) != len(labels):
        raise ConfigError(f"{what}: {len(texts)} texts but {len(labels)} labels", fix="Give one label per text.")
    missing = [row for row, label in enumerate(labels) if label is None]
    if missing:
        raise ConfigError(
            f"{what}: {len(missing)} label{'s are' if len(missing) > 1 else ' is'} missing (empty, None or NaN)",
            found=f"at row {', '.join(map(str, missing[:5]))}{' and more' if len(missing) > 5 else ''}",
            fix="Drop those rows, or give them their labels.",
        )
    return TextDataset(texts, [str(label) for label in labels], list(range(len(texts))))


def _class_names(labels: Sequence[Any]) -> list[str]:
    """``TextClassifier(labels=...)``: the classes, read as a file's labels are, each once, two at least."""
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise ConfigError("labels must be a list of the class names", found=repr(labels)[:80])
    names = [normalise_label(valid_text(label)) for label in labels]
    twice = sorted({name for name in names if name is not None and names.count(name) > 1})
    if None in names or twice or len(names) < 2:
        raise ConfigError(
            "labels must name two classes or more, each once",
            found=f"{', '.join(repr(t) for t in twice)} twice"
            if twice
            else ("a missing name" if None in names else f"{len(names)} class"),
            fix="Give each class name once, or leave labels out to take the training data's.",
        )
    return [name for name in names if name is not None]


def _class_weights(weights: Any) -> dict[str, float] | None:
    """``compile``'s class weights: class name (as a label is written, ``1`` for 1 or 1.0) → a finite number > 0."""
    if not weights:
        return None
    if not isinstance(weights, Mapping):
        raise ConfigError(
            "class_weights must map each class to its weight",
            found=type(weights).__name__,
            fix='Give a dict such as {"spam": 3.0, "ham": 1.0}.',
        )
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        value = weight if isinstance(weight, (int, float)) and not isinstance(weight, bool) else math.nan
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"the class weight of {name!r} must be a finite number > 0", found=repr(weight))
        checked[str(normalise_label(str(name)) or name)] = float(value)
    return checked


def _check_seed(seed: object, method: str) -> None:
    """A ConfigError unless ``seed`` is a whole number >= 0 (what every random generator seeded takes)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{method}'s seed must be a whole number >= 0", found=repr(seed))


class TextClassifier:
    """A text classifier of any family, trained and used like a Keras model.

    >>> model = TextClassifier(BagSettings(embed_dim=32))
    >>> model.compile(lr=1e-2)                                          # doctest: +SKIP
    >>> history = model.fit(train, validation_data=val, epochs=5)       # doctest: +SKIP
    >>> model.evaluate(test)["accuracy"]                                # doctest: +SKIP
    >>> model.predict(["WIN a FREE prize now!"]).labels                 # doctest: +SKIP
    """

    def __init__(self, model: FamilySettings | None = None, *, labels: Sequence[str] | None = None) -> None:
        if model is not None and not isinstance(model, FamilySettings):  # a name failed later, inside fit
            raise ConfigError(
                "TextClassifier takes a family's settings object",
                found=type(model).__name__,
                fix="Pass ajuste.models.BagSettings(...) and the like, or use ajuste.build('bag') for a name.",
            )
        self.settings: FamilySettings = model if model is not None else BagSettings()
        self.labels = _class_names(labels) if labels is not None else None
        self.compile_settings: CompileSettings | None = None
        self.class_weights: dict[str, float] | None = None
        self.stop_training = False
        self.family_: Family | None = None
        self.module_: nn.Module | None = None
        self.classes_: list[str] | None = None
        self.history_: History | None = None

    # -- compile ------------------------------------------------------------------------------

    def compile(
        self,
        optimizer: str = "adamw",
        lr: float | None = None,
        weight_decay: float = 0.01,
        scheduler: str = "linear",
        warmup: float = 0.0,
        label_smoothing: float = 0.0,
        max_grad_norm: float | None = 1.0,
        metrics: Sequence[str] = ("accuracy", "macro_f1"),
        class_weights: dict[str, float] | None = None,
    ) -> TextClassifier:
        """Choose the optimizer, learning-rate schedule, loss and metrics. Returns ``self``."""
        values = {
            "optimizer": optimizer,
            "lr": lr,
            "weight_decay": weight_decay,
            "scheduler": scheduler,
            "warmup": warmup,
            "label_smoothing": label_smoothing,
            "max_grad_norm": max_grad_norm,
            "metrics": (metrics,) if isinstance(metrics, str) else tuple(metrics),
        }
        self.compile_settings = validate(CompileSettings, values, "train")
        self.class_weights = _class_weights(class_weights)
        return self

    def compile_from(self, settings: CompileSettings, class_weights: dict[str, float] | None = None) -> TextClassifier:
        """``compile`` from a settings object (as the command line does)."""
        self.compile_settings = settings
        self.class_weights = class_weights
        return self

    # -- fit ----------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self.module_ is not None

    def _require_fitted(self, action: str) -> tuple[Family, nn.Module, list[str]]:
        if self.family_ is None or self.module_ is None or self.classes_ is None:
            raise NotFittedError(
                f"cannot {action} with a classifier that has not been trained",
                fix="Call fit() first, or ajuste.load(run_folder).",
            )
        return self.family_, self.module_, self.classes_

    def _targets(self, data: TextDataset, what: str) -> torch.Tensor:
        classes = self.classes_ or []
        index = {label: i for i, label in enumerate(classes)}
        unknown = sorted(set(data.labels) - set(index))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            training = what == "training data"  # a second fit goes on training the model it has
            raise DataError(
                f"{what} has labels "
                + (
                    "outside the model's classes (set by its first fit, or by labels=)"
                    if training
                    else "the model never saw in training"
                ),
                expected=f"labels among {', '.join(repr(c) for c in classes)}",
                found=shown,
                fix="Build a new model to learn other classes, or map them to the model's."
                if training
                else "Map them to known labels, or drop those rows.",
            )
        return torch.tensor([index[label] for label in data.labels], dtype=torch.long)

    def fit(
        self,
        x: DataLike,
        y: Sequence[Any] | None = None,
        *,
        validation_data: TextDataset | tuple[Sequence[str], Sequence[Any]] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        grad_accum: int = 1,
        early_stopping: int | None = None,
        monitor: str = "val_loss",
        restore_best: bool = True,
        callbacks: Sequence[Callback] = (),
        seed: int = 123,
        verbose: bool | str = "auto",
        teacher: TeacherTargets | None = None,
    ) -> History:
        """Train on ``x`` (a TextDataset, or texts with labels ``y``), validating after every epoch.

        With ``teacher``, the model learns from a teacher's probabilities of the training texts as well as
        from their labels (see :mod:`ajuste.training.distillation`); validation still scores the true labels."""
        settings = validate(
            FitSettings,
            {
                "epochs": epochs,
                "batch_size": batch_size,
                "grad_accum": grad_accum,
                "early_stopping": early_stopping,
                "monitor": monitor,
                "restore_best": restore_best,
            },
            "train",
        )
        return self.fit_from(
            x,
            y,
            settings,
            validation_data=validation_data,
            callbacks=callbacks,
            seed=seed,
            verbose=verbose,
            teacher=teacher,
        )

    def fit_from(
        self,
        x: DataLike,
        y: Sequence[Any] | None,
        settings: FitSettings,
        *,
        validation_data: TextDataset | tuple[Sequence[str], Sequence[Any]] | None = None,
        callbacks: Sequence[Callback] = (),
        seed: int = 123,
        verbose: bool | str = "auto",
        teacher: TeacherTargets | None = None,
    ) -> History:
        """``fit`` from a settings object (as the command line does)."""
        _check_seed(seed, "fit")
        callbacks = () if callbacks is None else callbacks
        if not hasattr(callbacks, "__iter__"):
            raise ConfigError(
                "fit's callbacks must be a list of ajuste.Callback objects", found=type(callbacks).__name__
            )
        callbacks = list(callbacks) if not isinstance(callbacks, Callback) else callbacks
        if isinstance(callbacks, Callback) or not all(isinstance(c, Callback) for c in callbacks):
            raise ConfigError(
                "fit's callbacks must be a list of ajuste.Callback objects",
                found=type(callbacks).__name__
                if isinstance(callbacks, Callback)
                else ", ".join(sorted({type(c).__name__ for c in callbacks if not isinstance(c, Callback)})),
                fix="Pass callbacks=[...] of instances of a subclass of ajuste.Callback.",
            )
        train = _as_dataset(x, y, "training data")
        if len(train) == 0:
            raise DataError("the training data is empty", expected="at least one labelled text")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (TextDataset, tuple, list)) or (
                not isinstance(validation_data, TextDataset) and len(validation_data) != 2
            ):
                raise ConfigError(
                    "validation_data must be a TextDataset or a pair (texts, labels)",
                    found=type(validation_data).__name__
                    + (f" of {len(validation_data)} items" if isinstance(validation_data, (tuple, list)) else ""),
                    fix="Pass validation_data=(texts, labels).",
                )
            val = (
                validation_data
                if isinstance(validation_data, TextDataset)
                else _as_dataset(validation_data[0], validation_data[1], "validation data")
            )
        if self.compile_settings is None:
            self.compile_settings = CompileSettings()
        compiled = self.compile_settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            show = shows_progress(verbose)
            if not self.is_fitted or (self.family_ is not None and self.family_.solver):
                self._build(train, show)  # a solver fits from nothing each time: its features too
            family, module, classes = self._require_fitted("fit")
            if teacher is not None and family.solver:
                raise ConfigError(
                    f"the {family.name} family is fitted by a solver on the labels: it cannot learn from a teacher",
                    fix="Distil into a family trained by gradient descent, such as bag or gpt.",
                )
            defaults = family.defaults()
            plan = EpochPlan(
                epochs=1 if family.solver else settings.epochs or defaults.epochs,
                batch_size=settings.batch_size or defaults.batch_size,
                grad_accum=settings.grad_accum,
                max_grad_norm=compiled.max_grad_norm,
                monitor=settings.monitor if val is not None else "loss",
                restore_best=settings.restore_best and val is not None,
                seed=seed,
                precision=self.settings.precision,
            )
            train_batches = self._batches(family, module, train, "training data", show)
            if teacher is not None:
                train_batches.soft = teacher.soft_targets(len(train), len(classes))
            val_batches = self._batches(family, module, val, "validation data", show) if val is not None else None
            all_callbacks = list(callbacks)
            if settings.early_stopping is not None:
                all_callbacks.append(EarlyStopping(plan.monitor, settings.early_stopping))
            if show:
                all_callbacks.append(ProgressBar())
            step = self._epoch_step(family, module, train, train_batches, plan, all_callbacks, teacher)
            for callback in all_callbacks:
                callback.set_model(self)
            self.stop_training = False
            trainable, total = count_parameters(module)
            log.info(
                "training %s: %d of %d parameters trainable, %d epochs of %d steps",
                family.name,
                trainable,
                total,
                plan.epochs,
                step.steps,
            )
            history = run_training(
                module, step, val_batches, plan, all_callbacks, lambda: self.stop_training, len(classes)
            )
        self.history_ = history
        return history

    def _epoch_step(
        self,
        family: Family,
        module: nn.Module,
        train: TextDataset,
        batches: Batches,
        plan: EpochPlan,
        callbacks: Sequence[Callback],
        teacher: TeacherTargets | None = None,
    ) -> EpochStep:
        """What one epoch does: a solver's single fit, or an epoch of gradient descent with the compiled
        optimizer, schedule and loss (mixed with the teacher's targets when there is one)."""
        compiled = self.compile_settings or CompileSettings()
        classes = self.classes_ or []
        cross_entropy = make_loss(compiled, classes, self.class_weights)
        if family.solver:
            weights = cross_entropy.weight
            return SolvedEpoch(
                module,
                batches,
                lambda: family.solve(module, train.texts, batches.targets, weights),
                len(classes),
                plan.precision,
            )
        lr = compiled.lr or family.defaults().lr
        if lr is None:
            raise TypeError(f"the {family.name} family gives no learning rate")
        optimizer = make_optimizer(module, compiled, lr)
        steps = -(-len(train) // plan.batch_size)
        scheduler = make_scheduler(optimizer, compiled, plan.epochs * -(-steps // plan.grad_accum))
        loss_fn: nn.Module = cross_entropy
        if teacher is not None:
            loss_fn = DistillationLoss(teacher.temperature, teacher.alpha, cross_entropy)
        return GradientEpochs(module, batches, plan, optimizer, scheduler, loss_fn, callbacks, len(classes))

    def _batches(self, family: Family, module: nn.Module, data: TextDataset, what: str, show: bool) -> Batches:
        """Encoded texts and targets, with the frozen layers' output when the model has a freeze boundary."""
        sequences = family.encode(data.texts)
        with frozen_pass_progress(f"frozen layers, {what}", len(sequences), show) as progress:
            features = family.frozen_features(module, sequences, progress)
        return Batches(sequences, self._targets(data, what), family.collate, features)

    def _build(self, train: TextDataset, show: bool = False) -> None:
        labels = self.labels if self.labels is not None else sorted(set(train.labels))
        if len(labels) < 2:
            raise DataError("a classifier needs at least two classes", found=f"only {labels!r} in the training data")
        family = make_family(self.settings)
        family.fit_preprocessing(train.texts, functools.partial(frozen_pass_progress, show=show))
        self.classes_ = list(labels)
        self.module_ = family.build(len(labels))
        self.family_ = family

    # -- evaluate and predict -------------------------------------------------------------------

    _batch_size = staticmethod(check_batch_size)

    def _precision(self, precision: str | None) -> str:
        if precision is None:
            return self.settings.precision
        if precision not in PRECISIONS:
            raise ConfigError("unknown precision", expected=" or ".join(PRECISIONS), found=repr(precision))
        return precision

    def _logits(
        self, family: Family, module: nn.Module, texts: Sequence[str], batch_size: int | None, precision: str | None
    ) -> torch.Tensor:
        """Logits in input order; texts whose frozen-layer states are cached (validation texts, for one) run
        only the trainable layers."""
        chosen = self._precision(precision)
        sequences = family.encode(texts)
        features = (
            family.frozen_features(module, sequences, compute=False) if chosen == self.settings.precision else None
        )
        return predict_logits(
            module, sequences, family.collate, self._batch_size(batch_size), features=features, precision=chosen
        )

    def predict_proba(
        self, texts: Sequence[str], *, batch_size: int | None = None, precision: str | None = None
    ) -> np.ndarray:
        """Class probabilities, one row per text, columns in the order of ``classes_``.

        ``precision`` (fp32 or bf16) overrides the model's setting for this call."""
        family, module, _ = self._require_fitted("predict")
        if isinstance(texts, (str, bytes)):
            raise ConfigError("predict takes a list of texts", found="a single string", fix="Wrap it in a list.")
        if not hasattr(texts, "__iter__"):  # predict(None): "'NoneType' object is not iterable"
            raise ConfigError("predict takes a list of texts", found=type(texts).__name__)
        texts = text_items(texts, "predict")
        logits = self._logits(family, module, texts, batch_size, precision)
        if logits.numel() == 0:
            return np.zeros((0, len(self.classes_ or [])), dtype=np.float32)
        return torch.softmax(logits, dim=1).numpy()

    def predict(
        self, texts: Sequence[str], *, batch_size: int | None = None, precision: str | None = None
    ) -> Predictions:
        """Predicted labels and probabilities for ``texts``, in input order."""
        _, _, classes = self._require_fitted("predict")
        probabilities = self.predict_proba(texts, batch_size=batch_size, precision=precision)
        return Predictions.of(probabilities, classes)

    def evaluate(
        self,
        x: DataLike,
        y: Sequence[Any] | None = None,
        *,
        batch_size: int | None = None,
        seed: int = 0,
        precision: str | None = None,
    ) -> dict[str, Any]:
        """Accuracy (with a 95% interval), macro-F1, per-class precision/recall/F1, confusion matrix and loss;
        ``seed`` seeds the interval's bootstrap."""
        _check_seed(seed, "evaluate")
        family, module, classes = self._require_fitted("evaluate")
        data = _as_dataset(x, y, "evaluation data")
        targets = self._targets(data, "evaluation data")
        if len(data) == 0:
            raise DataError("nothing to evaluate", expected="at least one labelled text", found="none")
        logits = self._logits(family, module, data.texts, batch_size, precision)
        metrics = classification_metrics(targets.tolist(), torch.softmax(logits, dim=1).numpy(), classes, seed)
        # The exact cross-entropy of the logits, as in the history's val_loss: log_loss on float32
        # probabilities clips them at float32's epsilon and so under-reports confident mistakes.
        metrics["loss"] = float(nn.functional.cross_entropy(logits, targets))
        return metrics

    # -- save and load ----------------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder (weights as safetensors, tokenizer, labels, config) atomically.

        ``overwrite`` replaces a model folder (or an empty one), never a file, a folder of other files, a run
        folder, or the current folder or one above it."""
        if not isinstance(path, (str, Path)) or not str(path):
            raise RunFolderError("save takes the path of a folder", found=repr(path))
        checked_switch(overwrite, "overwrite")
        target = Path(path).expanduser()  # "~/models/x" is the user's, not a folder named "~" here
        unsafe = unsafe_place(target)
        if unsafe is not None:
            raise RunFolderError(f"cannot save the model: the output {unsafe}", fix="Pass save() another path.")
        if target.exists() and any(target.iterdir()):
            if not overwrite:
                raise RunFolderError(f"{target} already exists", fix="Choose another folder, or pass overwrite=True.")
            if not is_model_folder(target):
                raise RunFolderError(
                    f"overwrite=True replaces a model folder, and {target} is not one",
                    expected=f"a folder written by save() (its {MODEL_CONFIG} says {FORMAT}), or an empty one",
                    found=listing(sorted(p.name for p in target.iterdir())),
                    fix="Pass save() another path, or move those files away yourself.",
                )
        if target.is_dir() and (target.parent / "run.yaml").is_file() and target.name == "model":
            # its run.yaml, metrics and split would then describe another model than the one it loads
            raise RunFolderError(
                f"cannot save the model into {target}: it is the model folder of the run {target.parent}",
                fix="Pass save() another path; a run is replaced by training it again (overwrite=True there).",
            )
        staging = staging_folder(target)
        try:
            self.write_model(staging)
            if target.is_dir():
                # a model folder may have been given other things since (a nested model, the user's files):
                # replacing it would delete them
                kept = {p.name for p in staging.iterdir()} | _MODEL_ENTRIES
                foreign = sorted(p.name for p in target.iterdir() if p.name not in kept)
                if foreign:
                    raise RunFolderError(
                        f"overwrite=True replaces a model folder, and {target} holds more than a model",
                        found=listing(foreign),
                        fix="Move those away yourself, or pass save() another path.",
                    )
            replace_folder(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def write_model(self, folder: Path) -> None:
        """The model files into an existing, empty ``folder`` (callers make it atomic)."""
        family, module, classes = self._require_fitted("save")
        entries = family.save(folder, module)
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "settings": self.settings.model_dump(mode="json"),
            "labels": classes,
            "family": entries,
        }
        (folder / MODEL_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    def describe(self) -> dict[str, Any]:
        family, module, classes = self._require_fitted("describe")
        trainable, total = count_parameters(module)
        return {
            "family": family.name,
            "runtime": "pytorch",
            "labels": classes,
            "parameters": total,
            "trainable_parameters": trainable,
            **family.describe(),
        }

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"TextClassifier(family={self.settings.family!r}, {state})"


def load_model(folder: str | Path, *, trust_remote_code: bool = False) -> TextClassifier:
    """A trained classifier from a model folder (what :meth:`TextClassifier.save` writes); never unpickles.
    An exported folder opens as an ``OnnxClassifier``, an ensemble's as an ``EnsembleClassifier``.

    The settings recorded in the folder never allow a checkpoint's own code to run: only
    ``trust_remote_code`` given here does.
    """
    configure_threads()
    folder = Path(folder)
    config = read_model_config(folder)
    if config.get("runtime") == ENSEMBLE_RUNTIME:
        from ajuste.training.ensemble import load_ensemble

        return load_ensemble(folder, config, trust_remote_code=trust_remote_code)
    runtime, labels, recorded = config.get("runtime"), config["labels"], config["settings"]
    # Whatever the folder says, only the caller decides whether a checkpoint's own code may run.
    recorded = {k: v for k, v in recorded.items() if k != "trust_remote_code"}
    settings = model_settings(recorded)
    if "trust_remote_code" in type(settings).model_fields:
        settings = settings.model_copy(update={"trust_remote_code": trust_remote_code})
    classifier = TextClassifier(settings, labels=[str(label) for label in labels])
    family = make_family(classifier.settings)
    family_entries = config.get("family")
    entries: dict[str, Any] = family_entries if isinstance(family_entries, dict) else {}
    try:
        if runtime == ONNX_RUNTIME:
            from ajuste.training.onnx import OnnxClassifier, onnx_session

            family.restore_preprocessing(folder, entries)
            export = config.get("export")
            return OnnxClassifier(
                classifier,
                family,
                onnx_session(folder / ONNX_FILE),
                export if isinstance(export, dict) else {},
                path=folder / ONNX_FILE,
            )
        module = family.restore(folder, entries, len(labels))
    except AjusteError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise RunFolderError(
            f"cannot load the model in {folder}",
            found=first_line(exc),
            fix="The folder is damaged or incomplete: train again, or restore it from a copy.",
        ) from None
    classifier.family_, classifier.module_, classifier.classes_ = family, module, list(classifier.labels or [])
    return classifier

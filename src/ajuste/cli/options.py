"""Command-line flags → the same settings objects the library uses.

Every flag has one home: a field of :class:`~ajuste.config.RunConfig`. Flags override a ``--config``
YAML file, which overrides the defaults. Flags given for a family they do not apply to are refused.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from ajuste.config import RunConfig, parse_config, read_yaml
from ajuste.data.settings import DataSettings
from ajuste.errors import ConfigError
from ajuste.models.registry import FAMILIES, families_with, is_named_family, named_families
from ajuste.search.settings import TuneConfig
from ajuste.training.settings import TrainSettings
from ajuste.validation import validate

__all__ = [
    "add_data_flags",
    "add_model_flags",
    "add_train_flags",
    "config_from_args",
    "flag_of_setting",
    "setting_choices",
    "tune_config_from_args",
]


@dataclass(frozen=True)
class Flag:
    """One flag and the setting it fills."""

    name: str
    section: str
    field: str
    kind: Any
    help: str

    @property
    def families(self) -> tuple[str, ...]:
        """The families whose settings have this flag's field (every family: any of them)."""
        return families_with(self.field) if self.section == "model" else ()

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The values the setting's own type allows (its ``Literal``), or None when it is not a choice."""
        if self.section == "model":
            owners: list[type[BaseModel]] = [FAMILIES[name].settings for name in self.families]
        else:
            owners = [DataSettings if self.section == "data" else TrainSettings]
        for owner in owners:
            field = owner.model_fields.get(self.field)
            if field is not None:
                return _literals(field.annotation) or None
        return None


def setting_choices(owner: type[BaseModel], name: str) -> tuple[str, ...]:
    """The values a ``Literal`` setting allows: a flag's choices come from the setting itself."""
    return _literals(owner.model_fields[name].annotation)


def _literals(annotation: Any) -> tuple[str, ...]:
    """The string values of the ``Literal`` inside an annotation (``Literal[...] | None`` included)."""
    if get_origin(annotation) is Literal:
        return tuple(str(value) for value in get_args(annotation))
    return tuple(value for arg in get_args(annotation) for value in _literals(arg))


_FRACTIONS = "three fractions like 0.7,0.1,0.2 (or two, like 0.8,0.2, with --val-data or --test-data)"


def _split(text: str) -> list[float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_FRACTIONS}, got '{text}'") from None
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected {_FRACTIONS}, got '{text}'")
    # float() reads 'nan' and 'inf' too: NaN passes every comparison, so it is refused by name here
    if not all(math.isfinite(part) and part > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected {_FRACTIONS}, each a finite number > 0, got '{text}'")
    return parts


DATA_FLAGS = (
    Flag(
        "--format",
        "data",
        "format",
        str,
        "File format (default: from the extension).",
    ),
    Flag("--text-col", "data", "text_col", str, "Column of the texts (guessed when obvious)."),
    Flag("--label-col", "data", "label_col", str, "Column of the labels (guessed when obvious)."),
    Flag("--encoding", "data", "encoding", str, "Text encoding of the data file (default utf-8)."),
    Flag("--data-dir", "data", "data_dir", str, "Folder holding built-in datasets (default $AJUSTE_DATA_DIR)."),
)


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


PREPARE_FLAGS = (
    Flag(
        "--balance",
        "data",
        "balance",
        str,
        "Class balancing (default: the dataset's; none for files).",
    ),
    Flag(
        "--split",
        "data",
        "split",
        _split,
        "Train,validation,test fractions (default 0.7,0.1,0.2); with --val-data or --test-data, train and the "
        "other split's (as 0.8,0.2).",
    ),
    Flag("--val-data", "data", "val_path", str, "A file holding the validation split (same columns as --data)."),
    Flag("--test-data", "data", "test_path", str, "A file holding the test split (same columns as --data)."),
)
MODEL_FLAGS = (
    Flag("--analyzer", "model", "analyzer", str, "linear: word | char | word+char n-grams (word)."),
    Flag("--word-ngrams", "model", "word_ngrams", int, "linear: word n-grams from 1 to N (2)."),
    Flag("--char-ngrams", "model", "char_ngrams", int, "linear: character n-grams from 2 to N (5)."),
    Flag("--sublinear-tf", "model", "sublinear_tf", _boolean, "linear: term frequency as 1 + log(count) (true)."),
    Flag("--min-df", "model", "min_df", int, "linear: keep features of at least N training texts (1)."),
    Flag("--max-features", "model", "max_features", int, "linear: keep the N most frequent features (all)."),
    Flag("--classifier", "model", "classifier", str, "linear: logistic | svm (calibrated) (logistic)."),
    Flag("--C", "model", "C", float, "linear: inverse regularisation strength (1.0)."),
    Flag("--class-weight", "model", "class_weight", str, "linear: none | balanced (none)."),
    Flag("--embed-dim", "model", "embed_dim", int, "bag: embedding size (64)."),
    Flag("--ngrams", "model", "ngrams", int, "bag: longest word n-gram (2)."),
    Flag("--buckets", "model", "buckets", int, "bag: hash buckets for n-grams (50000)."),
    Flag("--min-freq", "model", "min_freq", int, "bag: minimum word count in training (1)."),
    Flag(
        "--encoder",
        "model",
        "encoder",
        str,
        "static: run or checkpoint folder whose pieces and vectors it takes (a distillation's teacher, else minilm).",
    ),
    Flag(
        "--layers",
        "model",
        "layers",
        str,
        "static: the encoder's layers that make a piece's vector: last | last+embeddings (last+embeddings).",
    ),
    Flag(
        "--vectors",
        "model",
        "vectors",
        str,
        "static: frozen (only the linear layer learns) | trained (the piece vectors learn too, from the encoder's) "
        "(frozen).",
    ),
    Flag("--num-layers", "model", "num_layers", int, "gpt: transformer blocks (2)."),
    Flag("--num-heads", "model", "num_heads", int, "gpt: attention heads, dividing --emb-dim (4)."),
    Flag("--emb-dim", "model", "emb_dim", int, "gpt: embedding size (128)."),
    Flag("--context-length", "model", "context_length", int, "gpt: longest sequence (256)."),
    Flag("--dropout", "model", "dropout", float, "gpt: dropout (0.1)."),
    Flag(
        "--activation",
        "model",
        "activation",
        str,
        "gpt: feed-forward activation (gelu).",
    ),
    Flag("--vocab-size", "model", "vocab_size", int, "gpt: BPE vocabulary size (4096)."),
    Flag(
        "--trainable",
        "model",
        "trainable",
        str,
        "pretrained: head | last_block | last_n:K | all | lora (last_block).",
    ),
    Flag(
        "--pooling",
        "model",
        "pooling",
        str,
        "pretrained: auto | cls | mean | pooler | last (auto).",
    ),
    Flag("--lora-rank", "model", "lora_rank", int, "pretrained: LoRA rank (8)."),
    Flag("--lora-alpha", "model", "lora_alpha", float, "pretrained: LoRA alpha (16)."),
    Flag("--lora-dropout", "model", "lora_dropout", float, "pretrained: LoRA dropout (0.05)."),
    Flag("--lora-layers", "model", "lora_layers", int, "pretrained: LoRA on the last K blocks only (all)."),
    Flag("--max-length", "model", "max_length", int, "Longest input in tokens (default: longest training text)."),
    Flag(
        "--precision",
        "model",
        "precision",
        str,
        "fp32 | bf16: arithmetic of training, prediction and the frozen layers' pass (bf16 for pretrained models, "
        "fp32 for the others).",
    ),
)
TRAIN_FLAGS = (
    Flag("--optimizer", "train", "optimizer", str, "adamw | adam | sgd (adamw)."),
    Flag("--lr", "train", "lr", float, "Peak learning rate (default: the family's)."),
    Flag("--weight-decay", "train", "weight_decay", float, "Weight decay (0.01)."),
    Flag(
        "--scheduler",
        "train",
        "scheduler",
        str,
        "constant | linear | cosine (linear).",
    ),
    Flag("--warmup", "train", "warmup", float, "Fraction of steps spent warming up (0)."),
    Flag("--label-smoothing", "train", "label_smoothing", float, "Label smoothing (0)."),
    Flag("--max-grad-norm", "train", "max_grad_norm", float, "Gradient clipping norm (1.0)."),
    Flag("--epochs", "train", "epochs", int, "Epochs (default: the family's)."),
    Flag("--batch-size", "train", "batch_size", int, "Texts per batch (default: the family's)."),
    Flag("--grad-accum", "train", "grad_accum", int, "Batches per optimizer step (1)."),
    Flag("--early-stopping", "train", "early_stopping", int, "Stop after N epochs without improvement (off)."),
    Flag(
        "--monitor",
        "train",
        "monitor",
        str,
        "Validation metric to follow (val_loss).",
    ),
)


#: ``train`` only: a search compares its trials on every training text.
SUBSET_FLAG = Flag(
    "--subset",
    "train",
    "subset",
    int,
    "Train on N of the training texts, every class in proportion, drawn with --seed (all).",
)


def _add(parser: argparse.ArgumentParser, flags: tuple[Flag, ...]) -> None:
    for flag in flags:
        parser.add_argument(
            flag.name,
            dest=flag.field,
            type=flag.kind,
            choices=flag.choices,
            default=None,
            help=flag.help,
            metavar=None if flag.choices else flag.field.upper(),
        )


def add_data_flags(parser: argparse.ArgumentParser, *, prepare: bool = True) -> None:
    group = parser.add_argument_group("data")
    _add(group, DATA_FLAGS)  # type: ignore[arg-type]
    if prepare:
        _add(group, PREPARE_FLAGS)  # type: ignore[arg-type]
        group.add_argument("--keep-duplicates", action="store_true", help="Keep exact duplicate texts.")


def add_model_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, choose: bool = True, students: bool = False
) -> None:
    """The model's flags, in a group of their own (or in ``parser`` when it is a group); ``choose`` adds
    ``--model`` (a command that names the model another way leaves it out); ``students``: only the flags of
    families that can learn from a teacher (a solver's, ``linear``'s, are left out)."""
    group = parser if isinstance(parser, argparse._ArgumentGroup) else parser.add_argument_group("model")
    if choose:
        group.add_argument(
            "--model",
            default=None,
            metavar="NAME",
            help=f"{' | '.join(named_families())} | a checkpoint folder or hub id (default bag).",
        )
    flags: tuple[Flag, ...] = MODEL_FLAGS
    if students:
        flags = tuple(f for f in flags if not f.families or not all(FAMILIES[n].solver for n in f.families))
    _add(group, flags)  # type: ignore[arg-type]
    group.add_argument(
        "--trust-remote-code", action="store_true", default=None, help="Allow a checkpoint's own code to run (off)."
    )
    group.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        default=None,
        help="pretrained: run the frozen layers on every batch instead of once per text (cache on).",
    )


def add_train_flags(parser: argparse.ArgumentParser, *, subset: bool = False) -> None:
    group = parser.add_argument_group("training")
    _add(group, TRAIN_FLAGS + ((SUBSET_FLAG,) if subset else ()))  # type: ignore[arg-type]
    group.add_argument(
        "--no-restore-best",
        dest="restore_best",
        action="store_false",
        default=None,
        help="Keep the last epoch's weights instead of the best validation epoch's.",
    )


def _model_section(
    args: argparse.Namespace, base: dict[str, Any], chooser: str = "--model"
) -> tuple[dict[str, Any], list[str]]:
    """The model section from ``base`` and the model flags, and the flags' problems; ``chooser`` is the flag
    that names the family, as messages say it (``--student`` for distill)."""
    problems: list[str] = []
    section = dict(base)
    if args.model is not None and not args.model.strip(" ,"):
        raise ConfigError(
            f"{chooser} names no model", found=repr(args.model), fix=f"Give {chooser} bag, or another one."
        )
    if args.model is not None:
        if is_named_family(args.model):
            chosen = {"family": args.model}
        else:
            chosen = {"family": "pretrained", "checkpoint": args.model}
        if base.get("family") != chosen["family"] or base.get("checkpoint") != chosen.get("checkpoint"):
            section = chosen  # a new model: the file's settings for another one do not carry over
    section.setdefault("family", "bag")
    family = section["family"]
    for flag in MODEL_FLAGS:
        value = getattr(args, flag.field, None)  # None too where the command has no such flag (distill: linear's)
        if value is None:
            continue
        if flag.families and family not in flag.families:
            problems.append(f"{flag.name} applies to {chooser} {' or '.join(flag.families)} only, not {family}")
            continue
        section[flag.field] = value
    if args.trust_remote_code:  # the one way in: read_yaml drops it from any --config file
        section["trust_remote_code"] = True
    if args.cache is False:
        if family not in families_with("cache"):
            cached = " or ".join(families_with("cache"))
            problems.append(f"--no-cache applies to {chooser} {cached} only, not {family}")
        else:
            section["cache"] = False
    return section, problems


def _train_section(args: argparse.Namespace, section: dict[str, Any]) -> dict[str, Any]:
    """The training settings of ``section`` with the training flags applied."""
    for flag in (*TRAIN_FLAGS, SUBSET_FLAG):  # a command without a flag has no attribute for it
        value = getattr(args, flag.field, None)
        if value is not None:
            section[flag.field] = value
    if getattr(args, "restore_best", None) is False:
        section["restore_best"] = False
    return section


def _sections(args: argparse.Namespace, data: dict[str, Any] | None, sections: tuple[str, ...]) -> dict[str, Any]:
    """The ``--config`` file's content with the data, training, seed and output flags applied."""
    values: dict[str, Any] = read_yaml(args.config) if getattr(args, "config", None) else {}
    for key in sections:
        if not isinstance(values.get(key, {}), dict):
            raise ConfigError(f"section '{key}' of {args.config} must be a mapping")
    data_section = dict(values.get("data") or {})
    if data:
        for key in ("dataset", "path"):
            data_section.pop(key, None)
        data_section.update(data)
    for flag in DATA_FLAGS + PREPARE_FLAGS:
        value = getattr(args, flag.field, None)
        if value is not None:
            data_section[flag.field] = value
    if getattr(args, "keep_duplicates", False):
        data_section["dedupe"] = False
    values.update({"data": data_section, "train": _train_section(args, dict(values.get("train") or {}))})
    if getattr(args, "seed", None) is not None:
        values["seed"] = args.seed
    if getattr(args, "out", None) is not None:
        values["out"] = args.out
    if not data_section.get("dataset") and not data_section.get("path"):
        if set(data_section) - set(DataSettings.model_fields):  # a misspelt key may be the data: say which
            validate(DataSettings, data_section, "data")
        raise ConfigError("no data given", fix="Pass --dataset NAME (see `ajuste datasets`) or --data FILE.")
    return values


def config_from_args(args: argparse.Namespace, *, data: dict[str, Any] | None = None) -> RunConfig:
    """A validated RunConfig from a ``--config`` file (if any) overridden by flags."""
    values = _sections(args, data, ("data", "model", "train"))
    model_section, problems = _model_section(args, dict(values.get("model") or {}))
    if problems:
        raise ConfigError("invalid flags: " + "; ".join(problems))
    values["model"] = model_section
    return parse_config(values)


SEARCH_FLAGS = (
    "sampler",
    "pruner",
    "trials",
    "timeout",
    "metric",
    "refit",
    "cv",
    "rescore",
    "storage",
    "study",
    "startup_trials",
    "screen",
    "heartbeat",
    "ensemble",
)


def tune_config_from_args(args: argparse.Namespace, *, data: dict[str, Any] | None = None) -> TuneConfig:
    """A validated TuneConfig from a ``--config`` file (if any: data, model, train, space, tune, seed, out)
    overridden by flags. ``--model`` takes a family, a comma-separated list of families, or a checkpoint."""
    teaching = _teacher(args, data)
    if teaching is not None:
        distill, data, seed = teaching
    values = _sections(args, data, ("data", "model", "train", "space", "tune"))
    if teaching is not None:
        if values.get("seed", seed) != seed:
            raise ConfigError(
                "--seed must be the teacher's: the students are chosen and tested on the teacher's split",
                expected=str(seed),
                found=str(values["seed"]),
                fix="Drop --seed.",
            )
        values.update({"seed": seed, "distill": distill})
    if args.model is not None:
        space = values.get("space")
        if isinstance(space, dict) and space.get("model.family") is not None:
            raise ConfigError(
                "--model and the config's space both choose the families to search",
                expected="one of the two",
                found=f"--model {args.model} and space model.family {space['model.family']}",
                fix="Drop --model, or remove model.family from the space.",
            )
        names = [n.strip() for n in args.model.split(",") if n.strip()]
        if not names:
            raise ConfigError(
                "--model names no model", found=repr(args.model), fix="Give --model bag,minilm, or leave it out."
            )
        if len(names) > 1 or (names and is_named_family(names[0])):
            unknown = [n for n in names if not is_named_family(n)]
            if len(names) > 1 and unknown:
                raise ConfigError(
                    "--model takes one checkpoint, or families",
                    expected=", ".join(named_families()),
                    found=", ".join(unknown),
                )
            values["model"] = {"family": names[0]} if len(names) == 1 else {}
            values["families"] = names if len(names) > 1 else []
        else:
            values["model"] = {"family": "pretrained", "checkpoint": args.model}
            values["families"] = []
    search = dict(values.get("tune") or {})
    for name in SEARCH_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            search[name] = value
    values["tune"] = search
    return validate(TuneConfig, values)


DISTILL_FLAGS = ("temperature", "alpha", "augment", "unlabeled", "unlabeled_col")


def flag_of_setting() -> dict[str, str]:
    """Each setting that a flag fills, as a validation message names it (``train.lr``), and its flag."""
    names = {
        f"{flag.section}.{flag.field}": flag.name
        for flag in (*DATA_FLAGS, *PREPARE_FLAGS, *MODEL_FLAGS, *TRAIN_FLAGS, SUBSET_FLAG)
    }
    names.update({f"tune.{name}": "--" + name.replace("_", "-") for name in SEARCH_FLAGS})
    names.update({f"distill.{name}": "--" + name.replace("_", "-") for name in DISTILL_FLAGS})
    names.update({"seed": "--seed", "out": "--out"})
    from ajuste.serve.settings import ServeSettings  # a settings class only: no server package is imported

    names.update({f"serve.{name}": "--" + name.replace("_", "-") for name in ServeSettings.model_fields})
    return names


def distill_config_from_args(args: argparse.Namespace) -> RunConfig:
    """A validated RunConfig of ``ajuste distill``: the teacher's data and seed, the student's model (``--student``
    and the model flags) and training flags, and the distillation flags."""
    from ajuste.runs.distill import distill_config

    model_section, problems = _model_section(args, {}, "--student")
    if problems:
        raise ConfigError("invalid flags: " + "; ".join(problems))
    settings = {name: getattr(args, name) for name in DISTILL_FLAGS if getattr(args, name) is not None}
    return distill_config(args.teacher, model_section, train=_train_section(args, {}), out=args.out, **settings)


def _teacher(
    args: argparse.Namespace, data: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """``tune --distill-from``: the distillation settings, and the teacher's data settings and seed."""
    settings = {name: getattr(args, name, None) for name in DISTILL_FLAGS}
    teacher = getattr(args, "distill_from", None)
    if teacher is None:
        given = [f"--{name.replace('_', '-')}" for name, value in settings.items() if value is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise ConfigError(f"{', '.join(given)} {verb} --distill-from", fix="Name the teacher: --distill-from RUN.")
        return None
    if data:
        raise ConfigError(
            "--distill-from takes the teacher's data",
            found="--dataset or --data as well",
            fix="Drop --dataset/--data: the students see the teacher's texts and split.",
        )
    from ajuste.runs.distill import teacher_data

    teacher_values, seed = teacher_data(teacher)
    chosen = {name: value for name, value in settings.items() if value is not None}
    return {"teacher": str(teacher), **chosen}, teacher_values, seed

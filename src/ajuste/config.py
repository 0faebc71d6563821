"""The run configuration: the settings of every stage composed into one object, read from and written to YAML.

Command-line flags and YAML files are converted into these objects at the boundary; the library only
ever sees validated settings. Validation collects *every* problem and raises one :class:`ConfigError`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ajuste.data.settings import DataSettings
from ajuste.errors import ConfigError, yaml_problem
from ajuste.fields import Settings
from ajuste.models.registry import ModelSettings
from ajuste.models.settings import BagSettings
from ajuste.training.settings import MAX_SEED, DistillSettings, TrainSettings
from ajuste.validation import validate

__all__ = ["RunConfig", "parse_config", "read_yaml"]

log = logging.getLogger(__name__)

#: Keys of a run folder's run.yaml that record what happened rather than what to do.
RECORD_KEYS = ("ajuste", "record")


class RunConfig(Settings):
    """Everything a training run needs: data, model, training, seed and output folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataSettings
    model: ModelSettings = Field(default_factory=BagSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    seed: int = Field(
        123, ge=0, le=MAX_SEED, description="Seed of the split, the balancing, initialisation and shuffling."
    )
    out: str | None = Field(None, description="Run folder to write; unset: runs/<data>-<model>-<time>.")
    distill: DistillSettings | None = Field(
        None, description="Learn from a teacher run's probabilities as well as the labels (see `ajuste distill`)."
    )

    @model_validator(mode="after")
    def _subset_without_teacher(self) -> RunConfig:
        if self.train.subset is not None and self.distill is not None:
            raise ConfigError(
                "[[--subset||train.subset]] is not supported for a student of a teacher: it learns from the "
                "teacher's probabilities for every training text (the teacher's split is checked text by text)",
                fix="Drop [[--subset||train.subset]].",
            )
        return self

    def anchored(self) -> RunConfig:
        """This configuration with every file and folder it reads made absolute, as run.yaml records it: a run
        folder's data (and teacher) are found again from any working directory, by a student distilled from it
        or by `ajuste train --config RUN/run.yaml`."""
        data = self.data.model_copy(update=_absolute(self.data, "path", "val_path", "test_path", "data_dir"))
        distill = self.distill
        if distill is not None:
            distill = distill.model_copy(update=_absolute(distill, "teacher", "unlabeled"))
        return self.model_copy(update={"data": data, "distill": distill})


def _absolute(settings: BaseModel, *names: str) -> dict[str, str]:
    """The paths among ``names`` that ``settings`` sets, made absolute from the working directory (not resolving
    links: the path stays the one given, only anchored)."""
    return {name: os.path.abspath(value) for name in names if isinstance(value := getattr(settings, name), str)}


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML keeps the last silently, so a second
    ``train:`` section would replace the first without a word."""


def _unique_mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        # the mapping's own plain keys: a merge (<<) may bring a key that the mapping then overrides, as YAML means
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"found the key {key!r} twice in one mapping (YAML would keep the last)",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with the record keys of a run folder's run.yaml removed."""
    path = Path(path)
    try:
        if path.is_dir():
            inside = path / "run.yaml"  # a run folder: its run.yaml is a config file
            raise ConfigError(
                f"config path {path} is a folder",
                expected="a YAML file",
                found="a folder" + (" holding run.yaml" if inside.is_file() else ""),
                fix=f"Pass --config {inside}." if inside.is_file() else "Point --config at a YAML file.",
            )
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist",
                expected="a YAML file (a run folder's run.yaml works)",
                found="nothing at that path",
                fix="Check the --config path.",
            )
        raw = path.read_bytes()
    except OSError as exc:  # a file (or a folder above it) this user may not read
        raise ConfigError.unreadable(f"config file {path}", exc, "Check the --config path.") from None
    try:
        loaded = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeys)  # a SafeLoader: no Python objects
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid YAML: {yaml_problem(exc)}",
            fix="Correct the file there (a run folder's run.yaml shows the layout), or leave out --config.",
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path} must hold a mapping", expected="keys data, model, train, seed, out", found=type(loaded).__name__
        )
    settings = {k: v for k, v in loaded.items() if k not in RECORD_KEYS}
    model = settings.get("model")
    if isinstance(model, dict) and "trust_remote_code" in model:
        # A file never lets a checkpoint's code run: only --trust-remote-code on the command does.
        settings["model"] = {k: v for k, v in model.items() if k != "trust_remote_code"}
        if model["trust_remote_code"]:
            log.info("%s: model.trust_remote_code is ignored; pass --trust-remote-code to allow it", path)
    return settings


def parse_config(values: dict[str, Any]) -> RunConfig:
    """A validated :class:`RunConfig` from plain data (a YAML file's content merged with flags)."""
    return validate(RunConfig, values)

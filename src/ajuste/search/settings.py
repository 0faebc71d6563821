"""Settings of a search: the ``tune:`` section, and the whole configuration of ``ajuste tune``."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ajuste.data.settings import DataSettings
from ajuste.errors import ConfigError
from ajuste.fields import Settings
from ajuste.models.registry import FAMILIES
from ajuste.training.settings import MAX_SEED, DistillSettings, TrainSettings
from ajuste.validation import register_section

__all__ = ["RESCORE_FOLDS", "TuneConfig", "TuneSettings", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``10m`` or ``1.5h``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 90s, 10m or 1h, got {value!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


#: Folds of ``--rescore N``: each candidate trains five times, on four fifths of train+val each time.
RESCORE_FOLDS = 5

#: ``--screen auto`` screens trials when the training split has at least this many texts: their screening
#: subset (a quarter) then holds 1,000 texts or more, enough to learn every class from; below it a whole
#: trial is cheap and a quarter of it too noisy to rank by.
SCREEN_FROM = 4000
#: ``--ensemble``'s default: up to five members, as AutoML tools' ensemble selection (Caruana et al., 2004;
#: auto-sklearn, AutoGluon) makes its final model by default: starting from the best trial and adding a member
#: only where the validation loss falls, it is the best trial alone unless averaging helps on validation, and in
#: bench/RESULTS.md (sms-spam and AG News) it never tested below the best trial alone. Five candidates' models
#: are kept in memory during the search, so that the members need no second training.
ENSEMBLE = 5
#: ``--screen auto``: the share of the training texts that a trial is screened on. A trial screened out costs a
#: quarter of its full training; successive halving's usual reduction factors are 2 to 4.
SCREEN_SHARE = 0.25


class TuneSettings(Settings):
    """How to search: sampler, pruner, budget, the score to optimise, the refit and where the study lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["grid", "random", "tpe", "gp", "cmaes", "genetic", "nn"] = Field(
        "tpe", description="How the next settings are chosen."
    )
    pruner: Literal["none", "median", "asha", "hyperband"] = Field(
        "median", description="How hopeless trials are stopped, from the validation score after each epoch."
    )
    trials: int | None = Field(None, ge=1, description="Total trials of the study (resumed runs count the done ones).")
    timeout: float | None = Field(None, gt=0, description="Seconds of search in this run; no new trial starts after.")
    metric: Literal["accuracy", "macro_f1", "loss"] = Field("accuracy", description="Validation score to optimise.")
    refit: Literal["train", "train+val"] = Field(
        "train", description="Final model: the best settings on train, or on train+val for the best epoch count."
    )
    ensemble: int = Field(
        ENSEMBLE,
        ge=1,
        le=32,
        description="Final model: the average of up to this many of the best distinct trials' models, chosen "
        "greedily on validation, a member added only where it lowers the validation loss without lowering the "
        f"score (1: the best trial's model alone). Unset: {ENSEMBLE}; 1 under cv or rescore (one final trial), "
        "with refit train+val (each member would train again) and for a teacher's students (chosen for their cost).",
    )
    cv: int | None = Field(
        None,
        ge=2,
        le=20,
        description="Score each trial by stratified K-fold cross-validation over train+val (the fold mean; the "
        "pruner hears the running mean after each fold); the final model is then refit on train+val. Unset: "
        "the validation split alone.",
    )
    rescore: int | None = Field(
        None,
        ge=2,
        le=20,
        description="After the search: the N best trials with distinct settings scored again by stratified "
        "5-fold cross-validation over train+val; the final model is the best of them by the folds' mean, refit "
        "on train+val. Unset: the best trial on the validation split.",
    )
    screen: Literal["auto", "off"] | int = Field(
        "auto",
        description="Train each trial first on a stratified subset of this many training texts (its whole "
        "schedule, validated on the whole validation split), and on all of them only if its score ranks in the "
        "better half of the study's screened trials so far (under a timeout, for the epochs that fit in the time "
        "left). auto: a quarter of the training texts when there are "
        f"{SCREEN_FROM:,} or more, else no screening; off: never. Not under cv, nor for students of a teacher.",
    )
    storage: str | None = Field(
        None,
        description="Where the study is shared: journal:FILE (processes of one machine) or a PostgreSQL URL "
        "(machines); unset: the run folder's own study.db.",
    )
    study: str | None = Field(None, description="Study name in the storage; unset: derived from the settings.")
    startup_trials: int = Field(8, ge=1, le=1000, description="Random trials before a model-based sampler models.")
    heartbeat: int = Field(
        60,
        ge=1,
        le=3600,
        description="Seconds between a worker's heartbeats on a shared database; a trial without one for three "
        "heartbeats is failed and runs again.",
    )

    @model_validator(mode="before")
    @classmethod
    def _cross_validated_refit(cls, values: Any) -> Any:
        """Under cv (or rescore) no trial has a model trained on train alone to keep: the final model is trained
        on train+val."""
        if not isinstance(values, dict):
            return values
        if values.get("ensemble") is None:  # unset: the default, but one model where one final trial is chosen,
            values = {k: v for k, v in values.items() if k != "ensemble"}  # or where each member trains again
            if values.get("rescore") is not None or values.get("cv") is not None or values.get("refit") == "train+val":
                values["ensemble"] = 1
        if values.get("rescore") is not None:
            if values.get("cv") is not None:
                raise ConfigError(
                    "[[--rescore||rescore]] cross-validates the best trials again, and under [[--cv||cv]] every "
                    "trial is cross-validated already",
                    fix="Drop [[--rescore||rescore]], or drop [[--cv||cv]].",
                )
            if values.get("refit", "train+val") != "train+val":
                raise ConfigError(
                    '[[--rescore||rescore]] needs [[--refit train+val||refit="train+val"]] (the final choice is '
                    "made on folds of train+val)",
                    found=f"refit {values['refit']}",
                    fix="Drop [[--refit||refit]], or drop [[--rescore||rescore]].",
                )
            if (values.get("ensemble") or 1) > 1:
                raise ConfigError(
                    "[[--rescore||rescore]] chooses one final trial",
                    fix="Drop [[--ensemble||ensemble]], or drop [[--rescore||rescore]].",
                )
            return {**values, "refit": "train+val"}
        if values.get("cv") is None:
            return values
        if values.get("refit", "train+val") != "train+val":
            raise ConfigError(
                '[[--cv||cv]] needs [[--refit train+val||refit="train+val"]] (its trials have no single training '
                "split)",
                found=f"refit {values['refit']}",
                fix="Drop [[--refit||refit]], or drop [[--cv||cv]].",
            )
        if (values.get("ensemble") or 1) > 1:
            raise ConfigError(
                "[[--cv||cv]] makes one final model; an ensemble is chosen on the validation split, which cv trains on",
                fix="Drop [[--ensemble||ensemble]], or drop [[--cv||cv]].",
            )
        return {**values, "refit": "train+val"}

    @field_validator("screen", mode="before")
    @classmethod
    def _screen(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML reads an unquoted off/on as a boolean
            return "auto" if value else "off"
        if isinstance(value, str) and value.strip().removeprefix("-").removeprefix("+").isdigit():
            value = int(value)  # "-5" too: pydantic would read it as an int past the check below
        if isinstance(value, int) and not isinstance(value, bool) and value < 2:
            raise ValueError(f"expected auto, off or a number of training texts of at least 2, got {value}")
        return value

    @model_validator(mode="after")
    def _screen_fits(self) -> TuneSettings:
        if isinstance(self.screen, int) and self.cv is not None:
            raise ConfigError(
                "[[--screen||screen]] trains a trial on part of the training split, and under [[--cv||cv]] "
                "trials train on folds",
                fix="Drop [[--screen||screen]], or drop [[--cv||cv]].",
            )
        return self

    def screen_size(self, training_texts: int) -> int | None:
        """How many training texts a trial is screened on first (None: no screening), given how many there are."""
        if self.screen == "off" or self.cv is not None:
            return None
        if self.screen == "auto":
            return int(training_texts * SCREEN_SHARE) if training_texts >= SCREEN_FROM else None
        return self.screen

    @field_validator("storage")
    @classmethod
    def _shareable(cls, value: str | None) -> str | None:
        from ajuste.search.storage import check_storage

        return None if value is None else check_storage(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @property
    def direction(self) -> str:
        return "minimize" if self.metric == "loss" else "maximize"


register_section("tune", TuneSettings)


class TuneConfig(Settings):
    """Everything ``ajuste tune`` needs: data, fixed model and training settings, the space, the search."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataSettings
    model: dict[str, Any] = Field(default_factory=dict, description="Fixed model settings (family, checkpoint...).")
    families: list[str] = Field(
        default_factory=list, description="Families searched when the space names none; unset: the registry's defaults."
    )
    train: TrainSettings = Field(default_factory=TrainSettings, description="Fixed training settings.")
    space: dict[str, Any] | None = Field(None, description="The search space; unset: the families' default spaces.")
    tune: TuneSettings = Field(default_factory=TuneSettings)
    seed: int = Field(123, ge=0, le=MAX_SEED, description="Seed of the split, the sampler and every trial's training.")
    out: str | None = Field(None, description="Run folder; unset: runs/tune-<data>-<fingerprint>.")
    distill: DistillSettings | None = Field(
        None, description="Search students of this teacher: every trial learns from its probabilities too."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_student(cls, values: Any) -> Any:
        """A teacher's students are searched for a cheap model: unless asked, the final model is one of them."""
        if isinstance(values, dict) and values.get("distill") is not None:
            tune = values.get("tune")
            if tune is None or (isinstance(tune, dict) and tune.get("ensemble") is None):
                values = {**values, "tune": {**(tune or {}), "ensemble": 1}}
        return values

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {', '.join(unknown)}; expected {', '.join(FAMILIES)}")
        return value

    @model_validator(mode="after")
    def _every_text(self) -> TuneConfig:
        if self.train.subset is not None:
            raise ConfigError(
                "train.subset is not a setting of a search: every trial trains on every training text, so that "
                "trials are compared on the same data",
                fix="Drop train.subset from the configuration; to try settings on part of the texts first, use "
                "[[--screen||screen]].",
            )
        return self

    @model_validator(mode="after")
    def _cross_validation_fits(self) -> TuneConfig:
        if isinstance(self.tune.screen, int) and self.distill is not None:
            raise ConfigError(
                "[[--screen||screen]] is not supported when searching students of a teacher "
                "([[--distill-from||distill_from]]): they train on the teacher's targets for every training text",
                fix="Drop [[--screen||screen]].",
            )
        name = "cv" if self.tune.cv is not None else "rescore" if self.tune.rescore is not None else None
        if name is None:
            return self
        if self.distill is not None:
            raise ConfigError(
                f"[[--{name}||{name}]] is not supported when searching students of a teacher "
                "([[--distill-from||distill_from]])",
                fix=f"Drop [[--{name}||{name}]].",
            )
        if self.data.balance == "oversample":
            raise ConfigError(
                f"[[--{name}||{name}]] cannot fold oversampled training texts (a copy would be both trained on and "
                "validated)",
                fix='Use [[--balance class_weight||balance="class_weight"]] or undersample, or drop '
                f"[[--{name}||{name}]].",
            )
        return self

    def fingerprint(self) -> str:
        """What makes a study the same study: everything but the budget, the output folder, the size of the final
        ensemble and the re-scoring (both made from the study's trials, chosen anew when the search ends)."""
        from ajuste.search.storage import public_url

        not_the_study = {"trials", "timeout", "heartbeat", "ensemble", "rescore"}
        content = self.model_dump(mode="json", exclude={"out": True, "tune": not_the_study})
        if content.get("distill") is None:  # a search without a teacher keeps the fingerprint it always had
            content.pop("distill", None)
        content["train"].pop("subset", None)  # never a search's (refused): the fingerprint from before it existed
        if content["tune"].get("cv") is None:  # and one without cross-validation too
            content["tune"].pop("cv", None)
        if content["tune"].get("screen") == "auto":  # and one with the default screening
            content["tune"].pop("screen", None)
        if self.tune.storage is not None:  # the same study with or without the password in the URL
            content["tune"]["storage"] = public_url(self.tune.storage)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]

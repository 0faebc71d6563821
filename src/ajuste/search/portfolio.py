"""The settings a new study tries first: each searched family's defaults, then its portfolio, cheapest first.

A search that starts from what ``ajuste train --model F`` runs can only end, on validation, at or above the
best default run. The portfolio (declared per family in the registry) adds settings that are strong for
text classification in general, such as fine-tuning every layer of a pretrained encoder. Families come
cheapest first (the registry's ``cost_rank``); every default comes before any portfolio entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna

from ajuste.models.registry import FAMILIES, make_family
from ajuste.search.settings import TuneConfig
from ajuste.search.space import SearchSpace
from ajuste.search.study import STARTING_POINT
from ajuste.training.settings import TrainSettings
from ajuste.validation import model_settings, validate

__all__ = ["default_settings", "enqueue_portfolio", "portfolio"]

log = logging.getLogger(__name__)


def default_settings(config: TuneConfig, family: str, change: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat settings (``model.x``, ``train.y``) that ``ajuste train`` runs for ``family``: the user's fixed
    settings, then ``change``, the rest at their defaults, with the family's training defaults resolved."""
    change = dict(change or {})
    base = dict(config.model) if config.model.get("family") == family else {}
    model_values = {**base, "family": family, **{k[6:]: v for k, v in change.items() if k.startswith("model.")}}
    model = model_settings(model_values)
    defaults = make_family(model).defaults()
    train = config.train.model_dump()
    train.update({k[6:]: v for k, v in change.items() if k.startswith("train.")})
    for name in ("lr", "epochs", "batch_size"):
        if train[name] is None:
            train[name] = getattr(defaults, name)
    train = validate(TrainSettings, train, "train").model_dump()
    flat = {f"model.{k}": v for k, v in model.model_dump(mode="json").items()}
    return {**flat, **{f"train.{k}": v for k, v in train.items()}}


def portfolio(config: TuneConfig, space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """(what, study parameters) of every default and portfolio entry the space can express, in order."""
    families = sorted(space.families, key=lambda f: FAMILIES[f].cost_rank)  # stable: registry order within a rank
    entries: list[tuple[str, Mapping[str, Any] | None]] = [(f, None) for f in families]
    entries += [(f, change) for f in families for change in FAMILIES[f].portfolio]
    found: list[tuple[str, dict[str, Any]]] = []
    for family, change in entries:
        what = f"{family} " + ("defaults" if change is None else ", ".join(f"{k}={v}" for k, v in change.items()))
        params = space.encode(default_settings(config, family, change))
        if params is None:
            log.info("not tried first: %s (outside the search space)", what)
            continue
        if all(params != other for _, other in found):
            found.append((what, params))
    return found


def enqueue_portfolio(study: optuna.Study, config: TuneConfig, space: SearchSpace) -> int:
    """Queue the portfolio as the first trials of a new study; returns how many were queued."""
    if study.get_trials(deepcopy=False):
        return 0  # once per study: a resumed study has them already
    queued = portfolio(config, space)
    for what, params in queued:
        study.enqueue_trial(params, user_attrs={STARTING_POINT: what})
    return len(queued)

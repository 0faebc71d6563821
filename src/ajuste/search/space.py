"""Search spaces as data: what ``ajuste tune`` may try, over ``model.*`` and ``train.*`` settings.

A space is a mapping (a YAML file's ``space:`` section, or a Python dict)::

    model.family: [bag, gpt]                      # the family is a hyperparameter too
    train.weight_decay: {low: 1.0e-6, high: 0.1, log: true}
    bag:                                          # a sub-space, used only when model.family == bag
      model.embed_dim: {low: 16, high: 256, step: 16}
      train.lr: {low: 1.0e-3, high: 0.3, log: true}
    gpt:
      model.num_heads: [2, 4, 8]
      model.emb_dim: {low: 64, high: 256, step: 32}
      train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}
      constraints: ["model.emb_dim % model.num_heads == 0"]

A value is a list (categorical choices), a mapping with ``low`` and ``high`` (int when both are whole
numbers, else float; ``log``, ``step``, and ``grid`` points for the grid sampler), a mapping with
``choices``, or a single value (fixed). ``when: "model.trainable == 'lora'"`` makes a setting
conditional; a list of mappings that each have a ``when`` gives one range per condition (e.g. a
learning rate per trainable policy). ``constraints`` are expressions over int and categorical settings:
those settings are sampled together from their valid combinations only, so an impossible setting is
never tried. Every problem of a space is reported at once, before any trial.

A setting searched in several places (by several families, or with one range per condition) is one
parameter of the study, so that every model-based sampler models it: as it is where every place gives
the same range, else as a coordinate in [0, 1] that each place maps into its own range. The settings a
trial runs, and each family's ranges, are those written.
"""

from __future__ import annotations

import itertools
import math
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, ValidationError

from ajuste.errors import ConfigError
from ajuste.models.registry import FAMILIES
from ajuste.search.expressions import Expression, ExpressionError
from ajuste.training.settings import TrainSettings
from ajuste.validation import validation_messages

__all__ = ["Param", "SearchSpace", "default_space", "parse_space"]

#: Most valid combinations a constrained group may have, and most points a grid may have.
MAX_COMBINATIONS = 100_000
#: Most combinations of a family's finite model settings checked against the model's own rules.
MAX_CHECKED = 20_000
GRID_POINTS = 5
#: What a parameter missing from a trial's parameters reads as (None is a value a choice may have).
_UNSET = object()


def default_space(families: Sequence[str]) -> dict[str, Any]:
    """The default space over ``families``: the family choice, then each family's own sub-space."""
    space: dict[str, Any] = {"model.family": list(families) if len(families) > 1 else families[0]}
    for family in families:
        space[family] = dict(FAMILIES[family].space)
    return space


Kind = Literal["float", "int", "categorical"]


@dataclass(frozen=True)
class Param:
    """One searched setting in one place of the space.

    ``key`` is the setting (``train.lr``); ``label`` names the place (``bag/train.lr``, or
    ``train.lr[model.trainable == 'head']`` for one range of several under conditions); ``name`` is the
    study parameter that sets it. The low, high, step and choices are this place's range, as written.
    When ``unit`` is set, the study parameter is a coordinate in [0, 1] shared by every place of the
    setting, and each place maps it into its own range (see :func:`_share`).
    """

    key: str
    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()
    when: Expression | None = None
    label: str = ""
    unit: bool = False

    def __post_init__(self) -> None:
        if not self.label:  # where it is searched: the parameter's own name until the setting shares one
            object.__setattr__(self, "label", self.name)

    def distribution(self) -> BaseDistribution:
        """The distribution of the study parameter."""
        return FloatDistribution(0.0, 1.0) if self.unit else self.setting_distribution()

    def setting_distribution(self) -> BaseDistribution:
        """The distribution of the setting's values in this place."""
        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        low, high = self.bounds()
        if self.kind == "int":
            return IntDistribution(int(low), int(high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(low, high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        """The study parameter's value in ``trial`` (a unit coordinate when ``unit``; see :meth:`setting`)."""
        if self.unit:
            return trial.suggest_float(self.name, 0.0, 1.0)
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = self.bounds()
        if self.kind == "int":
            return trial.suggest_int(self.name, int(low), int(high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, low, high, step=self.step, log=self.log)

    def setting(self, value: Any) -> Any:
        """The setting's value for the study parameter's ``value``: a unit coordinate lands in this place's
        range, on its steps or choices; a float is rounded to 12 significant digits so that a value that
        :meth:`coordinate` encoded (a family's default learning rate, say) comes back exactly."""
        if not self.unit:
            return value
        unit = min(max(float(value), 0.0), 1.0)
        if self.kind == "categorical":
            ordered = sorted(self.choices)
            return ordered[min(int(unit * len(ordered)), len(ordered) - 1)]
        low, high = self.bounds()
        start, end = self._unit_ends()
        scaled = start + unit * (end - start)
        number = math.exp(scaled) if self.log else scaled
        if self.step is not None:  # the nearest step, the last one at most (``high`` need not be one)
            last = math.floor((high - low) / self.step + 1e-9)  # 0.3 / 0.1 falls just short of 3
            number = low + min(max(round((number - low) / self.step), 0), last) * self.step
        if self.kind == "int":
            return int(min(max(round(number), low), high))
        return min(max(float(f"{number:.12g}"), low), high)

    def coordinate(self, value: Any) -> Any:
        """The study parameter's value that gives the setting's ``value`` (the inverse of :meth:`setting`);
        ``value`` must lie in this place's range."""
        if not self.unit:
            return value
        if self.kind == "categorical":
            ordered = sorted(self.choices)
            return (ordered.index(value) + 0.5) / len(ordered)
        start, end = self._unit_ends()
        if start == end:
            return 0.5
        scaled = math.log(value) if self.log else float(value)
        return min(max((scaled - start) / (end - start), 0.0), 1.0)

    def _unit_ends(self) -> tuple[float, float]:
        """The ends of the (log) interval a unit coordinate spans. Whole steps are widened by half a step
        on each side, so that each value of an int range gets an equal share of [0, 1], as Optuna's own
        sampling of an int range gives it."""
        low, high = self.bounds()
        half = 0.0 if self.kind == "float" and self.step is None else (self.step or 1) / 2
        if self.log:
            return math.log(low - half), math.log(high + half)
        return low - half, high + half

    def bounds(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            raise ValueError(f"{self.key} is categorical: it has no bounds")
        return self.low, self.high

    def values(self) -> list[Any]:
        """Every value for a finite (int or categorical) setting; the grid points for a float."""
        if self.grid:
            return list(self.grid)
        if self.kind == "categorical":
            return list(self.choices)
        low, high = self.bounds()
        if self.kind == "int":
            everything = list(range(int(low), int(high) + 1, int(self.step or 1)))
            if len(everything) <= 2 * GRID_POINTS or self.step is not None:
                return everything
            return sorted({round(v) for v in _spread(low, high, self.log)})
        if self.step is not None:
            count = round((high - low) / self.step) + 1
            if count <= 2 * GRID_POINTS:
                return [min(low + i * self.step, high) for i in range(count)]
        return _spread(low, high, self.log)

    @property
    def finite(self) -> bool:
        return self.kind != "float"

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(str(c) for c in self.choices)
        text = (
            f"{self.low:g} to {self.high:g}"
            + (" (log)" if self.log else "")
            + (f" step {self.step:g}" if self.step else "")
        )
        return text + (f" when {self.when}" if self.when else "")


def _spread(low: float, high: float, log: bool, count: int = GRID_POINTS) -> list[float]:
    if count == 1:  # the middle of the range (geometric on a log scale)
        return [math.sqrt(low * high) if log else (low + high) / 2]
    if log:
        points = [float(math.exp(v)) for v in _linspace(math.log(low), math.log(high), count)]
    else:
        points = _linspace(low, high, count)
    # exp(log(x)) and low + (high - low) can miss the ends by a rounding error: keep every point in range.
    points = [min(max(point, low), high) for point in points]
    points[0], points[-1] = low, high
    return points


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _coarse_values(param: Param, count: int) -> list[Any]:
    """``count`` grid points of a numeric setting, spread over its range, on its steps and its kind."""
    if count >= len(param.values()):
        return param.values()
    if param.kind == "categorical":  # every other choice, first kept, until count are left
        choices = list(param.choices)
        stride = math.ceil(len(choices) / count)
        return choices[::stride][:count]
    low, high = param.bounds()
    points = _spread(low, high, param.log, count)
    if param.step:
        points = [min(high, low + round((v - low) / param.step) * param.step) for v in points]
    if param.kind == "int":
        return sorted({round(v) for v in points})
    return sorted(set(points))


#: Settings that keep their grid points longest when a grid must shrink (the most important first).
_GRID_PRIORITY = (
    "model.family",
    "model.trainable",
    "train.lr",
    "model.C",
    "train.epochs",
    "model.embed_dim",
    "model.emb_dim",
    "model.num_layers",
)


def _linspace(low: float, high: float, count: int) -> list[float]:
    return [low + (high - low) * i / (count - 1) for i in range(count)]


@dataclass(frozen=True)
class Group:
    """Settings tied by constraints, sampled together as one choice among their valid combinations."""

    keys: tuple[str, ...]
    name: str
    combos: tuple[tuple[Any, ...], ...]
    constraints: tuple[Expression, ...]
    _by_label: dict[str, tuple[Any, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = ["|".join(str(v) for v in combo) for combo in self.combos]
        object.__setattr__(self, "_by_label", dict(zip(labels, self.combos)))

    @property
    def labels(self) -> list[str]:
        return list(self._by_label)

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.labels)

    def suggest(self, trial: optuna.Trial) -> str:
        """The label of the combination ``trial`` takes (see :meth:`decode`)."""
        return str(trial.suggest_categorical(self.name, self.labels))

    def decode(self, label: str) -> dict[str, Any]:
        return dict(zip(self.keys, self._by_label[label]))


Item = Param | Group


@dataclass
class Scope:
    """What one family searches: its fixed settings and, in sampling order, its parameters and groups."""

    family: str
    fixed: dict[str, Any]
    items: list[Item]

    def keys(self) -> set[str]:
        keys = set(self.fixed)
        for item in self.items:
            keys.update(item.keys if isinstance(item, Group) else (item.key,))
        return keys


@dataclass
class SearchSpace:
    """A validated search space: the family choice and one scope per family."""

    families: list[str]
    scopes: dict[str, Scope]
    source: dict[str, Any] = field(default_factory=dict)
    #: Settings the space searched but the user fixed (``--epochs 3``), with their fixed values.
    fixed_by_user: dict[str, Any] = field(default_factory=dict)
    _grid: list[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The settings of one trial, as a flat mapping such as ``{"model.family": "gpt", "train.lr": 0.001}``."""
        family = self.families[0]
        if len(self.families) > 1:
            family = trial.suggest_categorical("model.family", list(self.families))
        values, _ = self._walk(family, lambda item: item.suggest(trial))
        return values

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter of the study by name (conditional ones included)."""
        found: dict[str, BaseDistribution] = {}
        if len(self.families) > 1:
            found["model.family"] = CategoricalDistribution(list(self.families))
        for scope in self.scopes.values():
            for item in scope.items:
                found[item.name] = item.distribution()
        return found

    def grid(self) -> list[dict[str, Any]]:
        """Every distinct point of the space as study parameters, conditions honoured: what grid search runs."""
        if self._grid is not None:
            return self._grid
        points: list[dict[str, Any]] = []
        for family in self.families:
            scope = self.scopes[family]
            start: dict[str, Any] = {"model.family": family} if len(self.families) > 1 else {}
            values: dict[str, Any] = {"model.family": family, **scope.fixed}
            for point, _ in _expand(scope.items, 0, start, values, dict.fromkeys(scope.keys())):
                points.append(point)
                if len(points) > MAX_COMBINATIONS:
                    raise ConfigError(
                        "the grid of this search space is too large",
                        expected=f"at most {MAX_COMBINATIONS:,} points",
                        found="more",
                        fix="Give float settings fewer `grid` points, or use another sampler.",
                    )
        self._grid = points
        return points

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The settings of a finished trial from its study parameters."""
        values, _ = self._walk(params.get("model.family", self.families[0]), lambda item: params.get(item.name, _UNSET))
        return values

    def active(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The study parameters a trial takes from ``params`` (a value for every parameter of the space):
        the family, then those of the family whose conditions hold. The ``nn`` sampler proposes points of
        the whole space and scores each by the parameters it would really set."""
        family = params.get("model.family", self.families[0])
        _, used = self._walk(family, lambda item: params.get(item.name, _UNSET))
        return {"model.family": family, **used} if len(self.families) > 1 else used

    def _walk(self, family: str, study_value: Callable[[Item], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The settings and the study parameters of one point of ``family``: in sampling order, each group,
        and each parameter whose condition holds, takes ``study_value(item)`` (left out when that is _UNSET)."""
        scope = self.scopes[family]
        values: dict[str, Any] = {"model.family": family, **scope.fixed}
        params: dict[str, Any] = {}
        unset = dict.fromkeys(scope.keys())
        for item in scope.items:
            if isinstance(item, Param) and item.when is not None and not item.when.holds(ChainMap(values, unset)):
                continue
            value = study_value(item)
            if value is _UNSET:
                continue
            params[item.name] = value
            values.update(item.decode(value) if isinstance(item, Group) else {item.key: item.setting(value)})
        return values, params

    def grid_size(self) -> int | None:
        """How many points the grid has; None when more than it may have."""
        try:
            return len(self.grid())
        except ConfigError:
            return None

    def coarsened(self, points: int) -> tuple[SearchSpace, list[str]]:
        """This space with fewer grid points per setting — numeric settings first, then choices, the least
        important first, each down to one point before the next loses any — until its grid has at most ``points``
        points or nothing is left to thin; and one line per setting that lost points."""
        size = self.grid_size()
        if size is not None and size <= points:
            return self, []
        items = [item for scope in self.scopes.values() for item in scope.items if isinstance(item, Param)]
        items = [p for p in items if len(p.values()) > 1]
        # settings not in _GRID_PRIORITY first (numeric before categorical), then those, from its end
        rank = {key: i for i, key in enumerate(_GRID_PRIORITY)}
        items.sort(key=lambda p: (p.key in rank, p.key not in rank and p.kind == "categorical", -rank.get(p.key, 0)))
        counts = {p.label: len(p.values()) for p in items}
        space = self
        for param in items:  # the least important setting down to one point before the next loses any
            while counts[param.label] > 1 and (size is None or size > points):
                count = counts[param.label]
                counts[param.label] = count // 2 if count > 3 else count - 1
                space = self._with_points(counts)
                size = space.grid_size()
        changed = []
        for p in items:
            if counts[p.label] < len(p.values()):
                kept = ", ".join(_short(v) for v in _coarse_values(p, counts[p.label]))
                changed.append(f"{p.label} {len(p.values())} → {counts[p.label]} ({kept})")
        return space, changed

    def _with_points(self, counts: Mapping[str, int]) -> SearchSpace:
        scopes = {
            family: replace(
                scope,
                items=[
                    replace(item, grid=tuple(_coarse_values(item, counts[item.label])))
                    if isinstance(item, Param) and item.label in counts
                    else item
                    for item in scope.items
                ],
            )
            for family, scope in self.scopes.items()
        }
        return SearchSpace(self.families, scopes, self.source, self.fixed_by_user)

    def encode(self, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The study parameters under which :meth:`suggest` gives ``settings`` (for enqueuing known settings);
        None when the space cannot give them (a value out of its ranges, a family it does not search)."""
        family = settings.get("model.family", self.families[0])
        if family not in self.scopes:
            return None
        scope = self.scopes[family]
        params: dict[str, Any] = {"model.family": family} if len(self.families) > 1 else {}
        values: dict[str, Any] = {"model.family": family, **scope.fixed}  # the space's fixed values win
        unset = dict.fromkeys(scope.keys())
        for item in scope.items:
            if isinstance(item, Group):
                label = "|".join(str(settings.get(key)) for key in item.keys)
                if label not in item.labels or item.decode(label) != {k: settings.get(k) for k in item.keys}:
                    return None
                params[item.name] = label
                values.update(item.decode(label))
            elif item.when is None or item.when.holds(ChainMap(values, unset)):
                value = settings.get(item.key)
                distribution = item.setting_distribution()
                try:
                    inside = value is not None and distribution._contains(distribution.to_internal_repr(value))
                except (ValueError, TypeError):
                    inside = False
                # A shared coordinate gives back a float to 12 significant digits: a value with more cannot be enqueued.
                if not inside or item.setting(item.coordinate(value)) != value:
                    return None
                params[item.name] = item.coordinate(value)
                values[item.key] = value
        return params

    def describe(self) -> list[str]:
        """One line per family and setting, for ``--dry-run``-style listings and the report."""
        lines = []
        for family in self.families:
            scope = self.scopes[family]
            lines.append(f"{family}:")
            lines += [f"  {key} = {value}" for key, value in scope.fixed.items()]
            for item in scope.items:
                if isinstance(item, Group):
                    constraint = " and ".join(str(c) for c in item.constraints)
                    lines.append(f"  {', '.join(item.keys)}: {len(item.combos)} combinations where {constraint}")
                else:
                    lines.append(f"  {item.key}: {item.describe()}")
        return lines


def _expand(
    items: list[Item], index: int, point: dict[str, Any], values: dict[str, Any], unset: dict[str, Any]
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every point of ``items`` from ``index`` on, conditions honoured: (study parameters, settings) of each."""
    if index == len(items):
        yield dict(point), dict(values)
        return
    item = items[index]
    if isinstance(item, Group):
        for label in item.labels:
            yield from _expand(items, index + 1, {**point, item.name: label}, {**values, **item.decode(label)}, unset)
        return
    if item.when is not None and not item.when.holds(ChainMap(values, unset)):
        yield from _expand(items, index + 1, point, values, unset)
        return
    for value in item.values():
        chosen = {**point, item.name: item.coordinate(value)}
        yield from _expand(items, index + 1, chosen, {**values, item.key: value}, unset)


# -- parsing ------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        if line not in self.lines:  # a shared setting is checked once per family: say its problem once
            self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("invalid search space: " + "; ".join(self.lines))


def parse_space(
    raw: Mapping[str, Any] | None,
    *,
    base_model: Mapping[str, Any] | None = None,
    families: Sequence[str] = (),
    fixed: Mapping[str, Any] | None = None,
    default_families: Sequence[str] = (),
) -> SearchSpace:
    """A validated :class:`SearchSpace` from plain data; every problem is listed in one ConfigError.

    ``base_model`` holds the fixed model settings (``--model`` and its flags); ``families``, the families the
    user asked for (``--model bag,gpt``), used when the space names no ``model.family`` and refused when it names
    others; ``default_families``, those searched when neither the user, the model settings nor the space names
    any. ``raw`` None or empty: the default space of the families.
    ``fixed`` maps settings the user fixed (``{"train.epochs": 3}``) to their values: they replace
    whatever the space says of them, and :attr:`SearchSpace.fixed_by_user` names those it searched.
    """
    problems = _Problems()
    base = dict(base_model or {})
    if not raw:
        chosen = list(families) or ([base["family"]] if "family" in base else []) or list(default_families)
        if not chosen:
            raise ConfigError(
                "no search space", fix="Give [[--model||model]], or [[a `space:` section in --config||space]]."
            )
        raw = default_space(chosen)
    if not isinstance(raw, Mapping):
        raise ConfigError("invalid search space", expected="a mapping of settings", found=type(raw).__name__)
    top = dict(raw)
    family_spec = top.pop("model.family", None)
    constraints = top.pop("constraints", [])
    blocks = {name: top.pop(name) for name in list(top) if name in FAMILIES}
    blocks = {name: dict(block) if isinstance(block, Mapping) else block for name, block in blocks.items()}
    overridden = _fix(top, blocks, dict(fixed or {}))
    for name in list(top):
        if "." not in str(name):
            hint = f"a family sub-space ({', '.join(FAMILIES)}), constraints, or a setting such as train.lr"
            problems.add(str(name), f"unknown key; expected {hint}")
            top.pop(name)

    chosen_families = _families(family_spec, blocks, base, families, default_families, problems)
    scopes: dict[str, Scope] = {}
    for family in chosen_families:
        block = blocks.get(family, {})
        if not isinstance(block, Mapping):
            problems.add(family, f"expected a mapping of settings, found {type(block).__name__}")
            block = {}
        block = dict(block)
        block_constraints = block.pop("constraints", [])
        for name in [n for n in block if "." not in str(n)]:
            problems.add(
                f"{family}.{name}", "unknown key; expected a setting such as model.x or train.y, or constraints"
            )
            block.pop(name)
        specs = {**top, **block}  # a family's own range replaces the common one
        prefix = f"{family}/" if len(chosen_families) > 1 or family in blocks else ""
        scope_base = base if base.get("family") == family else {}
        scopes[family] = _scope(
            family,
            specs,
            set(block),
            prefix,
            [*_as_list(constraints), *_as_list(block_constraints)],
            scope_base,
            problems,
        )
    problems.raise_if_any()
    return SearchSpace(chosen_families, _share(scopes), dict(raw), fixed_by_user=overridden)


def _share(scopes: dict[str, Scope]) -> dict[str, Scope]:
    """The scopes with one study parameter, named by its key, for each setting searched in several places.

    A learning rate searched by three families, or under one range per trainable policy, is one parameter:
    then the samplers that model only the parameters every trial has (``gp``, ``cmaes``; Optuna's
    intersection search space) model it too, and every model learns it from every trial that sets it.
    Places with the same range share it as it is (``train.weight_decay``); places whose ranges differ share
    a coordinate in [0, 1] that each maps into its own range as written, so every family keeps its range
    (0.5 is the middle of each family's learning-rate range, on its log scale). Choices can share a
    coordinate only when they are numbers, which have an order (batch sizes); other settings whose choices
    differ keep one parameter per place.
    """
    places: dict[str, list[Param]] = {}
    for scope in scopes.values():
        for item in scope.items:
            if isinstance(item, Param):
                places.setdefault(item.key, []).append(item)
    shared: dict[str, Param] = {}
    for key, params in places.items():
        if len(params) < 2:
            continue
        first = params[0].setting_distribution()
        if all(p.setting_distribution() == first for p in params):
            shared.update((p.label, replace(p, name=key)) for p in params)
        elif all(p.kind != "categorical" or all(_is_number(c) for c in p.choices) for p in params):
            shared.update((p.label, replace(p, name=key, unit=True)) for p in params)
    return {
        family: replace(scope, items=[shared.get(i.label, i) if isinstance(i, Param) else i for i in scope.items])
        for family, scope in scopes.items()
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fix(top: dict[str, Any], blocks: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """Replace the ranges of user-fixed settings by their values, in place; returns those that were ranges."""
    overridden: dict[str, Any] = {}
    for key, value in fixed.items():
        for specs in (top, *(b for b in blocks.values() if isinstance(b, dict))):
            if key in specs:
                if isinstance(specs[key], (list, tuple, Mapping)):
                    overridden[key] = value
                specs[key] = value
    return overridden


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _families(
    spec: Any,
    blocks: Mapping[str, Any],
    base: Mapping[str, Any],
    families: Sequence[str],
    defaults: Sequence[str],
    problems: _Problems,
) -> list[str]:
    if spec is None:
        chosen = list(families) or ([base["family"]] if "family" in base else []) or list(blocks) or list(defaults)
    elif isinstance(spec, str):
        chosen = [spec]
    elif isinstance(spec, (list, tuple)):
        chosen = [str(s) for s in spec]
    elif isinstance(spec, Mapping) and isinstance(spec.get("choices"), (list, tuple)):
        chosen = [str(s) for s in spec["choices"]]
    else:
        problems.add("model.family", f"expected a family or a list of families, found {spec!r}")
        chosen = []
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        problems.add("model.family", f"unknown family {', '.join(unknown)}; expected {', '.join(FAMILIES)}")
    if not chosen and spec is None:
        problems.add("model.family", "the space names no model family; add model.family or give [[--model||model]]")
    elif not chosen and (isinstance(spec, (list, tuple)) or (isinstance(spec, Mapping) and spec.get("choices") == [])):
        problems.add("model.family", f"expected at least one family ({', '.join(FAMILIES)}), found an empty list")
    asked = list(families) or ([base["family"]] if "family" in base else [])
    if spec is not None and asked and not set(asked) <= set(chosen):
        problems.add(
            "model.family",
            f"the space searches {', '.join(chosen)}, but the model asked for is {', '.join(asked)} "
            "([[--model||model]] or the model section); drop one of the two",
        )
    for name in chosen:
        if (
            name in FAMILIES
            and FAMILIES[name].needs_checkpoint
            and not base.get("checkpoint")
            and "model.checkpoint" not in dict(blocks.get(name) or {})
        ):
            problems.add(
                name,
                f"needs a checkpoint: give [[--model PATH_OR_HUB_ID||model=PATH_OR_HUB_ID]], or "
                f"{name}.model.checkpoint",
            )
    for name in blocks:
        if name not in chosen:
            problems.add(name, f"a sub-space for a family that model.family does not include ({', '.join(chosen)})")
    return [f for f in dict.fromkeys(chosen) if f in FAMILIES]


def _scope(
    family: str,
    specs: Mapping[str, Any],
    own: set[str],
    prefix: str,
    constraint_texts: list[Any],
    base: Mapping[str, Any],
    problems: _Problems,
) -> Scope:
    settings_class = FAMILIES[family].settings
    known_problems = len(problems.lines)
    fixed: dict[str, Any] = {}
    params: list[Param] = []
    for key, spec in specs.items():
        where = f"{family}.{key}" if key in own else key
        if not _known_key(str(key), settings_class, where, problems):
            continue
        if isinstance(spec, list) and spec and all(isinstance(s, Mapping) for s in spec):
            for variant in spec:
                if "when" not in variant:
                    problems.add(where, "each range of a list of ranges needs a `when` condition")
                    continue
                param = _param(str(key), f"{prefix}{key}[{variant['when']}]", variant, where, problems)
                if param is not None:
                    params.append(param)
            continue
        if not isinstance(spec, (list, tuple, Mapping)):
            fixed[str(key)] = spec
            continue
        param = _param(str(key), f"{prefix}{key}", spec, where, problems)
        if param is not None:
            params.append(param)
    for param in params:
        for value in _checked_values(param):
            _check_value(family, settings_class, param.key, value, f"{family}: {param.key}", base, problems)
    for key, value in fixed.items():
        _check_value(family, settings_class, key, value, f"{family}: {key}", base, problems)

    constraints = []
    for text in constraint_texts:
        try:
            constraints.append(Expression.parse(str(text)))
        except ExpressionError as exc:
            problems.add(f"{family} constraints", str(exc))
    keys = {p.key for p in params} | set(fixed) | {"model.family"}
    for expression in constraints + [p.when for p in params if p.when is not None]:
        unknown = sorted(expression.names - keys)
        if unknown:
            problems.add(family, f"'{expression}' reads {', '.join(unknown)}, which this family's space does not set")
    groups = _groups(family, prefix, params, fixed, constraints, problems)
    grouped = {key for group in groups for key in group.keys}
    items = _order([p for p in params if p.key not in grouped or p.when is not None], groups, problems, family)
    scope = Scope(family, fixed, items)
    # Checked when this family's own settings are valid, whatever the problems of other families.
    if len(problems.lines) == known_problems:
        _check_combinations(family, settings_class, scope, base, problems)
    return scope


def _known_key(key: str, settings_class: type[BaseModel], where: str, problems: _Problems) -> bool:
    section, _, name = key.partition(".")
    if section == "model":
        known = [n for n in settings_class.model_fields if n != "family"]
    elif section == "train":
        if name == "subset":  # every trial learns from every training text (``--screen`` tries part first)
            problems.add(where, "not a searched setting: trials are compared on every training text; see --screen")
            return False
        known = list(TrainSettings.model_fields)
    else:
        problems.add(where, "expected a setting of model or train, such as train.lr")
        return False
    if name not in known:
        import difflib

        guess = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {section}.{guess[0]}?" if guess else f"known: {', '.join(known)}"
        problems.add(where, f"unknown setting; {hint}")
        return False
    return True


def _param(key: str, name: str, spec: Any, where: str, problems: _Problems) -> Param | None:
    if isinstance(spec, (list, tuple)):
        spec = {"choices": list(spec)}
    spec = dict(spec)
    when = None
    if "when" in spec:
        try:
            when = Expression.parse(str(spec.pop("when")))
        except ExpressionError as exc:
            problems.add(where, str(exc))
            return None
    allowed = {"choices", "low", "high", "log", "step", "grid", "type"}
    extra = sorted(set(spec) - allowed)
    if extra:
        problems.add(where, f"unknown field {', '.join(extra)}; expected low, high, log, step, grid, choices, when")
        return None
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices:
            problems.add(where, "choices must be a non-empty list")
            return None
        if any(not (c is None or isinstance(c, (bool, int, float, str))) for c in choices):
            problems.add(where, "choices must be numbers, strings, booleans or null")
            return None
        if len(set(map(repr, choices))) != len(choices):
            problems.add(where, "choices must not repeat")
            return None
        return Param(key, name, "categorical", choices=tuple(choices), when=when)
    if "low" not in spec or "high" not in spec:
        problems.add(where, "a range needs low and high (or give a list of choices)")
        return None
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        problems.add(where, f"low and high must be numbers, found {low!r} and {high!r}")
        return None
    kind: Kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        problems.add(where, f"type must be int or float, found {kind!r}")
        return None
    log, step = bool(spec.get("log", False)), spec.get("step")
    message = None
    if low > high:
        message = f"low ({low}) must not exceed high ({high})"
    elif log and low <= 0:
        message = f"a log range needs low > 0, found {low}"
    elif step is not None and (not isinstance(step, (int, float)) or step <= 0):
        message = f"step must be a positive number, found {step!r}"
    elif log and step is not None and not (kind == "int" and step == 1):
        message = "log and step cannot be combined"
    elif kind == "int" and (low != int(low) or high != int(high) or (step is not None and step != int(step))):
        message = "an int range needs whole-number low, high and step"
    elif step is not None and abs((steps := (high - low) / step) - round(steps)) > 1e-9:
        # Optuna would warn and cut the range down to its last whole step, without a word in the output
        below, above = low + math.floor(steps) * step, low + math.ceil(steps) * step
        message = f"high ({high}) is not low ({low}) plus whole steps of {step}: make high {below:g} or {above:g}"
    if message:
        problems.add(where, message)
        return None
    grid = spec.get("grid") or ()
    if grid and (not isinstance(grid, (list, tuple)) or any(not low <= g <= high for g in grid)):
        problems.add(where, f"grid points must be a list of values between {low} and {high}")
        return None
    if kind == "int":
        return Param(
            key, name, "int", int(low), int(high), log, int(step) if step else None, grid=tuple(grid), when=when
        )
    return Param(
        key, name, "float", float(low), float(high), log, float(step) if step else None, grid=tuple(grid), when=when
    )


def _checked_values(param: Param) -> list[Any]:
    if param.kind == "categorical":
        return list(param.choices)
    return [param.low, param.high, *param.grid]


def split_settings(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"model.x": 1, "train.y": 2}`` → ``({"x": 1}, {"y": 2})``; ``model.family`` is left out."""
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if section == "model" and name != "family":
            model[name] = value
        elif section == "train":
            train[name] = value
    return model, train


def _settings_values(
    family: str, base: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    model_values, train = split_settings(values)
    model: dict[str, Any] = {**{k: v for k, v in base.items() if k != "family"}, "family": family, **model_values}
    if family == "pretrained" and "checkpoint" not in model:
        model["checkpoint"] = "checkpoint"  # only the shape of the settings is checked here
    return model, train


def _check_value(
    family: str,
    settings_class: type[BaseModel],
    key: str,
    value: Any,
    where: str,
    base: Mapping[str, Any],
    problems: _Problems,
) -> None:
    model, train = _settings_values(family, base, {key: value})
    section, _, name = key.partition(".")
    target, values = (settings_class, model) if section == "model" else (TrainSettings, train)
    try:
        target.model_validate(values)
    except ValidationError as exc:
        for error, message in zip(exc.errors(), validation_messages(exc, "")):
            if tuple(error["loc"]) == (name,):
                problems.add(where, message.split(": ", 1)[-1])
                return


def _groups(
    family: str,
    prefix: str,
    params: list[Param],
    fixed: Mapping[str, Any],
    constraints: list[Expression],
    problems: _Problems,
) -> list[Group]:
    by_key = {p.key: p for p in params}
    # Constraints that share a setting are solved together (union of their settings).
    clusters: list[tuple[set[str], list[Expression]]] = []
    for expression in constraints:
        names = set(expression.names) - set(fixed) - {"model.family"}
        merged = [c for c in clusters if c[0] & names]
        for cluster in merged:
            clusters.remove(cluster)
            names |= cluster[0]
        clusters.append((names, [e for c in merged for e in c[1]] + [expression]))
    groups = []
    for names, expressions in clusters:
        where = f"{family} constraints"
        bad = sorted(n for n in names if n in by_key and (not by_key[n].finite or by_key[n].when is not None))
        if bad:
            problems.add(where, f"{', '.join(bad)} must be unconditional int or categorical settings to be constrained")
            continue
        keys = tuple(sorted(n for n in names if n in by_key))
        values = [_every(by_key[k]) for k in keys]
        size = math.prod(len(v) for v in values)
        if size > MAX_COMBINATIONS:
            problems.add(
                where, f"{', '.join(keys)} have {size:,} combinations, more than {MAX_COMBINATIONS:,}; narrow them"
            )
            continue
        combos = []
        for combo in itertools.product(*values):
            point = {**fixed, "model.family": family, **dict(zip(keys, combo))}
            try:
                if all(e.holds(point) for e in expressions):
                    combos.append(combo)
            except ExpressionError as exc:
                problems.add(where, str(exc))
                break
        else:
            if not combos:
                shown = " and ".join(str(e) for e in expressions)
                problems.add(where, f"no combination of {', '.join(keys)} satisfies {shown}")
                continue
            if keys:
                groups.append(Group(keys, prefix + "|".join(keys), tuple(combos), tuple(expressions)))
    return groups


def _every(param: Param) -> list[Any]:
    return list(param.choices) if param.kind == "categorical" else _all_ints(param)


def _all_ints(param: Param) -> list[int]:
    low, high = param.bounds()
    return list(range(int(low), int(high) + 1, int(param.step or 1)))


def _order(params: list[Param], groups: list[Group], problems: _Problems, family: str) -> list[Item]:
    """Groups and unconditional settings first, then conditional ones once what they read is placed."""
    placed: set[str] = {"model.family"}
    items: list[Item] = []
    for group in groups:
        items.append(group)
        placed.update(group.keys)
    waiting = []
    for param in params:
        if param.when is None:
            items.append(param)
            placed.add(param.key)
        else:
            waiting.append(param)
    conditional_keys = {p.key for p in waiting}
    while waiting:
        ready = [p for p in waiting if p.when is not None and not (p.when.names & conditional_keys - placed)]
        if not ready:
            problems.add(family, "conditions read each other in a cycle: " + ", ".join(str(p.when) for p in waiting))
            break
        for param in ready:
            items.append(param)
            waiting.remove(param)
        placed.update(p.key for p in ready)
    return items


def _check_combinations(
    family: str, settings_class: type[BaseModel], scope: Scope, base: Mapping[str, Any], problems: _Problems
) -> None:
    """Try the model's own consistency rules on every combination of finite settings the space can give."""
    finite = [i for i in scope.items if isinstance(i, Group) or (i.key.startswith("model.") and i.finite)]
    floats = [i for i in scope.items if isinstance(i, Param) and not i.finite and i.key.startswith("model.")]
    size = math.prod(len(i.combos) if isinstance(i, Group) else len(_every(i)) for i in finite) if finite else 1
    if size > MAX_CHECKED:
        return
    finite = [
        i if isinstance(i, Group) or i.kind == "categorical" else replace(i, grid=tuple(_every(i))) for i in finite
    ]
    unset = dict.fromkeys(scope.keys())
    for _, chosen in _expand(finite, 0, {}, {"model.family": family, **scope.fixed}, unset):
        # a float setting at its low end, where its condition holds: one under a false `when` is not set at all
        present = {i.key: i.low for i in floats if i.when is None or i.when.holds(ChainMap(chosen, unset))}
        values = {**scope.fixed, **present, **{k: v for k, v in chosen.items() if k != "model.family"}}
        model, _ = _settings_values(family, base, values)
        try:
            settings_class.model_validate(model)
        except ValidationError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in values.items() if k.startswith("model."))
            reason = "; ".join(validation_messages(exc, "model"))
            problems.add(
                family, f"the space allows {shown}, which is impossible ({reason}); add a constraint or narrow it"
            )
            return

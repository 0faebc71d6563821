"""One contract every sampler passes, on a cheap synthetic objective (no training); and the pruners by name.

The space mixes the family choice with each family's own sub-space, a condition in each, an int with a
step, a log-scaled float shared by both families with a range of its own in each, categoricals and a
constraint, so that a sampler that proposes a setting of the wrong family, ignores a condition or a
constraint, or leaves a bound shows up here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from ajuste.search.samplers import PRUNERS, SAMPLERS, SpaceGridSampler, make_pruner, make_sampler
from ajuste.search.space import SearchSpace, parse_space

pytestmark = pytest.mark.usefixtures("quiet_optuna")

SPACE = {
    "model.family": ["bag", "gpt"],
    "train.weight_decay": {"low": 1e-5, "high": 1e-1, "log": True},
    "bag": {
        "model.embed_dim": {"low": 16, "high": 48, "step": 16},
        "model.ngrams": [1, 2],
        "model.buckets": {"choices": [1000, 5000], "when": "model.ngrams > 1"},
    },
    "gpt": {
        "train.weight_decay": {"low": 1e-4, "high": 1e-2, "log": True},  # one study parameter, two ranges
        "model.num_heads": [2, 4],
        "model.emb_dim": {"low": 12, "high": 30, "step": 6},
        "model.activation": ["gelu", "relu"],
        "model.dropout": {"low": 0.0, "high": 0.3, "when": "model.activation == 'relu'", "grid": [0.0, 0.2]},
        "constraints": ["model.emb_dim % model.num_heads == 0"],
    },
}
#: One family only: its parameters are shared by every trial, so the samplers that model only what every
#: trial shares (cmaes, genetic, gp) model them all instead of only the family and the weight decay.
GPT_ONLY = {"model.family": "gpt", "gpt": SPACE["gpt"]}
#: The settings of each family, and when a conditional one exists.
FAMILY_KEYS = {
    "bag": {"train.weight_decay", "model.embed_dim", "model.ngrams", "model.buckets"},
    "gpt": {"train.weight_decay", "model.num_heads", "model.emb_dim", "model.activation", "model.dropout"},
}
CONDITIONS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "model.buckets": lambda values: values["model.ngrams"] > 1,
    "model.dropout": lambda values: values["model.activation"] == "relu",
}
# bag: 3 embed_dim x (1 + 2 buckets) x 5 weight decays; gpt: 6 (emb_dim, num_heads) x (1 + 2 dropouts) x 5.
GRID_SIZE = 3 * 3 * 5 + 6 * 3 * 5
STARTUP = 3
TRIALS = 8


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The surrogates (gp, nn) multiply matrices of a few dozen rows: threads gain nothing there, and on a
    # busy machine OpenMP's waiting threads make each product up to a hundred times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return parse_space(SPACE)


@pytest.fixture(scope="module", params=["families", "gpt-only"])
def either_space(request: pytest.FixtureRequest) -> SearchSpace:
    return parse_space(SPACE if request.param == "families" else GPT_ONLY)


@pytest.fixture(params=SAMPLERS)
def sampler_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def score(values: dict[str, Any]) -> float:
    """A smooth score with its best inside the space: weight decay near 1e-3, wide models, some dropout."""
    value = -abs(math.log10(values.get("train.weight_decay", 1e-3)) + 3)
    value += values.get("model.embed_dim", 0) / 48 + values.get("model.emb_dim", 0) / 30
    return value + values.get("model.dropout", 0.0) + (0.1 if values.get("model.ngrams") == 2 else 0.0)


def objective(space: SearchSpace, *, failing: bool = False) -> Callable[[optuna.Trial], float]:
    """The synthetic objective; ``failing`` makes some trials fail and some get pruned after one step."""

    def run(trial: optuna.Trial) -> float:
        values = space.suggest(trial)
        trial.set_user_attr("settings", values)
        value = score(values)
        if failing and trial.number % 4 == 1:
            raise ValueError("boom")
        if failing and trial.number % 4 == 2:
            trial.report(value - 1.0, 1)
            raise optuna.TrialPruned()
        return value

    return run


def new_study(name: str, space: SearchSpace, *, seed: int = 0, storage: str | None = None) -> optuna.Study:
    return optuna.create_study(
        storage=storage,
        study_name="contract" if storage else None,
        direction="maximize",
        sampler=make_sampler(name, space, seed=seed, startup_trials=STARTUP),
        load_if_exists=storage is not None,
    )


def check_point(space: SearchSpace, trial: FrozenTrial) -> None:
    """The settings of ``trial`` respect the space: family, conditions, bounds, steps, choices, constraint."""
    values = trial.user_attrs["settings"]
    family = values["model.family"]
    assert family in ("bag", "gpt")
    present = {key for key in FAMILY_KEYS[family] if key not in CONDITIONS or CONDITIONS[key](values)}
    assert set(values) - {"model.family"} == present, f"trial {trial.number}: {values}"
    assert set(trial.params) <= {"model.family"} | {item.name for item in space.scopes[family].items}
    assert space.decode(trial.params) == values
    low, high = (1e-5, 1e-1) if family == "bag" else (1e-4, 1e-2)
    assert low <= values["train.weight_decay"] <= high
    if family == "bag":
        assert values["model.embed_dim"] in (16, 32, 48)
        assert values["model.ngrams"] in (1, 2)
        assert values.get("model.buckets", 1000) in (1000, 5000)
    else:
        assert values["model.num_heads"] in (2, 4)
        assert values["model.emb_dim"] in (12, 18, 24, 30)
        assert values["model.emb_dim"] % values["model.num_heads"] == 0
        assert values["model.activation"] in ("gelu", "relu")
        assert 0.0 <= values.get("model.dropout", 0.0) <= 0.3


def history(study: optuna.Study) -> list[tuple[str, str, float | None]]:
    return [(t.state.name, json.dumps(t.params, sort_keys=True), t.value) for t in study.get_trials(deepcopy=False)]


# -- the contract ------------------------------------------------------------------------------------


def test_every_point_respects_the_space(sampler_name: str, either_space: SearchSpace) -> None:
    study = new_study(sampler_name, either_space)
    study.optimize(objective(either_space), n_trials=TRIALS)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == TRIALS
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        check_point(either_space, trial)


def test_the_same_seed_repeats_the_same_trials(sampler_name: str, either_space: SearchSpace) -> None:
    space = either_space
    first = new_study(sampler_name, space, seed=7)
    first.optimize(objective(space), n_trials=TRIALS)
    second = new_study(sampler_name, space, seed=7)
    second.optimize(objective(space), n_trials=TRIALS)
    assert history(first) == history(second)


def test_a_resumed_study_goes_on_without_losing_trials(sampler_name: str, space: SearchSpace, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = new_study(sampler_name, space, seed=5, storage=storage)
    first.optimize(objective(space), n_trials=STARTUP)
    before = history(first)
    # A new process: a new sampler object built the way `ajuste tune` does, seeded by the trials so far;
    # past the startup trials, so that a model-based sampler now models the stored ones.
    resumed = new_study(sampler_name, space, seed=5 + len(before), storage=storage)
    resumed.optimize(objective(space), n_trials=3)
    after = history(resumed)
    assert len(after) == STARTUP + 3
    assert after[:STARTUP] == before
    assert all(state == "COMPLETE" for state, _, _ in after)
    for trial in resumed.get_trials(deepcopy=False):
        check_point(space, trial)
    if sampler_name == "grid":
        assert len({params for _, params, _ in after}) == len(after), "a resumed grid does not repeat a point"


def test_failed_and_pruned_trials_do_not_break_the_sampler(sampler_name: str, either_space: SearchSpace) -> None:
    space = either_space
    study = new_study(sampler_name, space, seed=3)
    study.optimize(objective(space, failing=True), n_trials=12, catch=(ValueError,))
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert len(trials) == 12
    assert states.count(TrialState.FAIL) == 3 and states.count(TrialState.PRUNED) == 3
    assert states.count(TrialState.COMPLETE) == 6
    for trial in trials:
        check_point(space, trial)


# -- grid --------------------------------------------------------------------------------------------


def test_grid_tries_every_point_once_and_stops(space: SearchSpace) -> None:
    sampler = make_sampler("grid", space, seed=0)
    assert isinstance(sampler, SpaceGridSampler) and sampler.size == GRID_SIZE
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective(space), n_trials=GRID_SIZE + 10)  # more than the grid: the study must stop itself
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == GRID_SIZE
    tried = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(tried)) == GRID_SIZE
    assert set(tried) == {json.dumps(point, sort_keys=True) for point in space.grid()}
    assert sampler.remaining(study) == 0
    for trial in trials:
        check_point(space, trial)


def test_a_resumed_grid_finishes_the_points_left(tmp_path: Path) -> None:
    small = parse_space({"model.embed_dim": [16, 32, 48], "model.ngrams": [1, 2]}, families=["bag"])
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = new_study("grid", small, storage=storage)
    first.optimize(objective(small, failing=True), n_trials=4, catch=(ValueError,))
    resumed = new_study("grid", small, seed=1, storage=storage)
    sampler = resumed.sampler
    assert isinstance(sampler, SpaceGridSampler) and sampler.remaining(resumed) == 2
    resumed.optimize(objective(small), n_trials=10)
    tried = [json.dumps(t.params, sort_keys=True) for t in resumed.get_trials(deepcopy=False)]
    assert len(tried) == len(set(tried)) == 6


def test_an_unknown_sampler_is_refused(space: SearchSpace) -> None:
    with pytest.raises(ValueError, match="unknown sampler 'foo'"):
        make_sampler("foo", space, seed=0)


# -- pruners -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRUNERS)
def test_each_pruner_is_made_and_prunes_hopeless_trials(name: str) -> None:
    pruner = make_pruner(name, max_epochs=6)
    assert isinstance(pruner, optuna.pruners.BasePruner)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)

    def run(trial: optuna.Trial) -> float:
        good = trial.number % 2 == 0
        for epoch in range(1, 7):
            value = epoch / 6 if good else 0.01 * epoch
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(run, n_trials=12)
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED]
    if name == "none":
        assert not pruned
    else:
        hopeless = [t for t in pruned if t.number % 2]
        assert hopeless, f"{name} pruned no hopeless trial: {[t.number for t in pruned]}"


def test_an_unknown_pruner_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pruner 'foo'"):
        make_pruner("foo", max_epochs=3)

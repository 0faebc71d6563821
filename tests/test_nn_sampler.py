"""NeuralSampler: values inside their distributions, seeded, better than random, robust to real studies."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from ajuste.errors import ConfigError
from ajuste.search.nn_sampler import (
    NeuralSampler,
    _expected_improvement,
    _features,
    _SpaceEncoder,
    _standardised_scores,
)

# A light configuration keeps the file fast; the defaults are for real studies, where a trial costs minutes.
FAST: dict[str, Any] = {"n_startup_trials": 5, "n_models": 3, "n_candidates": 300, "hidden": 16, "epochs": 60}
# The configuration of the optimisation test: light, but with the surrogate's full structure.
LIGHT: dict[str, Any] = {"n_candidates": 500, "hidden": 32, "epochs": 100}


@pytest.fixture(autouse=True)
def _quiet_optuna() -> Any:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def contains(dist: BaseDistribution, value: Any) -> bool:
    return bool(dist._contains(dist.to_internal_repr(value)))


def mixed_objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.05)
    width = trial.suggest_int("width", 16, 256, step=16)
    layers = trial.suggest_int("layers", 1, 64, log=True)
    act = trial.suggest_categorical("act", ["relu", "gelu", "tanh"])
    fixed = trial.suggest_float("fixed", 2.0, 2.0)
    only = trial.suggest_categorical("only", ["adamw"])
    assert fixed == 2.0 and only == "adamw"
    bonus = {"relu": 0.0, "gelu": 1.0, "tanh": -1.0}[act]
    return -(x**2) - (math.log10(lr) + 3) ** 2 - (dropout - 0.2) ** 2 - ((width - 100) / 100) ** 2 + layers / 64 + bonus


# -- values ---------------------------------------------------------------------------------------


def test_parameters_stay_inside_their_distributions() -> None:
    sampler = NeuralSampler(seed=0, **FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(mixed_objective, n_trials=40)

    assert len(study.trials) == 40
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        for name, value in trial.params.items():
            assert contains(trial.distributions[name], value), (name, value)
        assert isinstance(trial.params["width"], int) and isinstance(trial.params["layers"], int)

    # Optuna silently replaces a relative value outside its distribution by a random one, so check the
    # relative proposals themselves. Single-valued parameters are left to Optuna.
    last = study.trials[-1]
    space = sampler.infer_relative_search_space(study, last)
    assert set(space) == {"x", "lr", "dropout", "width", "layers", "act"}
    for _ in range(10):
        proposal = sampler.sample_relative(study, last, space)
        assert set(proposal) == set(space)
        for name, value in proposal.items():
            assert contains(space[name], value), (name, value)


def test_startup_trials_are_those_of_the_random_sampler() -> None:
    neural = optuna.create_study(sampler=NeuralSampler(seed=3, **FAST))
    neural.optimize(mixed_objective, n_trials=5)
    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    plain.optimize(mixed_objective, n_trials=5)
    assert [t.params for t in neural.trials] == [t.params for t in plain.trials]


# -- seeds ----------------------------------------------------------------------------------------


def params_of_run(seed: int) -> list[dict[str, Any]]:
    study = optuna.create_study(direction="maximize", sampler=NeuralSampler(seed=seed, **FAST))
    study.optimize(mixed_objective, n_trials=14)
    return [trial.params for trial in study.trials]


def test_same_seed_same_trials_different_seed_other_trials() -> None:
    first = params_of_run(7)
    assert first == params_of_run(7)
    other = params_of_run(8)
    assert first[:5] != other[:5]  # the random startup trials
    assert first[5:] != other[5:]  # the trials proposed by the surrogate


def test_sampler_leaves_the_global_random_streams_alone() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    threads = torch.get_num_threads()

    study = optuna.create_study(sampler=NeuralSampler(seed=0, **FAST))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_int("n", 0, 3), n_trials=8)

    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1])
    assert states[2] == random.getstate()
    assert torch.get_num_threads() == threads


# -- it optimises ---------------------------------------------------------------------------------


def bowl(trial: optuna.Trial) -> float:
    """A 5-parameter bowl, minimum 0 at x=1.5, y=-2, lr=10^-2.5, n=20, c="b"."""
    x = trial.suggest_float("x", -5.0, 5.0)
    y = trial.suggest_float("y", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    n = trial.suggest_int("n", 1, 32)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    category = {"a": 5.0, "b": 0.0, "c": 10.0}[c]
    return (x - 1.5) ** 2 + (y + 2.0) ** 2 + (math.log10(lr) + 2.5) ** 2 + ((n - 20) / 8) ** 2 + category


def best_of(sampler: optuna.samplers.BaseSampler) -> float:
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(bowl, n_trials=40)
    return study.best_value


def test_it_finds_better_settings_than_random_search() -> None:
    seeds = range(5)
    neural = float(np.median([best_of(NeuralSampler(seed=seed, **LIGHT)) for seed in seeds]))
    plain = float(np.median([best_of(optuna.samplers.RandomSampler(seed=seed)) for seed in seeds]))
    # Observed: about 0.3 against 3.1. With expected improvement replaced by a random choice among the
    # same candidates the median is about 1.0, so this margin fails if the surrogate stops guiding.
    assert neural < 0.25 * plain, (neural, plain)


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_both_directions_move_towards_the_better_values(direction: str) -> None:
    sign = 1.0 if direction == "minimize" else -1.0

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        y = trial.suggest_float("y", -1.0, 1.0)
        return sign * ((x - 0.5) ** 2 + (y + 0.3) ** 2)

    study = optuna.create_study(direction=direction, sampler=NeuralSampler(seed=0, **FAST))
    study.optimize(objective, n_trials=20)
    distances = [sign * trial.value for trial in study.trials if trial.value is not None]
    # The guided trials land closer to the optimum than the random startup trials; a sampler that mixed up
    # the direction would move away from it.
    assert np.median(distances[5:]) < 0.5 * np.median(distances[:5])
    assert min(distances[5:]) < min(distances[:5])


def test_expected_improvement_prefers_higher_mean_and_then_more_spread() -> None:
    mean = np.array([0.0, 0.5, 0.5, -3.0])
    std = np.array([1.0, 1.0, 2.0, 0.0])
    improvement = _expected_improvement(mean, std, best=0.0, xi=0.0)
    assert improvement[0] == pytest.approx(1.0 / math.sqrt(2.0 * math.pi))
    assert improvement[0] < improvement[1] < improvement[2]
    assert improvement[3] == pytest.approx(0.0)


def test_a_few_failed_trials_do_not_flatten_the_differences_among_the_good_ones() -> None:
    # Validation losses as a search meets them: a cluster of good settings and a few that failed badly.
    losses = np.array([0.002, 0.004, 0.015, 0.017, 0.02, 0.05, 0.3, 0.35, 0.6])
    scores = _standardised_scores(losses, StudyDirection.MINIMIZE)
    assert scores.mean() == pytest.approx(0.0, abs=1e-9) and scores.std() == pytest.approx(1.0)
    assert list(np.argsort(-scores)) == list(np.argsort(losses))  # the order is kept
    # The better half keeps its shape (an affine image of the losses) ...
    good = losses <= np.median(losses)
    slope = np.diff(scores[good]) / np.diff(losses[good])
    assert slope == pytest.approx(np.full_like(slope, slope[0]))
    # ... and the 0.6 no longer sets the scale: merely standardised, 0.002 and 0.015 would be 0.06 apart.
    assert scores[0] - scores[2] > 1.0
    # Maximising the negated losses is the same problem.
    assert _standardised_scores(-losses, StudyDirection.MAXIMIZE) == pytest.approx(scores)
    assert not np.any(_standardised_scores(np.full(4, 0.3), StudyDirection.MINIMIZE))


# -- real studies ---------------------------------------------------------------------------------


def messy_objective(trial: optuna.Trial) -> float:
    """A conditional parameter, failures, pruned trials and an infinite value."""
    kind = trial.suggest_categorical("kind", ["linear", "tree"])
    x = trial.suggest_float("x", 0.0, 1.0)
    if kind == "tree":
        x += trial.suggest_int("depth", 1, 8) / 8
    if trial.number % 5 == 3:
        raise ValueError("diverged")
    if trial.number % 7 == 4:
        trial.report(x, step=0)
        raise optuna.TrialPruned
    if trial.number == 6:
        return math.inf
    return x


def test_conditional_parameters_failures_and_pruned_trials_do_not_break_it() -> None:
    study = optuna.create_study(sampler=NeuralSampler(seed=0, **FAST))
    study.optimize(messy_objective, n_trials=30, catch=(ValueError,))

    states = [trial.state for trial in study.trials]
    assert len(states) == 30
    assert {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED} <= set(states)
    for trial in study.trials:
        for name, value in trial.params.items():
            assert contains(trial.distributions[name], value)
    assert any("depth" in trial.params for trial in study.trials[10:])
    assert any("depth" not in trial.params for trial in study.trials[10:])


def test_a_study_resumed_from_sqlite_goes_on(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = optuna.create_study(
        study_name="resume", storage=storage, direction="maximize", sampler=NeuralSampler(seed=0, **FAST)
    )
    first.optimize(mixed_objective, n_trials=8)

    resumed = optuna.load_study(study_name="resume", storage=storage, sampler=NeuralSampler(seed=0, **FAST))
    resumed.optimize(mixed_objective, n_trials=4)

    trials = optuna.load_study(study_name="resume", storage=storage).trials
    assert len(trials) == 12
    assert all(trial.state == TrialState.COMPLETE for trial in trials)
    for trial in trials[8:]:
        for name, value in trial.params.items():
            assert contains(trial.distributions[name], value)


def test_it_works_when_the_objective_runs_without_gradients() -> None:
    study = optuna.create_study(sampler=NeuralSampler(seed=0, **FAST))
    with torch.no_grad():
        study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2, n_trials=7)
    assert len(study.trials) == 7


# -- bad settings ---------------------------------------------------------------------------------


def test_bad_settings_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        NeuralSampler(n_models=1, epochs=0, xi=-1.0)
    message = str(caught.value)
    assert "n_models must be an int >= 2. Got 1 instead." in message
    assert "epochs must be an int >= 1. Got 0 instead." in message
    assert "xi must be a finite float >= 0. Got -1.0 instead." in message


def test_a_multi_objective_study_is_refused() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=NeuralSampler(seed=0))
    with pytest.raises(ConfigError, match="one objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)


def test_the_encoding_covers_every_kind_of_distribution() -> None:
    """Single-valued distributions are left to Optuna by the sampler, but the encoder accepts them too."""
    space: dict[str, BaseDistribution] = {
        "f": FloatDistribution(0.5, 0.5),
        "i": IntDistribution(3, 3),
        "c": CategoricalDistribution(["only"]),
        "s": FloatDistribution(0.0, 1.0, step=0.25),
        "l": IntDistribution(1, 1000, log=True),
    }
    encoder = _SpaceEncoder(space)
    params = {"f": 0.5, "i": 3, "c": "only", "s": 0.75, "l": 10}
    assert encoder.decode(encoder.encode(params)) == params
    for row in encoder.snap(encoder.uniform(200, np.random.default_rng(0))):
        decoded = encoder.decode(row)
        assert all(contains(space[name], value) for name, value in decoded.items())


def test_a_parameter_some_points_lack_gets_an_absent_column() -> None:
    """A trial of another family teaches the surrogate what it set; the absent column tells it what it did not."""
    space: dict[str, BaseDistribution] = {
        "family": CategoricalDistribution(["a", "b"]),
        "x": FloatDistribution(0.0, 2.0),
        "y": IntDistribution(1, 3),
    }
    encoder = _SpaceEncoder(space)
    rows = _features(encoder, [{"family": "a", "x": 1.0, "y": 3}, {"family": "b", "x": 2.0}])
    # family one-hot, x, y, then "y is absent"
    assert rows.tolist() == [[1.0, 0.0, 0.5, pytest.approx(5 / 6), 0.0], [0.0, 1.0, 1.0, 0.0, 1.0]]
    assert _features(encoder, [{"family": "a", "x": 1.0, "y": 3}]).shape == (1, encoder.dim), "none absent: no column"


def test_parallel_workers_reseed_and_finish() -> None:
    study = optuna.create_study(sampler=NeuralSampler(seed=0, **FAST))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2, n_trials=12, n_jobs=2)
    assert len(study.trials) == 12
    assert all(trial.state == TrialState.COMPLETE for trial in study.trials)

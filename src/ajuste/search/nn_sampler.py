"""``nn``: Bayesian optimisation whose surrogate is an ensemble of small neural networks.

After ``n_startup_trials`` random trials, every new trial is chosen like this:

1. Completed trials are encoded into ``[0, 1]`` columns: numbers normalised (on a log scale where asked),
   categories one-hot. Given the structure of a conditional space (:class:`ConditionalSpace`: ajuste's
   search space, with a model family and each family's settings), every parameter of the space is
   encoded, with an "absent" column for a parameter a trial did not set; without it, the parameters every
   completed trial shares (Optuna's intersection search space).
2. ``n_models`` small MLPs are trained on the completed trials' scores (standardised, the worse half
   rank-warped so that a few failures do not set the scale), each from its own initialisation and
   with its own Bayesian-bootstrap weights on the trials. Their disagreement is the surrogate's uncertainty.
3. ``n_candidates`` random settings (half uniform, half near the best trials so far) are scored by
   expected improvement over the best value seen; the best candidate is decoded and tried next. A
   candidate of a conditional space is scored by the parameters a trial would really set with it.

Parameters outside the modelled space are drawn by a seeded :class:`optuna.samplers.RandomSampler`.
Everything runs on the CPU, with local random streams: the training code's random numbers are untouched.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.search_space import intersection_search_space
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ajuste.errors import ConfigError

__all__ = ["ConditionalSpace", "MultiObjectiveError", "NeuralSampler"]

_NumericDistribution = FloatDistribution | IntDistribution

# The values below were chosen on synthetic 5-parameter problems (a quadratic bowl and Branin, each with
# a log-scaled float, an int and a categorical), 40 trials, against RandomSampler and TPESampler.

# Share of the candidates drawn near the best trials (the rest are uniform over the space).
_LOCAL_FRACTION = 0.5
# Candidates near the best trials start from this many of them.
_N_LOCAL_CENTRES = 5
# A local candidate changes each parameter of its centre with this probability (at least one). Moving a
# few parameters at a time lets the surrogate tell which ones matter instead of extrapolating all at once.
_LOCAL_CHANGE_PROB = 0.5
# Local steps on numbers have a standard deviation (in the unit cube) drawn log-uniformly from this range,
# so that some candidates refine a good trial and some look a little further away.
_LOCAL_SCALE_RANGE = (0.01, 0.2)
# AdamW on standardised targets: a high-ish rate because training restarts from scratch for every trial
# and has only `epochs` full-batch steps to fit.
_LEARNING_RATE = 3e-2
_WEIGHT_DECAY = 1e-2
_MIN_STD = 1e-9
# Every tensor is made on the CPU explicitly: a study may have set a GPU as torch's default device, and
# a `with torch.device(...)` block would slow each of the many tiny operations down about threefold.
_CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------------------
# Encoding: parameter values <-> rows of numbers in [0, 1]
# --------------------------------------------------------------------------------------------------


def _numeric_bounds(dist: _NumericDistribution) -> tuple[float, float, bool]:
    """Lower and upper end of the interval mapped onto [0, 1], and whether it is on a log scale.

    A discrete range is widened by half a step on each side, so that uniform candidates reach the end
    values as often as the inner ones once rounded to the grid.
    """
    step = dist.step
    half = 0.0 if step is None else step / 2.0
    if dist.log:
        # Optuna allows log=True only with step 1 (int) or no step (float), and low > 0.
        return math.log(dist.low - half), math.log(dist.high + half), True
    return dist.low - half, dist.high + half, False


def _values_to_unit(dist: _NumericDistribution, values: np.ndarray) -> np.ndarray:
    if dist.low == dist.high:
        return np.full_like(values, 0.5, dtype=np.float64)
    low, high, log = _numeric_bounds(dist)
    scaled = np.log(values) if log else values
    return (scaled - low) / (high - low)


def _unit_to_values(dist: _NumericDistribution, unit: np.ndarray) -> np.ndarray:
    """The values that ``unit`` stands for, rounded to the step grid and clipped to the distribution."""
    if dist.low == dist.high:
        return np.full_like(unit, dist.low, dtype=np.float64)
    low, high, log = _numeric_bounds(dist)
    scaled = low + np.clip(unit, 0.0, 1.0) * (high - low)
    values = np.exp(scaled) if log else scaled
    if dist.step is not None:
        values = dist.low + np.round((values - dist.low) / dist.step) * dist.step
    return np.clip(values, dist.low, dist.high)


class _SpaceEncoder:
    """Maps settings of one search space to rows of numbers in [0, 1] and back.

    Each numeric parameter takes one column; a categorical parameter with ``k`` choices takes ``k``
    one-hot columns.
    """

    def __init__(self, search_space: Mapping[str, BaseDistribution]) -> None:
        self.search_space = dict(search_space)
        self.columns: dict[str, slice] = {}
        start = 0
        for name, dist in self.search_space.items():
            width = len(dist.choices) if isinstance(dist, CategoricalDistribution) else 1
            self.columns[name] = slice(start, start + width)
            start += width
        self.dim = start

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        return self.encode_rows([params], np.zeros((1, self.dim)))[0]

    def encode_rows(self, points: Sequence[Mapping[str, Any]], fill: np.ndarray) -> np.ndarray:
        """One row per point; the columns of a parameter that a point lacks keep their values in ``fill``."""
        rows = fill.copy()
        for name, dist in self.search_space.items():
            columns = self.columns[name]
            has = np.array([name in point for point in points], dtype=bool)
            values = [point[name] for point in points if name in point]
            if not values:
                continue
            if isinstance(dist, CategoricalDistribution):
                block = np.zeros((len(values), len(dist.choices)))
                block[np.arange(len(values)), [int(dist.to_internal_repr(v)) for v in values]] = 1.0
            else:
                block = _values_to_unit(_numeric(dist), np.array(values, dtype=np.float64))[:, None]
            rows[has, columns] = block
        return rows

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        return self.decode_rows(row[None, :])[0]

    def decode_rows(self, rows: np.ndarray) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = [{} for _ in rows]
        for name, dist in self.search_space.items():
            block = rows[:, self.columns[name]]
            if isinstance(dist, CategoricalDistribution):
                values: list[Any] = [dist.choices[int(i)] for i in np.argmax(block, axis=1)]
            else:
                numbers = _unit_to_values(_numeric(dist), block[:, 0])
                values = numbers.tolist()
                if isinstance(dist, IntDistribution):
                    values = [round(v) for v in values]
            for point, value in zip(points, values):
                point[name] = value
        return points

    def snap(self, rows: np.ndarray) -> np.ndarray:
        """Moves each row onto the setting it decodes to, so that the surrogate scores real settings."""
        snapped = rows.copy()
        for name, dist in self.search_space.items():
            columns = self.columns[name]
            if isinstance(dist, CategoricalDistribution):
                winners = np.argmax(rows[:, columns], axis=1)
                snapped[:, columns] = np.eye(len(dist.choices))[winners]
            else:
                numeric = _numeric(dist)
                snapped[:, columns] = _values_to_unit(numeric, _unit_to_values(numeric, rows[:, columns]))
        return snapped

    def uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        rows = rng.random((n, self.dim))
        for name, dist in self.search_space.items():
            if isinstance(dist, CategoricalDistribution):
                columns = self.columns[name]
                rows[:, columns] = np.eye(len(dist.choices))[rng.integers(len(dist.choices), size=n)]
        return rows

    def perturb(self, centres: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows near ``centres``, each changing a random subset of the parameters of its centre.

        A changed number takes a Gaussian step (clipped to the space); a changed category is drawn anew.
        """
        base = centres[rng.integers(len(centres), size=n)]
        log_low, log_high = np.log(_LOCAL_SCALE_RANGE)
        scales = np.exp(rng.uniform(log_low, log_high, size=(n, 1)))
        stepped = np.clip(base + rng.normal(size=base.shape) * scales, 0.0, 1.0)
        redrawn = self.uniform(n, rng)
        n_params = len(self.search_space)
        change = rng.random((n, n_params)) < _LOCAL_CHANGE_PROB
        unchanged = ~change.any(axis=1)
        change[unchanged, rng.integers(n_params, size=int(unchanged.sum()))] = True
        rows = base.copy()
        for index, (name, dist) in enumerate(self.search_space.items()):
            columns = self.columns[name]
            source = redrawn if isinstance(dist, CategoricalDistribution) else stepped
            rows[change[:, index], columns] = source[change[:, index], columns]
        return rows


def _numeric(dist: BaseDistribution) -> _NumericDistribution:
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return dist
    raise ConfigError(
        f"NeuralSampler cannot encode a {type(dist).__name__}",
        expected="FloatDistribution, IntDistribution or CategoricalDistribution",
        found=repr(dist),
        fix="Suggest parameters with trial.suggest_float, suggest_int or suggest_categorical.",
    )


def _features(encoder: _SpaceEncoder, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The surrogate's inputs: each point's row (zeros for a parameter it lacks) and, for every parameter
    that some point lacks, one more column that is 1 where the parameter is absent.

    With these "absent" columns a trial of another model family, or one whose condition left a setting
    out, still teaches the surrogate everything it did set, and a candidate is scored as what it is.
    """
    rows = encoder.encode_rows(points, np.zeros((len(points), encoder.dim)))
    optional = [name for name in encoder.search_space if not all(name in point for point in points)]
    absent = np.array([[name not in point for name in optional] for point in points], dtype=np.float64)
    return np.concatenate([rows, absent.reshape(len(points), len(optional))], axis=1)


# --------------------------------------------------------------------------------------------------
# Surrogate: an ensemble of MLPs trained together as batched matrix products
# --------------------------------------------------------------------------------------------------


class _MLPEnsemble:
    """``n_models`` MLPs ``d -> hidden -> hidden -> 1`` (SiLU) whose weights are stacked on a first axis.

    Stacking lets one ``baddbmm`` per layer train or run every member at once, which keeps a suggestion
    cheap. The weights are drawn from ``generator`` alone (``torch.nn.Linear`` would draw them from the
    global random stream and so change the user's training runs).
    """

    def __init__(self, n_models: int, dim: int, hidden: int, generator: torch.Generator) -> None:
        sizes = [dim, hidden, hidden, 1]
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            # The uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) initialisation of torch.nn.Linear.
            bound = 1.0 / math.sqrt(fan_in)
            weight = (torch.rand(n_models, fan_in, fan_out, generator=generator, device=_CPU) * 2 - 1) * bound
            bias = (torch.rand(n_models, 1, fan_out, generator=generator, device=_CPU) * 2 - 1) * bound
            self.weights.append(weight.requires_grad_())
            self.biases.append(bias.requires_grad_())

    def parameters(self) -> list[torch.Tensor]:
        return self.weights + self.biases

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` of shape (n_models, n, dim) in [0, 1] -> predictions of shape (n_models, n)."""
        hidden = inputs * 2.0 - 1.0
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = torch.baddbmm(bias, hidden, weight)
            if index < last:
                hidden = torch.nn.functional.silu(hidden)
        return hidden.squeeze(-1)


def _fit_ensemble(
    inputs: np.ndarray, targets: np.ndarray, *, n_models: int, hidden: int, epochs: int, generator: torch.Generator
) -> _MLPEnsemble:
    """Trains each member on all (inputs, standardised targets), full batch, with its own random weights.

    The per-member weights are a Bayesian bootstrap (exponential weights of mean 1): like a classic
    bootstrap resample they make the members disagree where the data do not pin the function down,
    but no member loses the ~37 % of trials a resample leaves out, which matters with a few dozen trials.
    """
    x = torch.as_tensor(inputs, dtype=torch.float32, device=_CPU).expand(n_models, -1, -1)
    y = torch.as_tensor(targets, dtype=torch.float32, device=_CPU)
    ensemble = _MLPEnsemble(n_models, x.shape[-1], hidden, generator)
    weights = -torch.log1p(-torch.rand(n_models, len(y), generator=generator, device=_CPU))
    weights = weights / weights.mean(dim=1, keepdim=True)
    optimizer = torch.optim.AdamW(ensemble.parameters(), lr=_LEARNING_RATE, weight_decay=_WEIGHT_DECAY)
    # The caller may be inside torch.no_grad() or inference_mode (an objective that evaluates a model).
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad(set_to_none=True)
            loss = (weights * (ensemble(x) - y) ** 2).mean()
            loss.backward()
            optimizer.step()
    return ensemble


def _expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float) -> np.ndarray:
    """Expected improvement of a maximised Gaussian ``N(mean, std²)`` over ``best + xi``."""
    std = np.maximum(std, _MIN_STD)
    improvement = mean - best - xi
    z = improvement / std
    cdf = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    return improvement * cdf + std * pdf


def _erf(values: np.ndarray) -> np.ndarray:
    return torch.special.erf(torch.as_tensor(values, dtype=torch.float64, device=_CPU)).numpy()


def _standardised_scores(values: np.ndarray, direction: StudyDirection) -> np.ndarray:
    """Scores to maximise, the worse half rank-warped, then standardised to mean 0 and standard deviation 1.

    Infinite values are clipped to the finite range. Objectives such as a loss are skewed: a few failed
    settings score far worse than the rest (a validation loss of 0.6 beside a cluster under 0.02). Merely
    standardised, those few set the scale, the differences among the good trials shrink to nothing, and the
    ensemble's disagreement about the poor region outweighs them in expected improvement. So, as in
    Google Vizier's output warping ("half-rank" warping, Song et al., 2022), the scores at or above the median
    are kept as they are, and each score below it is replaced by the value that its rank would have in a
    normal distribution centred on the median with the spread of the better half. The order of the trials
    is kept, and so is the shape of the objective where the search looks for the best.
    """
    scores = values if direction == StudyDirection.MAXIMIZE else -values
    finite = scores[np.isfinite(scores)]
    if len(finite) == 0:
        return np.zeros_like(scores)
    scores = np.clip(scores, finite.min(), finite.max())
    median = float(np.median(scores))
    spread = math.sqrt(float(np.mean((scores[scores >= median] - median) ** 2)))
    if spread > 0:
        ordered = np.sort(scores)
        # Average rank from 1 (ties share one), as a quantile strictly inside (0, 1).
        rank = (np.searchsorted(ordered, scores, "left") + np.searchsorted(ordered, scores, "right") + 1) / 2
        quantile = torch.as_tensor((rank - 0.5) / len(scores), dtype=torch.float64, device=_CPU)
        warped = median + spread * torch.special.ndtri(quantile).numpy()
        scores = np.where(scores < median, np.minimum(warped, median), scores)
    std = scores.std()
    return (scores - scores.mean()) / (std if std > 0 else 1.0)


# --------------------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------------------


class ConditionalSpace(Protocol):
    """A search space whose parameters depend on the values of others (a model family and its own
    settings; a setting that exists under a condition): what the sampler needs to model all of it."""

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter a trial may suggest, with its distribution."""
        ...

    def active(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters a trial suggests when ``params`` (a value for every parameter) are offered to it."""
        ...


def _present(trial: FrozenTrial, search_space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """The parameters of ``trial`` in ``search_space``, with the same distribution there."""
    return {
        name: value
        for name, value in trial.params.items()
        if name in search_space and trial.distributions[name] == search_space[name]
    }


def _only_value(dist: BaseDistribution) -> Any:
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else _numeric(dist).low


def _int_problem(name: str, value: object, minimum: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"{name} must be an int >= {minimum}. Got {value!r} instead."
    return None


class NeuralSampler(optuna.samplers.BaseSampler):
    """Bayesian optimisation with an ensemble of small neural networks as the surrogate.

    The first ``n_startup_trials`` trials are drawn at random. After that, the parameters are proposed
    together: an ensemble of MLPs, trained on the completed trials, predicts the mean and spread of the
    score of ``n_candidates`` random settings, and the one with the largest expected improvement over the
    best score so far is tried next. Given ``space``, every parameter of it is modelled, each trial by the
    parameters it set; without it, the parameters shared by all completed trials, and those that only some
    trials have (conditional parameters) are drawn at random. Failed and pruned trials are ignored: a
    pruned trial's value is an intermediate score, not comparable with the final ones.

    The same ``seed`` on the same objective gives the same trials (on the same machine and library
    versions). The sampler never touches the global random streams of ``torch``, ``numpy`` or ``random``;
    while it trains its networks it runs torch with one intra-op thread and then restores the previous
    number (see :func:`_one_intra_op_thread`). A suggestion with 50 finished trials takes about 0.2 s with
    the defaults on one CPU core.

    Example::

        study = optuna.create_study(direction="maximize", sampler=NeuralSampler(seed=0))
        study.optimize(objective, n_trials=40)

    Args:
        seed: Seed of the sampler's own random streams (candidates, network weights, bootstrap and the
            random sampler for the startup trials and conditional parameters). ``None`` draws one from the OS.
        n_startup_trials: Completed trials drawn at random before the surrogate takes over.
        n_models: Networks in the ensemble; their disagreement is the surrogate's uncertainty.
        n_candidates: Random settings scored by expected improvement per trial (half uniform over the
            space, half near the five best trials so far).
        hidden: Units in each of the two hidden layers of every network.
        epochs: Full-batch AdamW steps that train the networks for each new trial.
        xi: Exploration margin of expected improvement, in standard deviations of the observed scores:
            larger values favour settings the ensemble is unsure about over ones predicted a little better.
        space: The structure of a conditional search space, to model all of its parameters (ajuste's
            :class:`~ajuste.search.space.SearchSpace`); ``None`` models the parameters every trial shares.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_models: int = 5,
        n_candidates: int = 2000,
        hidden: int = 64,
        epochs: int = 300,
        xi: float = 0.01,
        space: ConditionalSpace | None = None,
    ) -> None:
        problems = [
            problem
            for problem in (
                _int_problem("n_startup_trials", n_startup_trials, 0),
                _int_problem("n_models", n_models, 2),
                _int_problem("n_candidates", n_candidates, 1),
                _int_problem("hidden", hidden, 1),
                _int_problem("epochs", epochs, 1),
            )
            if problem is not None
        ]
        if isinstance(xi, bool) or not isinstance(xi, (int, float)) or not (math.isfinite(xi) and xi >= 0):
            problems.append(f"xi must be a finite float >= 0. Got {xi!r} instead.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            problems.append(f"seed must be an int or None. Got {seed!r} instead.")
        if problems:
            raise ConfigError(
                "NeuralSampler settings are invalid: " + " ".join(problems),
                fix="Change these arguments of NeuralSampler.",
            )
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.n_models = n_models
        self.n_candidates = n_candidates
        self.hidden = hidden
        self.epochs = epochs
        self.xi = float(xi)
        self.space = space
        self._rng = np.random.default_rng(seed)
        self._random_sampler = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        # Optuna calls this when trials run in parallel threads, so that copies do not repeat each other.
        self._rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        _check_single_objective(study)
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < max(self.n_startup_trials, 1):
            # Until then every parameter comes from the random sampler, exactly as RandomSampler(seed) would.
            return {}
        space = self.space.distributions() if self.space is not None else intersection_search_space(completed)
        # A single-valued parameter needs no model: Optuna fills it in itself.
        return {name: dist for name, dist in space.items() if not dist.single()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _check_single_objective(study)
        if not search_space:
            return {}
        points: list[dict[str, Any]] = []
        values: list[float] = []
        for done in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            present = _present(done, search_space)
            if present and done.value is not None:
                points.append(present)
                values.append(float(done.value))
        if len(points) < max(self.n_startup_trials, 1):
            return {}
        # Trials other workers are running: scored as the worst so far (a constant liar), so that this worker
        # does not propose what they are already trying.
        worst = min(values) if study.direction == StudyDirection.MAXIMIZE else max(values)
        for pending in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            present = _present(pending, search_space)
            if pending.number != trial.number and present:
                points.append(present)
                values.append(worst)
        with _one_intra_op_thread():
            return self._propose(_SpaceEncoder(search_space), points, np.array(values, dtype=np.float64), study)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        _check_single_objective(study)
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._random_sampler.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._random_sampler.after_trial(study, trial, state, values)

    def _propose(
        self, encoder: _SpaceEncoder, points: list[dict[str, Any]], values: np.ndarray, study: Study
    ) -> dict[str, Any]:
        scores = _standardised_scores(values, study.direction)
        generator = torch.Generator(device=_CPU).manual_seed(int(self._rng.integers(2**63 - 1)))

        n_local = round(self.n_candidates * _LOCAL_FRACTION)
        best = np.argsort(-scores, kind="stable")[:_N_LOCAL_CENTRES]
        # A best trial lacks the parameters of other families: a local candidate that moves to another family
        # takes random values for them.
        centres = encoder.encode_rows([points[i] for i in best], encoder.uniform(len(best), self._rng))
        rows = encoder.snap(
            np.concatenate(
                [encoder.uniform(self.n_candidates - n_local, self._rng), encoder.perturb(centres, n_local, self._rng)]
            )
        )
        candidates = self._offered(encoder.decode_rows(rows), encoder.search_space)
        features = _features(encoder, points + candidates)
        ensemble = _fit_ensemble(
            features[: len(points)],
            scores,
            n_models=self.n_models,
            hidden=self.hidden,
            epochs=self.epochs,
            generator=generator,
        )
        with torch.no_grad():
            inputs = torch.as_tensor(features[len(points) :], dtype=torch.float32, device=_CPU)
            predictions = ensemble(inputs.expand(self.n_models, -1, -1)).double().numpy()
        improvement = _expected_improvement(predictions.mean(0), predictions.std(0), float(scores.max()), self.xi)
        return candidates[int(np.argmax(improvement))]

    def _offered(
        self, points: list[dict[str, Any]], search_space: Mapping[str, BaseDistribution]
    ) -> list[dict[str, Any]]:
        """What a trial would set of each point: all of it, or, in a conditional space, the active parameters."""
        if self.space is None:
            return points
        fixed = {
            name: _only_value(dist) for name, dist in self.space.distributions().items() if name not in search_space
        }
        offered = []
        for point in points:
            active = self.space.active({**fixed, **point})
            offered.append({name: value for name, value in active.items() if name in search_space})
        return offered


@contextlib.contextmanager
def _one_intra_op_thread() -> Iterator[None]:
    """Runs the block with one torch intra-op thread, then restores the previous number.

    The surrogate's tensors are far too small to gain from threads, and when the CPU is busy (data loading,
    another process) the thread hand-offs of each tiny matrix product made a suggestion 20 to 100 times
    slower: 5 to 25 s instead of 0.2 s on a loaded 2-core machine. The setting is process-wide, so with
    Optuna's ``n_jobs > 1`` an objective running in another thread also gets one thread for the
    fraction of a second this block lasts.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class MultiObjectiveError(ConfigError):
    """A multi-objective study given to a single-objective sampler: a ValueError, as Optuna's samplers raise."""


def _check_single_objective(study: Study) -> None:
    if len(study.directions) > 1:
        raise MultiObjectiveError(
            "NeuralSampler optimises one objective",
            expected="a study with one direction",
            found=f"{len(study.directions)} directions",
            fix="Use optuna.samplers.NSGAIISampler or TPESampler for multi-objective studies.",
        )

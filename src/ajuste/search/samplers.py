"""Samplers and pruners by name: Optuna's, plus a grid that knows conditional spaces and our ``nn`` surrogate."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from ajuste.errors import ConfigError
from ajuste.search.space import SearchSpace
from ajuste.search.study import cohort

__all__ = ["PRUNERS", "SAMPLERS", "CohortPruner", "SpaceGridSampler", "make_pruner", "make_sampler"]

SAMPLERS = ("grid", "random", "tpe", "gp", "cmaes", "genetic", "nn")
PRUNERS = ("none", "median", "asha", "hyperband")
GRID_ID = "ajuste:grid_id"
#: Trials a model-based sampler draws at random before it starts to model the score.
STARTUP_TRIALS = 8


def make_sampler(
    name: str,
    space: SearchSpace,
    *,
    seed: int,
    startup_trials: int = STARTUP_TRIALS,
    lock: Callable[[], AbstractContextManager[None]] | None = None,
) -> BaseSampler:
    """The sampler called ``name``, seeded; ``grid`` enumerates ``space`` (conditions and constraints honoured).

    Several workers of one study each seed their own; model-based samplers treat the trials that other workers
    are running as already scored (``tpe``'s constant liar, ``nn``'s pending trials), so workers do not propose
    the same point; ``lock`` (one holder across workers) makes the grid hand each point out once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)  # deprecated-argument notices of optuna 4.9+
        if name == "grid":
            return SpaceGridSampler(space, seed=seed, lock=lock)
        if name == "random":
            return RandomSampler(seed=seed)
        if name == "tpe":
            # multivariate + group: the joint model that suits a space whose parameters depend on the family.
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup_trials, multivariate=True, group=True, constant_liar=True
            )
        if name == "gp":
            return optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=startup_trials, warn_independent_sampling=False
            )
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=startup_trials, warn_independent_sampling=False
            )
        if name == "genetic":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
        if name == "nn":
            from ajuste.search.nn_sampler import NeuralSampler

            # Given the space, it models every parameter of it, not only those every trial shares.
            return NeuralSampler(seed=seed, n_startup_trials=startup_trials, space=space)
    raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    """The pruner called ``name``; each is fed the validation score after every epoch.

    Each compares a trial only with trials of its own :func:`cohort` (family and trainable layers; ``hyperband``
    within its bracket as well), and ``median`` never stops a trial after its first epoch: the learning curves
    of a bag of words and of a transformer fine-tuned at a low learning rate start far apart, and the one that
    starts slow is often the one that ends best.
    """
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return CohortPruner(optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2))
    if name == "asha":
        return CohortPruner(optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    if name == "hyperband":
        if not callable(getattr(optuna.pruners.HyperbandPruner, "_create_bracket_study", None)):
            # what _CohortHyperband overrides is Optuna's own; without it, brackets would mix the cohorts unseen
            raise ConfigError(
                "[[--pruner hyperband||pruner='hyperband']] keeps each bracket to one cohort through a part of "
                f"Optuna that Optuna {optuna.__version__} no longer has",
                fix="Use [[--pruner asha||pruner='asha']] or median, or an Optuna release from 4.2 to 5.x.",
            )
        return CohortPruner(_CohortHyperband(min_resource=1, max_resource=max(max_epochs, 3), reduction_factor=3))
    raise ValueError(f"unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}")


class _CohortView:
    """The study as a pruner sees it: only the trials of one cohort (everything else is the study's)."""

    def __init__(self, study: Study, keep: tuple[str, str]) -> None:
        self._study = study
        self.keep = keep

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if cohort(t) == self.keep]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class _CohortHyperband(optuna.pruners.HyperbandPruner):
    """Hyperband whose brackets hold the trials of one cohort. Optuna builds each bracket's study from the
    storage, past the cohort view that :class:`CohortPruner` hands it, so the view is put back around it."""

    def _create_bracket_study(self, study: Study, bracket_id: int) -> Study:
        bracket = super()._create_bracket_study(study, bracket_id)
        if isinstance(study, _CohortView):
            return _CohortView(bracket, study.keep)  # type: ignore[return-value]
        return bracket


class CohortPruner(optuna.pruners.BasePruner):
    """``pruner``, deciding from the trials of the pruned trial's :func:`cohort` alone."""

    def __init__(self, pruner: optuna.pruners.BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        return self.pruner.prune(_CohortView(study, cohort(trial)), trial)  # type: ignore[arg-type]


class SpaceGridSampler(BaseSampler):
    """Grid search over every distinct point of a :class:`SearchSpace`, each tried once, in a seeded order.

    Unlike a plain Cartesian grid it knows that a setting of one family, or one under a false ``when``,
    does not exist in a point, so no two trials train the same model. Points of trials that finished,
    failed for a reason of their own, or are running are taken; those of interrupted trials come back.
    The study stops when the last point has been tried.
    """

    def __init__(
        self, space: SearchSpace, *, seed: int = 0, lock: Callable[[], AbstractContextManager[None]] | None = None
    ) -> None:
        self._lock = lock or contextlib.nullcontext
        self._points = space.grid()
        self._order = [int(i) for i in np.random.default_rng(seed).permutation(len(self._points))]
        self._fallback = RandomSampler(seed=seed)

    @property
    def size(self) -> int:
        return len(self._points)

    def taken(self, study: Study) -> set[int]:
        """Grid points already given to a trial that counts."""
        taken = set()
        for trial in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if GRID_ID in trial.system_attrs and not trial.user_attrs.get("interrupted"):
                taken.add(int(trial.system_attrs[GRID_ID]))
        return taken

    def remaining(self, study: Study) -> int:
        return len(self._points) - len(self.taken(study))

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if GRID_ID in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return
        with self._lock():  # another worker choosing at the same moment would take the same point
            taken = self.taken(study)
            free = [i for i in self._order if i not in taken]
            if not free:
                study.stop()
                free = self._order[:1]
            study._storage.set_trial_system_attr(trial._trial_id, GRID_ID, free[0])

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        grid_id = trial.system_attrs.get(GRID_ID)
        if grid_id is None or param_name not in self._points[int(grid_id)]:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        return self._points[int(grid_id)][param_name]

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        if self.remaining(study) <= 0:
            study.stop()

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

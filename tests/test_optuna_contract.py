"""Our ``nn`` sampler held to Optuna's own sampler test suite (``optuna.testing.pytest_samplers``).

The suite is the contract every Optuna sampler keeps: every distribution sampled within bounds and
steps, conditional and dynamic spaces, NaN objective values, fixed parameters, relative sampling, and a
multi-objective study refused with ``ValueError``. It runs with no startup trials, so the network's
relative sampling is what is tested, and with a small ensemble, as the contract does not depend on size.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase

from ajuste.search.nn_sampler import NeuralSampler


class TestNeuralSamplerKeepsOptunasContract(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: NeuralSampler(seed=0, n_startup_trials=0, n_models=2, n_candidates=64, hidden=8, epochs=20)

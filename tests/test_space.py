"""The search space as data: parsing, kinds, conditions, constraints, every problem at once, safe expressions."""

from __future__ import annotations

import ast
import builtins
import inspect
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ajuste.errors import ConfigError
from ajuste.models.registry import FAMILIES
from ajuste.models.settings import GPTSettings
from ajuste.search import expressions
from ajuste.search.expressions import Expression, ExpressionError
from ajuste.search.space import Group, Param, SearchSpace, parse_space
from ajuste.training.settings import TrainSettings
from ajuste.validation import model_settings

pytestmark = pytest.mark.usefixtures("quiet_optuna")

DIVIDES = "model.emb_dim % model.num_heads == 0"
SMALL_GPT = {
    "model.emb_dim": {"low": 16, "high": 64, "step": 8},
    "model.num_heads": [2, 3, 4, 8],
    "model.num_layers": 1,
    "constraints": [DIVIDES],
}


def suggestions(space: SearchSpace, count: int, seed: int = 0) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` random points of ``space``: (the settings, the study parameters) of each."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(count):
        trial = study.ask()
        values = space.suggest(trial)
        yield values, dict(trial.params)


def validate_point(values: dict[str, Any]) -> None:
    """A suggested point must make valid model and training settings."""
    model: dict[str, Any] = {"family": values["model.family"]}
    train: dict[str, Any] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if section == "model" and name != "family":
            model[name] = value
        elif section == "train":
            train[name] = value
    model_settings(model)
    TrainSettings.model_validate(train)


def params_of(space: SearchSpace, family: str) -> dict[str, Param]:
    return {item.key: item for item in space.scopes[family].items if isinstance(item, Param)}


def refused(raw: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_space(raw, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, "the CLI prints the error on one line"
    return message


# -- default spaces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("families", [["bag"], ["gpt"], ["minilm"], ["static"], ["bag", "gpt", "minilm"]])
def test_default_spaces_parse_and_give_valid_settings(families: list[str]) -> None:
    space = parse_space(None, families=families)
    assert space.families == families
    for family in families:
        expected = {key for key in FAMILIES[family].space if key != "constraints"}
        assert expected <= space.scopes[family].keys()
    seen = set()
    for values, _ in suggestions(space, 60):
        seen.add(values["model.family"])
        validate_point(values)
    assert seen == set(families), "every family of the space is sampled"


def test_a_family_s_own_settings_have_its_name_and_shared_settings_one_name() -> None:
    space = parse_space(None, families=["bag", "gpt"])
    names = set(space.distributions())
    assert {"model.family", "bag/model.embed_dim", "gpt/model.num_layers", "train.lr"} <= names
    assert not {"bag/train.lr", "gpt/train.lr"} & names
    assert space.distributions()["model.family"] == CategoricalDistribution(["bag", "gpt"])


def test_no_family_and_no_space_is_refused() -> None:
    assert "no search space" in refused(None)  # type: ignore[arg-type]


def test_a_fixed_model_family_is_searched_alone() -> None:
    space = parse_space({"train.lr": {"low": 1e-3, "high": 0.1, "log": True}}, base_model={"family": "bag"})
    assert space.families == ["bag"]
    assert space.distributions() == {"train.lr": FloatDistribution(1e-3, 0.1, log=True)}


# -- kinds of settings -------------------------------------------------------------------------------


def test_each_kind_of_setting_is_parsed() -> None:
    space = parse_space(
        {
            "model.embed_dim": {"low": 16, "high": 64, "step": 16},
            "model.ngrams": {"low": 1, "high": 3},
            "model.min_freq": [1, 2],
            "train.optimizer": {"choices": ["adamw", "sgd"]},
            "train.lr": {"low": 1e-4, "high": 1.0, "log": True},
            "train.warmup": {"low": 0.0, "high": 0.2},
            "train.epochs": {"low": 1, "high": 9, "type": "float"},
            "model.buckets": 1000,
        },
        families=["bag"],
    )
    params = params_of(space, "bag")
    assert space.scopes["bag"].fixed == {"model.buckets": 1000}
    assert params["model.embed_dim"].distribution() == IntDistribution(16, 64, step=16)
    assert params["model.embed_dim"].values() == [16, 32, 48, 64]
    assert params["model.ngrams"].distribution() == IntDistribution(1, 3)
    assert params["model.min_freq"].distribution() == CategoricalDistribution([1, 2])
    assert params["train.optimizer"].distribution() == CategoricalDistribution(["adamw", "sgd"])
    assert params["train.lr"].distribution() == FloatDistribution(1e-4, 1.0, log=True)
    assert params["train.warmup"].distribution() == FloatDistribution(0.0, 0.2)
    assert params["train.epochs"].kind == "float"


def test_float_grid_points_stay_inside_the_range() -> None:
    space = parse_space(
        {"train.lr": {"low": 1e-3, "high": 0.3, "log": True}, "train.warmup": {"low": 0.1, "high": 0.3}},
        families=["bag"],
    )
    for param in params_of(space, "bag").values():
        points = param.values()
        assert len(points) == 5
        assert points[0] == param.low and points[-1] == param.high
        assert all(param.low <= p <= param.high for p in points)
        assert points == sorted(points)
    lr = params_of(space, "bag")["train.lr"].values()
    ratios = [b / a for a, b in itertools.pairwise(lr)]
    assert max(ratios) == pytest.approx(min(ratios)), "log points are evenly spaced on a log scale"


def test_sampled_values_respect_step_bounds_choices_and_log() -> None:
    space = parse_space(
        {
            "model.embed_dim": {"low": 16, "high": 64, "step": 16},
            "model.min_freq": [1, 3],
            "train.lr": {"low": 1e-4, "high": 1.0, "log": True},
        },
        families=["bag"],
    )
    learning_rates = []
    for values, _ in suggestions(space, 200):
        assert values["model.embed_dim"] in (16, 32, 48, 64)
        assert values["model.min_freq"] in (1, 3)
        assert 1e-4 <= values["train.lr"] <= 1.0
        learning_rates.append(values["train.lr"])
    # Log-uniform: half the draws below 1e-2 (a uniform draw would put 1% there).
    assert 0.3 < sum(lr < 1e-2 for lr in learning_rates) / len(learning_rates) < 0.7


# -- conditions --------------------------------------------------------------------------------------


def test_lora_settings_exist_only_when_trainable_is_lora() -> None:
    space = parse_space(None, families=["minilm"])
    ranges = {variant["when"]: variant for variant in FAMILIES["minilm"].space["train.lr"]}
    policies = set()
    for values, params in suggestions(space, 200):
        policy = values["model.trainable"]
        policies.add(policy)
        is_lora = policy == "lora"
        assert ("model.lora_rank" in values) is is_lora
        assert ("model.lora_alpha" in values) is is_lora
        if is_lora:
            assert 4 <= values["model.lora_rank"] <= 32
        assert [name for name in params if "train.lr" in name] == ["train.lr"], "one parameter for every range"
        (when,) = [when for when in ranges if Expression.parse(when).holds({"model.trainable": policy})]
        assert ranges[when]["low"] <= values["train.lr"] <= ranges[when]["high"], "the policy's own range"
    assert policies == {"head", "last_block", "last_n:2", "all", "lora"}


def test_a_condition_on_a_range_is_honoured_by_sampling_and_grid() -> None:
    space = parse_space(
        {
            "model.ngrams": {"low": 1, "high": 3},
            "model.buckets": {"choices": [1000, 2000], "when": "model.ngrams > 1"},
        },
        families=["bag"],
    )
    for values, _ in suggestions(space, 50):
        assert ("model.buckets" in values) is (values["model.ngrams"] > 1)
    grid = space.grid()
    assert len(grid) == 1 + 2 * 2
    assert {"model.ngrams": 1} in grid
    assert all(("model.buckets" in point) is (point["model.ngrams"] > 1) for point in grid)


def test_each_range_of_a_list_needs_a_condition() -> None:
    message = refused(
        {"model.trainable": ["head", "all"], "train.lr": [{"low": 1e-4, "high": 1e-2}, {"low": 1e-5, "high": 1e-3}]},
        families=["minilm"],
    )
    assert "train.lr: each range of a list of ranges needs a `when` condition" in message


def test_conditions_that_read_each_other_in_a_cycle_are_refused() -> None:
    message = refused(
        {
            "model.ngrams": {"low": 1, "high": 3, "when": "model.min_freq > 1"},
            "model.min_freq": {"low": 1, "high": 3, "when": "model.ngrams > 1"},
        },
        families=["bag"],
    )
    assert "cycle" in message


# -- constraints -------------------------------------------------------------------------------------


def test_constrained_settings_are_never_sampled_invalid() -> None:
    space = parse_space(SMALL_GPT, families=["gpt"])
    pairs = set()
    for values, _ in suggestions(space, 200):
        assert values["model.emb_dim"] % values["model.num_heads"] == 0
        GPTSettings(emb_dim=values["model.emb_dim"], num_heads=values["model.num_heads"])
        pairs.add((values["model.emb_dim"], values["model.num_heads"]))
    valid = {(e, h) for e in range(16, 65, 8) for h in (2, 3, 4, 8) if e % h == 0}
    assert pairs <= valid
    assert len(pairs) > len(valid) // 2, "the valid combinations are all reachable"


def test_the_grid_holds_exactly_the_valid_combinations() -> None:
    space = parse_space(SMALL_GPT, families=["gpt"])
    (group,) = [item for item in space.scopes["gpt"].items if isinstance(item, Group)]
    decoded = [space.decode(point) for point in space.grid()]
    pairs = [(v["model.emb_dim"], v["model.num_heads"]) for v in decoded]
    valid = {(e, h) for e in range(16, 65, 8) for h in (2, 3, 4, 8) if e % h == 0}
    assert len(pairs) == len(set(pairs)) == len(valid) == len(group.combos)
    assert set(pairs) == valid
    assert all(v["model.num_layers"] == 1 for v in decoded)


def test_the_default_gpt_space_is_never_sampled_invalid() -> None:
    space = parse_space(None, families=["gpt"])
    for values, _ in suggestions(space, 200, seed=3):
        assert values["model.emb_dim"] % values["model.num_heads"] == 0


def test_a_gpt_space_without_its_constraint_is_refused() -> None:
    message = refused({"model.emb_dim": [64, 100], "model.num_heads": [2, 4, 8]}, families=["gpt"])
    assert "impossible" in message and "emb_dim must be a multiple of num_heads" in message
    assert "add a constraint" in message


def test_a_constraint_nothing_satisfies_is_refused() -> None:
    message = refused(
        {"model.emb_dim": [64, 96], "model.num_heads": [2, 4], "constraints": ["model.emb_dim < 0"]},
        families=["gpt"],
    )
    assert "no combination" in message


# -- every problem at once ---------------------------------------------------------------------------


def test_a_bad_space_is_refused_with_every_problem_listed(tmp_path: Path) -> None:
    witness = tmp_path / "witness.txt"
    witness.write_text("still here", encoding="utf-8")
    raw = {
        "model.family": ["bag", "gpt", "nope"],
        "bag": {
            "train.lrr": {"low": 1e-3, "high": 0.1},
            "model.embed_dim": {"low": 100, "high": 10},
            "train.lr": {"low": 0.0, "high": 0.1, "log": True},
            "train.warmup": {"low": 0.0, "high": 0.2},
            "model.ngrams": [1, 2],
            "constraints": [
                "train.warmup > 0.1",
                "model.ngrams <= model.foo",
                f"__import__('os').remove({str(witness)!r}) == 0",
                "model.ngrams.real == 1",
            ],
        },
        "gpt": {"model.emb_dim": [64, 100], "model.num_heads": [2, 4, 8]},
        "minilm": {"train.lr": 1e-4},
    }
    message = refused(raw)
    expected = [
        "unknown family nope",
        "bag.train.lrr: unknown setting; did you mean train.lr?",
        "bag.model.embed_dim: low (100) must not exceed high (10)",
        "bag.train.lr: a log range needs low > 0, found 0.0",
        "minilm: a sub-space for a family that model.family does not include",
        "train.warmup must be unconditional int or categorical settings to be constrained",
        "reads model.foo, which this family's space does not set",
        "uses '__import__('os').remove(",
        "uses 'model.ngrams.real'",
        "gpt: the space allows model.emb_dim=100, model.num_heads=8, which is impossible",
    ]
    missing = [text for text in expected if text not in message]
    assert not missing, f"missing from the error: {missing}\n{message}"
    assert witness.read_text(encoding="utf-8") == "still here", "a refused expression is never run"


def test_the_same_problem_is_said_once() -> None:
    message = refused({"model.family": ["bag", "gpt"], "train.lrr": 0.1})
    assert message.count("did you mean train.lr?") == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"model.embed_dim": {"low": 16}}, "a range needs low and high"),
        ({"model.embed_dim": {"low": 16, "high": 32, "stp": 2}}, "unknown field stp"),
        ({"model.embed_dim": {"low": 16, "high": 32, "step": 0}}, "step must be a positive number"),
        ({"train.lr": {"low": 1e-3, "high": 0.1, "log": True, "step": 0.01}}, "log and step cannot be combined"),
        ({"model.min_freq": []}, "choices must be a non-empty list"),
        ({"model.min_freq": [1, 1]}, "choices must not repeat"),
        ({"model.min_freq": {"low": "a", "high": 2}}, "low and high must be numbers"),
        ({"model.embed_dim": {"low": 1, "high": 9000}}, "must be <= 4096, got 9000"),
        ({"batch_size": [8]}, "unknown key"),
        ({"data.split": [1]}, "expected a setting of model or train"),
        ({"model.embed_dim": {"low": 8, "high": 16, "when": "model.ngrams ="}}, "not a valid expression"),
    ],
)
def test_each_kind_of_bad_setting_is_named(raw: dict[str, Any], expected: str) -> None:
    assert expected in refused(raw, families=["bag"])


def test_pretrained_needs_a_checkpoint() -> None:
    assert "needs a checkpoint" in refused(None, families=["pretrained"])  # type: ignore[arg-type]
    space = parse_space(None, families=["pretrained"], base_model={"family": "pretrained", "checkpoint": "x"})
    assert space.families == ["pretrained"]


# -- decode ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("families", [["bag", "gpt", "minilm"], ["gpt"]])
def test_decode_gives_back_what_suggest_returned(families: list[str]) -> None:
    space = parse_space(None, families=families)
    for values, params in suggestions(space, 100, seed=1):
        assert space.decode(params) == values


def test_describe_lists_every_setting() -> None:
    lines = parse_space(SMALL_GPT, families=["gpt"]).describe()
    assert lines[0] == "gpt:"
    assert "  model.num_layers = 1" in lines
    assert any("model.emb_dim, model.num_heads" in line and DIVIDES in line for line in lines)


# -- expressions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        (DIVIDES, {"model.emb_dim": 64, "model.num_heads": 4}, True),
        (DIVIDES, {"model.emb_dim": 66, "model.num_heads": 4}, False),
        ("model.trainable in ['last_block', 'last_n:2']", {"model.trainable": "last_n:2"}, True),
        ("model.trainable not in ('head', 'all')", {"model.trainable": "head"}, False),
        ("1 < model.x <= 3", {"model.x": 3}, True),
        ("1 < model.x <= 3", {"model.x": 4}, False),
        ("not model.x == 'a' and train.y >= 2 or False", {"model.x": "b", "train.y": 2}, True),
        ("-model.x + 2 * 3 ** 2 // 4 - 1 / 2 != 0", {"model.x": 3.5}, False),
        ("model.x == None", {"model.x": None}, True),
        ("model.x != True", {"model.x": False}, True),
    ],
)
def test_allowed_expressions_evaluate(text: str, values: dict[str, Any], expected: bool) -> None:
    assert Expression.parse(text).holds(values) is expected


def test_an_expression_knows_the_settings_it_reads() -> None:
    expression = Expression.parse("  model.emb_dim % model.num_heads == 0 and train.lr < 1  ")
    assert expression.names == {"model.emb_dim", "model.num_heads", "train.lr"}
    assert str(expression) == "model.emb_dim % model.num_heads == 0 and train.lr < 1"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo hacked')",
        "open('/etc/passwd')",
        "model.x.real == 1",
        "os.sep == '/'",
        "x == 1",
        "model.x[0] == 1",
        "(lambda: 1)() == 1",
        "[i for i in (1, 2)] == []",
        "(y := 1) == 1",
        "f'{model.x}' == 'a'",
        "model.x is None",
        "model.x if True else 1",
        "{1: 2} == {}",
        "~model.x == 1",
        "model.x.__class__",
        "train.lr.__class__.__mro__",
    ],
)
def test_refused_syntax_is_named(text: str) -> None:
    with pytest.raises(ExpressionError, match="which is not allowed"):
        Expression.parse(text)


@pytest.mark.parametrize("text", ["", "   ", "model.x ==", "model.x = 1"])
def test_text_that_is_no_expression_is_refused(text: str) -> None:
    with pytest.raises(ExpressionError, match="expression"):
        Expression.parse(text)


def test_evaluation_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match=r"reads model\.y, which is not set"):
        Expression.parse("model.y > 1").evaluate({"model.x": 1})
    with pytest.raises(ExpressionError, match="cannot be evaluated"):
        Expression.parse("model.x + 'a' == 1").evaluate({"model.x": 1})
    with pytest.raises(ExpressionError, match="cannot be evaluated"):
        Expression.parse("model.x % model.y == 0").evaluate({"model.x": 1, "model.y": 0})


def test_expressions_never_use_eval_or_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eval or exec was called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert Expression.parse(DIVIDES).holds({"model.emb_dim": 64, "model.num_heads": 4})
    tree = ast.parse(inspect.getsource(expressions))
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}


def test_evaluation_is_exact_arithmetic() -> None:
    assert Expression.parse("model.x / 3").evaluate({"model.x": 1}) == pytest.approx(1 / 3)
    assert Expression.parse("model.x ** 2").evaluate({"model.x": 3}) == 9
    assert math.isclose(Expression.parse("-model.x").evaluate({"model.x": 0.5}), -0.5)


# -- a grid under a budget -----------------------------------------------------------------------------


def test_a_grid_larger_than_the_budget_is_thinned_least_important_settings_first() -> None:
    space = parse_space(None, families=["bag"])
    assert space.grid_size() is None  # more points than a grid may have: refused before this
    coarse, lines = space.coarsened(30)
    size = coarse.grid_size()
    assert size is not None and 8 <= size <= 30
    values = {item.key: item.values() for item in coarse.scopes["bag"].items if isinstance(item, Param)}
    assert len(values["train.lr"]) == 5, "the learning rate keeps its points longest"
    assert len(values["train.batch_size"]) == 1, "a choice of lesser importance goes before it"
    assert len(values["train.warmup"]) == 1 and len(values["train.weight_decay"]) == 1
    assert any(line.endswith("train.warmup 5 → 1 (0.1)") or "train.warmup 5 → 1 (0.1)" in line for line in lines)
    assert all(len(set(point.values())) for point in coarse.grid())


def test_a_grid_within_the_budget_is_left_as_it_is() -> None:
    space = parse_space({"model.embed_dim": [8, 16], "train.epochs": [1, 2]}, base_model={"family": "bag"})
    same, lines = space.coarsened(10)
    assert same is space and lines == []


def test_a_model_outside_the_space_s_families_is_refused() -> None:
    # the fixed model's family (or the families asked for) must be among those the space searches, or one of the
    # two would be dropped without a word
    message = refused({"model.family": ["bag", "gpt"]}, base_model={"family": "linear"})
    assert "the space searches bag, gpt, but the model asked for is linear" in message
    assert "the model asked for is linear, minilm" in refused({"model.family": "bag"}, families=["linear", "minilm"])
    # the fixed settings of one of the space's families are that family's base settings
    space = parse_space({"model.family": ["bag", "gpt"]}, base_model={"family": "bag", "embed_dim": 32})
    assert space.families == ["bag", "gpt"]


def test_the_families_searched_by_default_give_way_to_the_space_s_own() -> None:
    defaults = ["linear", "bag", "gpt", "minilm"]
    assert parse_space({"model.family": "bag"}, default_families=defaults).families == ["bag"]
    blocks_only = parse_space({"gpt": {"model.num_layers": {"low": 1, "high": 2}}}, default_families=defaults)
    assert blocks_only.families == ["gpt"]
    assert parse_space({"train.lr": {"low": 1e-4, "high": 1e-2}}, default_families=defaults).families == defaults
    assert parse_space(None, default_families=defaults).families == defaults


def test_a_range_that_is_not_whole_steps_is_refused() -> None:
    # Optuna warned (its own UserWarning, with a file path) and cut {16, 20, step 16} down to [16, 16]
    message = refused({"model.family": "bag", "model.embed_dim": {"low": 16, "high": 40, "step": 16}})
    assert "model.embed_dim: high (40) is not low (16) plus whole steps of 16: make high 32 or 48" in message
    message = refused({"model.family": "bag", "train.lr": {"low": 0.1, "high": 0.25, "step": 0.1}})
    assert "make high 0.2 or 0.3" in message
    exact = parse_space({"model.family": "bag", "train.warmup": {"low": 0.0, "high": 0.3, "step": 0.1}})
    assert "bag/train.warmup" in exact.distributions() or "train.warmup" in exact.distributions()


def test_a_float_setting_under_a_false_condition_is_not_checked_against_the_others() -> None:
    # the combination check set every float setting, lora_alpha under trainable head too: a rule between them
    # (lora settings apply to lora only) refused the default space
    space = parse_space(
        {
            "model.family": "minilm",
            "model.trainable": ["head", "lora"],
            "model.lora_alpha": {"low": 8.0, "high": 64.0, "log": True, "when": "model.trainable == 'lora'"},
        }
    )
    assert "minilm/model.lora_alpha" in space.distributions() or "model.lora_alpha" in space.distributions()
    message = refused({"model.family": "minilm", "model.trainable": ["head", "lora"], "model.lora_alpha": 4.0})
    assert "lora_alpha applies to trainable 'lora' only, not 'head'" in message


@pytest.mark.parametrize("families", [[], {"choices": []}])
def test_an_empty_list_of_families_is_refused_before_any_trial(families: object) -> None:
    # it reached the first trial, which failed with an IndexError and left a half-made run folder
    message = refused({"model.family": families})
    assert "model.family: expected at least one family (linear, bag," in message
    assert message.endswith("found an empty list")


def test_the_training_subset_is_not_searched() -> None:
    message = refused({"model.family": "bag", "train.subset": [100, 200]})
    assert "train.subset: not a searched setting" in message and "--screen" in message

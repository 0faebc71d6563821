"""Settings: every problem found at once, reported in one ConfigError that says how to fix it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ajuste.config import RunConfig, parse_config, read_yaml
from ajuste.data.settings import DataSettings
from ajuste.errors import ConfigError
from ajuste.models.settings import BagSettings, GPTSettings, PretrainedSettings, parse_trainable
from ajuste.training.settings import TrainSettings
from ajuste.validation import model_settings, validate


def config_error(values: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(values)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid settings: ")
    return message


def with_data(**sections: Any) -> dict[str, Any]:
    return {"data": {"path": "data.csv"}, **sections}


# -- all problems at once ------------------------------------------------------------------------


def test_every_problem_is_reported_in_one_message() -> None:
    message = config_error(
        {
            "data": {"path": "x.csv", "split": [0.5, 0.5, 0.5], "txt_col": "body"},
            "model": {"family": "gpt", "emb_dim": 100, "num_heads": 3},
            "train": {"lr": -1, "epochs": 0, "warmup": 1.5},
            "sed": 1,
        }
    )
    problems = message.removeprefix("invalid settings: ").split("; ")
    wanted = [
        "data.split: fractions must sum to 1",
        "data.txt_col: unknown setting",
        "model: emb_dim must be a multiple of num_heads",
        "train.lr: must be > 0",
        "train.epochs: must be >= 1, got 0",
        "train.warmup: must be < 1",
        "sed: unknown setting",
    ]
    for part in wanted:
        assert any(problem.startswith(part) for problem in problems), part
    assert "did you mean 'text_col'?" in message
    assert "did you mean 'seed'?" in message


def test_field_errors_across_sections_are_all_listed() -> None:
    message = config_error(with_data(model={"family": "bag", "embed_dim": 0, "ngrams": 9}, train={"batch_size": 0}))
    assert "model.embed_dim: must be >= 1, got 0" in message
    assert "model.ngrams: must be <= 5, got 9" in message
    assert "train.batch_size: must be >= 1, got 0" in message


def test_the_value_is_shown_once() -> None:
    message = config_error(with_data(data={"path": "x.csv", "split": [0.5, 0.5, 0.5]}))
    assert message.count("got") == 1
    assert "got 0.5,0.5,0.5 (sum 1.5)" in message


def test_wrong_types() -> None:
    message = config_error(with_data(train={"epochs": "many", "restore_best": "maybe"}, seed="abc"))
    assert "train.epochs: must be an integer, got 'many'" in message
    assert "train.restore_best: must be true or false" in message
    assert "seed: must be an integer, got 'abc'" in message


def test_a_value_that_fits_no_member_of_a_union_is_one_problem_in_words() -> None:
    # --screen maybe: "tune.screen.literal['auto','off']: must be auto or off, got 'maybe'; tune.screen.int: ..."
    from ajuste.search.settings import TuneConfig

    with pytest.raises(ConfigError) as caught:
        validate(TuneConfig, {"data": {"dataset": "sms-spam"}, "tune": {"screen": "maybe"}})
    assert str(caught.value) == "invalid settings: tune.screen: must be auto or off, or an integer, got 'maybe'"


def test_validate_names_the_section_it_checks() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr: must be > 0"):
        validate(TrainSettings, {"lr": 0}, "train")
    assert validate(TrainSettings, {"lr": 0.5}, "train").lr == 0.5


# -- model -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("emb_dim", "num_heads", "suggestion"), [(100, 3, 99), (130, 4, 128), (10, 64, 64)])
def test_emb_dim_must_be_a_multiple_of_num_heads(emb_dim: int, num_heads: int, suggestion: int) -> None:
    message = config_error(with_data(model={"family": "gpt", "emb_dim": emb_dim, "num_heads": num_heads}))
    assert f"got emb_dim={emb_dim} and num_heads={num_heads}" in message
    assert f"try emb_dim={suggestion}" in message
    assert suggestion % num_heads == 0


def test_gpt_consistent_settings_pass() -> None:
    settings = GPTSettings(emb_dim=96, num_heads=3, context_length=64, max_length=64)
    assert settings.emb_dim % settings.num_heads == 0
    with pytest.raises(ValidationError, match="cannot exceed context_length"):
        GPTSettings(context_length=64, max_length=65)


def test_unknown_model_key_gets_a_suggestion() -> None:
    assert "model.num_head: unknown setting for family gpt; did you mean 'num_heads'?" in config_error(
        with_data(model={"family": "gpt", "num_head": 4})
    )
    with pytest.raises(ConfigError, match="did you mean 'trainable'"):
        model_settings({"family": "minilm", "trainabel": "all"})


def test_another_familys_setting_is_not_a_typo() -> None:
    message = config_error(with_data(model={"family": "bag", "num_heads": 4}))
    assert "model.num_heads: unknown setting for family bag" in message
    assert "did you mean 'num_heads'" not in message
    assert "known: family, max_length, precision, embed_dim, ngrams, buckets, min_freq" in message


def test_unknown_key_far_from_any_lists_the_known_ones() -> None:
    message = config_error(with_data(train={"learning_rate": 0.1}))
    assert "train.learning_rate: unknown setting; known:" in message
    assert "lr" in message.split("known:")[1]


def test_model_family_is_checked() -> None:
    from ajuste.models.registry import FAMILIES

    said = config_error(with_data(model={"family": "gtp"}))
    assert f"model.family: unknown model family, got 'gtp'; expected one of {', '.join(FAMILIES)}" in said
    several = with_data(model={"family": ["bag", "gpt"]})
    assert "to search several: ajuste.tune(model=['bag', 'gpt'])" in config_error(several)
    with pytest.raises(ConfigError) as caught:
        parse_config(several)
    assert "to search several: --model bag,gpt," in caught.value.for_command_line()
    assert "model.family: is required" in config_error(with_data(model={"embed_dim": 8}))


@pytest.mark.parametrize("policy", ["head", "last_block", "all", "lora", "last_n:1", "last_n:12"])
def test_valid_trainable_policies(policy: str) -> None:
    settings = model_settings({"family": "pretrained", "checkpoint": "some/model", "trainable": policy})
    assert isinstance(settings, PretrainedSettings)
    assert settings.trainable == policy


@pytest.mark.parametrize("policy", ["last_n:0", "last_n:", "last_n:-1", "last_n:01", "heads", "LORA", "", "all "])
def test_invalid_trainable_policies(policy: str) -> None:
    with pytest.raises(ConfigError) as caught:
        model_settings({"family": "minilm", "trainable": policy})
    message = str(caught.value)
    assert "model.trainable: must be head, last_block, last_n:K (K >= 1), all or lora" in message
    assert message.count(repr(policy)) == 1


def test_parse_trainable() -> None:
    assert [parse_trainable(p) for p in ("head", "last_block", "last_n:3", "all", "lora")] == [0, 1, 3, None, None]


def test_checkpoint_rules() -> None:
    assert "needs a checkpoint" in config_error(with_data(model={"family": "pretrained"}))
    assert "leave checkpoint unset" in config_error(with_data(model={"family": "minilm", "checkpoint": "x"}))


# -- data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ([0.7, 0.2, 0.2], "fractions must sum to 1"),
        ([0.6, 0.1, 0.1], "fractions must sum to 1"),
        ([0.8, 0.3, -0.1], "every fraction must be a finite number > 0"),
        ([1.0, 0.0, 0.0], "every fraction must be a finite number > 0"),
        ([float("nan"), 0.5, 0.5], "every fraction must be a finite number > 0"),  # NaN passes `<= 0`
        ([0.5, float("inf"), 0.5], "every fraction must be a finite number > 0"),
        ([0.7, 0.3], "two split fractions (0.7,0.3) are for train and the one split that"),
        ([0.7], "data.split: expected three fractions (train, validation, test) or two"),
        ([0.4, 0.2, 0.2, 0.2], "got 4: 0.4,0.2,0.2,0.2"),
    ],
)
def test_split_fractions(split: list[float], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"data": {"path": "x.csv", "split": split}})
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_split_fractions_that_sum_to_one_in_floating_point() -> None:
    assert DataSettings(path="x.csv", split=(0.7, 0.2, 0.1)).split == (0.7, 0.2, 0.1)
    assert DataSettings(path="x.csv", split=(0.8, 0.1, 0.1)).split == (0.8, 0.1, 0.1)


@pytest.mark.parametrize("data", [{}, {"path": "x.csv", "dataset": "sms-spam"}])
def test_exactly_one_data_source(data: dict[str, str]) -> None:
    assert "give exactly one data source" in config_error({"data": data})


def test_data_section_is_required() -> None:
    assert "data: is required" in config_error({})


def test_balance_and_format_choices() -> None:
    message = config_error({"data": {"path": "x.csv", "balance": "smote", "format": "xls"}})
    assert "data.balance: must be none, undersample, oversample or class_weight, got 'smote'" in message
    assert "data.format: must be auto, csv, tsv, jsonl, parquet or lines, got 'xls'" in message


def test_settings_are_frozen() -> None:
    settings = DataSettings(path="x.csv")
    with pytest.raises(ValidationError):
        settings.dedupe = False  # type: ignore[misc]


# -- YAML ----------------------------------------------------------------------------------------


def test_read_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        read_yaml(tmp_path / "none.yaml")
    assert "--config" in str(caught.value)


def test_read_yaml_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder: expected a YAML file, found a folder"):
        read_yaml(tmp_path)


def test_read_yaml_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  path: [unclosed\nmodel: {\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML") as caught:
        read_yaml(path)
    assert "\n" not in str(caught.value)


def test_read_yaml_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes("seed: 1 # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not valid YAML"):
        read_yaml(path)


@pytest.mark.parametrize(("content", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_read_yaml_must_hold_a_mapping(tmp_path: Path, content: str, kind: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping") as caught:
        read_yaml(path)
    assert f"found {kind}" in str(caught.value)


def test_read_yaml_empty_is_an_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert read_yaml(path) == {}


def test_run_yaml_round_trip_drops_the_record(tmp_path: Path) -> None:
    config = RunConfig(
        data=DataSettings(path="x.csv", split=(0.8, 0.1, 0.1), balance="oversample"),
        model=GPTSettings(emb_dim=64, num_heads=4),
        train=TrainSettings(lr=0.01, epochs=3),
        seed=7,
        out="runs/x",
    )
    from ajuste.runs.folder import write_yaml
    from ajuste.runs.record import RunFile, RunRecord

    path = tmp_path / "run.yaml"  # written as a run folder writes it
    write_yaml(path, RunFile(config=config, record=RunRecord(seconds=1.0, data={}, model={})).to_data())
    values = read_yaml(path)
    assert set(values) == {"data", "model", "train", "seed", "out"}
    assert parse_config(values) == config


def test_default_model_is_bag() -> None:
    assert isinstance(parse_config({"data": {"dataset": "sms-spam"}}).model, BagSettings)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"data": {"path": "x.csv", "split": {"train": 0.7}}}, "data.split: must be a list"),
        ({"data": "x.csv"}, "data: must be a mapping of names to values, got 'x.csv'"),
        ({"data": {"path": "x.csv"}, "model": "bag"}, "model: must be a mapping of names to values, got 'bag'"),
    ],
)
def test_a_section_or_list_of_the_wrong_shape_is_said_in_plain_words(values: dict, said: str) -> None:
    # pydantic's own words were shown: "Input should be a valid tuple", "a valid dictionary or object to extract
    # fields from"
    message = config_error(values)
    assert said in message and "Input should be" not in message


def test_a_lora_setting_for_another_policy_is_refused_but_a_resolved_run_yaml_is_not() -> None:
    from ajuste.models.settings import PretrainedSettings

    # --lora-rank with --trainable head was taken without a word, while --lora-layers was refused
    with pytest.raises(ValueError, match="lora_rank applies to trainable 'lora' only, not 'head'"):
        PretrainedSettings(family="minilm", trainable="head", lora_rank=4)
    with pytest.raises(ValueError, match="lora_alpha and lora_dropout apply to trainable 'lora' only"):
        PretrainedSettings(family="minilm", trainable="all", lora_alpha=4.0, lora_dropout=0.2)
    resolved = PretrainedSettings(family="minilm", trainable="last_block").model_dump()  # as run.yaml holds it
    assert PretrainedSettings(**resolved).lora_rank == 8
    assert PretrainedSettings(family="minilm", trainable="lora", lora_rank=4).lora_rank == 4


def test_a_training_subset_is_a_run_s_setting_not_a_student_s_nor_a_search_s() -> None:
    from ajuste.search.settings import TuneConfig

    data = {"path": "x.csv"}
    assert parse_config({"data": data, "train": {"subset": 40}}).train.subset == 40
    assert "train.subset: must be >= 1" in config_error({"data": data, "train": {"subset": 0}})
    with pytest.raises(ConfigError, match="not supported for a student of a teacher"):
        parse_config({"data": data, "train": {"subset": 40}, "distill": {"teacher": "runs/teacher"}})
    with pytest.raises(ConfigError, match="not a setting of a search: every trial trains on every training text"):
        validate(TuneConfig, {"data": data, "train": {"subset": 40}})


def test_a_data_source_written_as_data_or_file_points_at_path_and_dataset() -> None:
    # "data: {data: texts.csv}" was told "did you mean 'dataset'?", the built-in datasets' key
    for key in ("data", "file"):
        message = config_error({"data": {key: "texts.csv"}})
        assert f"data.{key}: unknown setting; did you mean 'path' (a file) or 'dataset' (a built-in)?" in message
    assert "did you mean 'label_col'?" in config_error({"data": {"path": "x.csv", "lable_col": "y"}})

"""The freeze-boundary cache: cached training equals uncached training, keys invalidate, the cap holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ajuste import cache
from ajuste.data import TextDataset
from ajuste.errors import AjusteError
from ajuste.models import PretrainedSettings
from ajuste.models import pretrained as pretrained_module
from ajuste.training import TextClassifier
from tests.conftest import CliResult, make_texts

DROPOUTS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "summary_first_dropout",
)


def _without_dropout(source: Path, target: Path, layers: int, seed: int = 0) -> Path:
    """A fresh checkpoint like ``source`` with ``layers`` blocks and every dropout off."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    for name in DROPOUTS:
        if hasattr(config, name):
            setattr(config, name, 0.0)
    config.num_hidden_layers = layers  # n_layer on GPT-2 (an alias)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def bert3(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _without_dropout(tiny_bert, tmp_path_factory.mktemp("bert3"), layers=3)


@pytest.fixture(scope="module")
def gpt3(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _without_dropout(tiny_gpt2, tmp_path_factory.mktemp("gpt3"), layers=3)


TRAIN = make_texts(96, seed=1)
VAL = make_texts(32, seed=2)


def _fit(checkpoint: Path, trainable: str, *, use_cache: bool, **model: Any) -> TextClassifier:
    model.setdefault("precision", "fp32")  # the comparisons below are within fp32 rounding
    settings = PretrainedSettings(checkpoint=str(checkpoint), trainable=trainable, cache=use_cache, **model)
    classifier = TextClassifier(settings)
    classifier.compile(lr=5e-3)
    classifier.fit(*TRAIN, validation_data=VAL, epochs=2, batch_size=8, seed=5, verbose=False)
    return classifier


def _count_frozen_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of texts of every frozen pass that really runs (cache misses)."""
    calls: list[int] = []
    real = pretrained_module.compute_states

    def counting(module: Any, sequences: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(sequences))
        return real(module, sequences, *args, **kwargs)

    monkeypatch.setattr(pretrained_module, "compute_states", counting)
    return calls


UPPER_LORA = {"lora_layers": 1, "lora_dropout": 0.0}


@pytest.mark.parametrize(
    ("model", "trainable", "extra"),
    [
        ("bert3", "head", {}),
        ("bert3", "last_block", {}),
        ("bert3", "last_n:2", {}),
        ("bert3", "last_n:3", {}),
        ("bert3", "lora", UPPER_LORA),
        ("gpt3", "head", {}),
        ("gpt3", "last_block", {}),
        ("gpt3", "last_n:2", {}),
        ("gpt3", "lora", UPPER_LORA),
    ],
)
def test_cached_training_gives_the_same_weights_and_scores(
    model: str, trainable: str, extra: dict[str, Any], request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = request.getfixturevalue(model)
    calls = _count_frozen_passes(monkeypatch)
    plain = _fit(checkpoint, trainable, use_cache=False, **extra)
    assert calls == []  # the cache off: no frozen pass, the whole model runs on every batch
    cached = _fit(checkpoint, trainable, use_cache=True, **extra)
    assert calls == [len(TRAIN[0]), len(VAL[0])]  # train and validation, once each
    assert plain.module_ is not None and cached.module_ is not None
    plain_weights, cached_weights = plain.module_.state_dict(), cached.module_.state_dict()
    trained = [n for n, p in plain.module_.named_parameters() if p.requires_grad]
    assert trained and set(plain_weights) == set(cached_weights)
    for name in plain_weights:
        torch.testing.assert_close(cached_weights[name], plain_weights[name], atol=2e-5, rtol=1e-4, msg=name)
    # the weights moved: the comparison is not between two untouched models
    start = TextClassifier(
        PretrainedSettings(checkpoint=str(checkpoint), trainable=trainable, **{**extra, "precision": "fp32"})
    )
    torch.manual_seed(5)
    start._build(TextDataset(*TRAIN, list(range(len(TRAIN[0])))))
    assert start.module_ is not None
    assert any(not torch.allclose(start.module_.state_dict()[n], plain_weights[n]) for n in trained)
    assert plain.history_ is not None and cached.history_ is not None
    for a, b in zip(plain.history_.epochs, cached.history_.epochs):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    texts, labels = make_texts(40, seed=3)
    plain_scores, cached_scores = plain.evaluate(texts, labels), cached.evaluate(texts, labels)
    assert plain_scores["accuracy"] == cached_scores["accuracy"]
    assert plain_scores["loss"] == pytest.approx(cached_scores["loss"], rel=1e-4)


def test_every_layer_training_has_nothing_to_cache(bert3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_frozen_passes(monkeypatch)
    for trainable in ("all", "lora"):
        _fit(bert3, trainable, use_cache=True)
    assert calls == []
    assert cache.entries() == []


def test_a_second_run_reads_the_states_from_disk(bert3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_frozen_passes(monkeypatch)
    first = _fit(bert3, "last_block", use_cache=True)
    assert len(calls) == 2 and len(cache.entries()) == 2
    cache._memory.clear()  # as in a new process
    second = _fit(bert3, "last_block", use_cache=True)
    assert len(calls) == 2  # nothing recomputed
    assert first.module_ is not None and second.module_ is not None
    for name, value in first.module_.state_dict().items():
        torch.testing.assert_close(second.module_.state_dict()[name], value)
    listed = cache.entries()
    assert {e.meta["texts"] for e in listed} == {len(TRAIN[0]), len(VAL[0])}
    assert all(e.meta["boundary"] == "before block 2" and e.meta["trainable"] == "last_block" for e in listed)


@pytest.mark.parametrize(
    "change",
    [
        {"trainable": "last_n:2"},  # another boundary
        {"max_length": 6},  # another maximum length (texts truncated differently)
        {"precision": "bf16"},  # another arithmetic for the frozen pass
        {"pooling": "mean"},  # for head: another pooled vector
    ],
)
def test_a_change_of_settings_is_a_new_entry(
    bert3: Path, change: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajuste.models import boundary

    # bf16 is another arithmetic only where the CPU has it: elsewhere it computes fp32 (see below)
    monkeypatch.setattr(boundary, "bf16_supported", lambda: True)
    calls = _count_frozen_passes(monkeypatch)
    base = {"trainable": "head" if "pooling" in change else "last_block"}
    _fit(bert3, use_cache=True, **base)  # type: ignore[arg-type]
    _fit(bert3, use_cache=True, **{**base, **change})  # type: ignore[arg-type]
    assert len(calls) == 4
    assert len(cache.entries()) == 4


def test_other_texts_or_other_weights_are_new_entries(bert3: Path, tmp_path: Path) -> None:
    from transformers import AutoModel

    classifier = _fit(bert3, "last_block", use_cache=True)
    family, module = classifier.family_, classifier.module_
    assert family is not None and module is not None
    keys = {e.key for e in cache.entries()}
    family.frozen_features(module, family.encode(["one text", "another text"]))
    assert len({e.key for e in cache.entries()} - keys) == 1
    # the same folder name, one frozen weight changed: the fingerprint differs
    backbone = AutoModel.from_pretrained(bert3)
    before = cache.fingerprint_modules([backbone.embeddings])
    with torch.no_grad():
        backbone.embeddings.word_embeddings.weight[3, 0] += 1e-3
    assert cache.fingerprint_modules([backbone.embeddings]) != before
    assert cache.fingerprint_sequences([[1, 2], [3]]) != cache.fingerprint_sequences([[1], [2, 3]])


def test_another_tokenizer_is_a_new_entry(bert3: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    calls = _count_frozen_passes(monkeypatch)
    _fit(bert3, "last_block", use_cache=True)
    tokenizer = AutoTokenizer.from_pretrained(bert3)
    tokenizer.add_tokens(["zzzunseen"])  # the same ids for these texts, but another tokenizer
    tokenizer.save_pretrained(bert3 / "tok2")
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "model.safetensors"):
        (other / name).write_bytes((bert3 / name).read_bytes())
    for path in (bert3 / "tok2").iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    _fit(other, "last_block", use_cache=True)
    assert len(calls) == 4


@pytest.mark.parametrize("module_name", ["torch", "transformers"])
def test_another_torch_or_transformers_version_is_a_new_entry(
    bert3: Path, module_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    classifier = _fit(bert3, "last_block", use_cache=True)
    family, module = classifier.family_, classifier.module_
    assert family is not None and module is not None
    sequences = family.encode(["one text", "another text"])
    family.frozen_features(module, sequences)
    calls = _count_frozen_passes(monkeypatch)
    family.frozen_features(module, sequences)
    assert calls == []  # the same versions: a hit
    library = {"torch": torch, "transformers": transformers}[module_name]
    monkeypatch.setattr(library, "__version__", "99.0.0")
    cache._memory.clear()  # as in the next process, run after an upgrade
    family.frozen_features(module, sequences)
    assert calls == [2]  # recomputed, not read from the entry the older release wrote
    upgraded = [e for e in cache.entries() if e.meta[module_name] == "99.0.0"]
    assert len(upgraded) == 1 and upgraded[0].meta["texts"] == 2


def test_the_attention_implementation_is_part_of_the_key(bert3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = _fit(bert3, "last_block", use_cache=True)
    family, module = classifier.family_, classifier.module_
    assert family is not None and module is not None
    used = module.backbone.config._attn_implementation
    assert {e.meta["attention"] for e in cache.entries()} == {used}
    sequences = family.encode(["one text", "another text"])
    family.frozen_features(module, sequences)
    calls = _count_frozen_passes(monkeypatch)
    other = "eager" if used != "eager" else "sdpa"
    monkeypatch.setattr(module.backbone.config, "_attn_implementation", other)
    family.frozen_features(module, sequences)
    assert calls == [2]
    assert other in {e.meta["attention"] for e in cache.entries()}


def test_bf16_without_native_support_is_filed_as_the_fp32_it_computes(
    bert3: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajuste.models import boundary

    monkeypatch.setattr(boundary, "bf16_supported", lambda: False)  # a CPU without AVX-512 BF16 or AMX
    assert boundary.effective_precision("bf16") == "fp32"
    calls = _count_frozen_passes(monkeypatch)
    _fit(bert3, "last_block", use_cache=True, precision="fp32")
    fp32_keys = {e.key for e in cache.entries()}
    cache._memory.clear()
    _fit(bert3, "last_block", use_cache=True, precision="bf16")
    assert len(calls) == 2  # the bf16 run read the fp32 run's entries: the same values
    assert {e.key for e in cache.entries()} == fp32_keys
    assert {e.meta["precision"] for e in cache.entries()} == {"fp32"}
    cache.clear()
    _fit(bert3, "last_block", use_cache=True, precision="bf16")  # computed by a bf16 run, filed as fp32
    assert {e.key for e in cache.entries()} == fp32_keys
    assert {e.meta["precision"] for e in cache.entries()} == {"fp32"}


@pytest.mark.parametrize("record", ["[1, 2]", '"x"', "3", "null", "not json"])
def test_a_record_that_is_not_a_json_object_makes_the_file_damaged(
    record: str, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ajuste.models.boundary import BoundaryStates

    key = cache.make_key({"test": record})
    cache.put(key, BoundaryStates(torch.ones(3, 4)), {"model": "tiny", "texts": 3})
    (entry,) = cache.entries()
    assert entry.meta["model"] == "tiny" and not entry.meta.get("damaged")
    with safe_open(str(entry.path), framework="pt") as handle:  # the same tensors, the record damaged
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    save_file(tensors, str(entry.path), metadata={"ajuste": record})
    cache._memory.clear()  # as in a new process
    assert cache.get(key) is None  # a miss, not an exception
    (listed,) = cache.entries()
    assert listed.meta == {"damaged": True}
    shown = cli("cache", "list", "--json")
    assert shown.code == 0, shown.err
    assert shown.json()["entries"][0]["damaged"] is True
    table = cli("cache")
    assert table.code == 0 and "damaged" in table.out
    put_again = BoundaryStates(torch.zeros(3, 4))
    cache.put(key, put_again, {"model": "tiny", "texts": 3})  # recomputed states overwrite it
    cache._memory.clear()
    again = cache.get(key)
    assert again is not None and torch.equal(again.values, put_again.values)


def test_the_size_cap_removes_the_least_recently_used(bert3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fit(bert3, "last_block", use_cache=True)
    sizes = {e.key: e.bytes for e in cache.entries()}
    assert len(sizes) == 2
    monkeypatch.setenv("AJUSTE_CACHE_SIZE", str(max(sizes.values()) + 10))
    _fit(bert3, "last_n:2", use_cache=True)
    kept = cache.entries()
    assert sum(e.bytes for e in kept) <= max(sizes.values()) + 10
    assert kept and all(e.meta["trainable"] == "last_n:2" for e in kept)  # the older entries went first
    monkeypatch.setenv("AJUSTE_CACHE_SIZE", "0")
    cache.clear()
    _fit(bert3, "last_block", use_cache=True)
    assert cache.entries() == []  # nothing on disk, still trained from memory


def test_a_damaged_file_is_recomputed(bert3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_frozen_passes(monkeypatch)
    _fit(bert3, "last_block", use_cache=True)
    for entry in cache.entries():
        entry.path.write_bytes(b"not a safetensors file")
    cache._memory.clear()
    _fit(bert3, "last_block", use_cache=True)
    assert len(calls) == 4
    assert all(not e.meta.get("damaged") for e in cache.entries())


def test_a_tune_study_computes_the_frozen_layers_once(bert3: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import ajuste
    from tests.conftest import write_csv

    calls = _count_frozen_passes(monkeypatch)
    data = write_csv(tmp_path / "data.csv", *make_texts(150, seed=4))
    result = ajuste.tune(
        str(data),
        model={"family": "pretrained", "checkpoint": str(bert3), "trainable": "head"},
        space={"train.lr": {"low": 1e-3, "high": 1e-1, "log": True}},
        sampler="random",
        pruner="none",
        trials=4,
        train={"epochs": 2},
        out=tmp_path / "run",
    )
    assert len(result.study.trials) == 4
    assert len(calls) == 2  # train and validation, for every trial and the refit


def test_bf16_prediction_is_close_to_fp32(bert3: Path) -> None:
    classifier = _fit(bert3, "last_block", use_cache=True)
    texts, _ = make_texts(30, seed=9)
    fp32 = classifier.predict_proba(texts)
    bf16 = classifier.predict_proba(texts, precision="bf16")
    assert bf16.shape == fp32.shape
    assert abs(bf16 - fp32).max() < 0.05
    with pytest.raises(Exception, match="unknown precision"):
        classifier.predict_proba(texts, precision="fp8")


def test_cache_command_lists_and_clears(cli: Callable[..., CliResult], csv_file: Path, bert3: Path, tmp_path: Path):
    empty = cli("cache", "list", "--json")
    assert empty.code == 0 and empty.json()["entries"] == []
    run = tmp_path / "run"
    trained = cli("train", "--data", csv_file, "--model", str(bert3), "--epochs", "1", "--out", run, "--quiet")
    assert trained.code == 0, trained.err
    listed = cli("cache", "list", "--json").json()
    assert len(listed["entries"]) == 2 and listed["bytes"] == sum(e["bytes"] for e in listed["entries"])
    assert {e["source"] for e in listed["entries"]} == {str(bert3)}
    shown = cli("cache")
    assert "2 entries" in shown.out and "block 2" in shown.out and bert3.name in shown.out
    cleared = cli("cache", "clear", "--json").json()
    assert cleared["removed"] == 2
    assert cli("cache", "list", "--json").json()["entries"] == []
    # --no-cache trains without writing anything; --precision reaches the model settings
    again = cli(
        "train", "--data", csv_file, "--model", str(bert3), "--epochs", "1", "--no-cache", "--precision", "fp32",
        "--out", tmp_path / "run2", "--quiet",
    )  # fmt: skip
    assert again.code == 0, again.err
    assert cli("cache", "list", "--json").json()["entries"] == []
    config = json.loads((tmp_path / "run2" / "model" / "config.json").read_text())
    assert config["settings"]["cache"] is False and config["settings"]["precision"] == "fp32"
    predicted = cli("predict", run, "win a free prize now", "--precision", "bf16", "--json")
    assert predicted.code == 0, predicted.err


def test_bad_cache_settings_get_one_line(cli: Callable[..., CliResult], csv_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("AJUSTE_CACHE_SIZE", "lots")
    result = cli("cache", "list")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "AJUSTE_CACHE_SIZE" in result.err and "4GB" in result.err
    refused = cli("train", "--data", csv_file, "--model", "bag", "--no-cache", "--epochs", "1")
    assert refused.code == 2 and "--no-cache applies to" in refused.err
    monkeypatch.delenv("AJUSTE_CACHE_SIZE")
    monkeypatch.setenv("AJUSTE_CACHE_DIR", str(csv_file))
    for action in ("list", "clear"):
        result = cli("cache", action)
        assert result.code == 2 and "is a file" in result.err and "AJUSTE_CACHE_DIR" in result.err
    assert csv_file.stat().st_size > 0


def test_threads_follow_physical_cores_or_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from ajuste.runtime import configure_threads, physical_cores

    before = torch.get_num_threads()
    try:
        cores = physical_cores()
        assert 1 <= cores <= (torch.multiprocessing.cpu_count() or cores)
        monkeypatch.delenv("AJUSTE_THREADS", raising=False)
        assert configure_threads() == cores == torch.get_num_threads()
        monkeypatch.setenv("AJUSTE_THREADS", "1")
        assert configure_threads() == 1 == torch.get_num_threads()
        monkeypatch.setenv("AJUSTE_THREADS", "many")
        with pytest.raises(Exception, match="AJUSTE_THREADS must be a whole number"):
            configure_threads()
    finally:
        torch.set_num_threads(before)


def test_evaluation_reuses_the_cached_states_of_known_texts(bert3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_frozen_passes(monkeypatch)
    cached = _fit(bert3, "last_block", use_cache=True)
    plain = _fit(bert3, "last_block", use_cache=False)
    assert len(calls) == 2
    scores = cached.evaluate(*VAL)  # the validation texts: their states are in the cache
    new_texts = cached.evaluate(*make_texts(20, seed=11))  # unknown texts: the whole model runs, nothing is cached
    assert len(calls) == 2 and len(cache.entries()) == 2
    assert scores["loss"] == pytest.approx(plain.evaluate(*VAL)["loss"], rel=1e-4)
    assert new_texts["accuracy"] == plain.evaluate(*make_texts(20, seed=11))["accuracy"]


def test_lora_layers_is_checked(bert3: Path) -> None:
    from ajuste.errors import AjusteError

    with pytest.raises(Exception, match="lora_layers applies to trainable 'lora' only"):
        PretrainedSettings(checkpoint=str(bert3), trainable="last_block", lora_layers=1)
    with pytest.raises(AjusteError, match="lora_layers: 4 asks for more blocks than the 3"):
        _fit(bert3, "lora", use_cache=True, lora_layers=4)
    model = _fit(bert3, "lora", use_cache=True, lora_layers=2)
    assert model.module_ is not None
    names = [name for name, _ in model.module_.named_parameters() if "lora_" in name]
    adapted = {name.split(".layer.")[1].split(".")[0] for name in names}
    assert adapted == {"1", "2"}  # the last two of three blocks, none below


@pytest.mark.parametrize(
    ("memory", "disk", "counted"),
    [("1GB", "1GB", True), ("1KB", "1GB", True), ("1GB", "0", True), ("1KB", "0", False)],
)
def test_a_fill_counts_as_one_time_work_when_the_entry_is_kept_somewhere(
    memory: str, disk: str, counted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajuste.models.boundary import BoundaryStates

    monkeypatch.setenv("AJUSTE_CACHE_MEMORY", memory)
    monkeypatch.setenv("AJUSTE_CACHE_SIZE", disk)
    before = cache.filling_seconds()
    cache.put("fill-test", BoundaryStates(torch.zeros(100, 64)), {}, seconds=5.0)  # 25.6 KB
    assert cache.filling_seconds() - before == (5.0 if counted else 0.0)
    assert (cache.get("fill-test") is not None) == counted, "what is counted can be read back, and only that"


@pytest.mark.parametrize(("variable", "default"), [("AJUSTE_CACHE_SIZE", "4GB"), ("AJUSTE_CACHE_MEMORY", "2GB")])
def test_a_bad_cap_offers_its_own_default(variable: str, default: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ajuste.models.boundary import BoundaryStates

    monkeypatch.setenv(variable, "lots")
    with pytest.raises(AjusteError, match=f"{variable} must be a size.*Set {variable}={default} \\(its default\\)"):
        cache.put("cap-test", BoundaryStates(torch.zeros(4, 8)), {})


def test_a_cache_folder_that_is_a_file_is_warned_of_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ajuste.models.boundary import BoundaryStates

    blocking = tmp_path / "cache"
    blocking.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("AJUSTE_CACHE_DIR", str(blocking))
    with caplog.at_level("INFO", logger="ajuste.cache"):
        cache.put("first", BoundaryStates(torch.zeros(4, 8)), {})
        cache.put("second", BoundaryStates(torch.zeros(4, 8)), {})
    failures = [r for r in caplog.records if "cannot write the boundary cache" in r.getMessage()]
    assert [r.levelname for r in failures] == ["WARNING", "INFO"], "the second failure is not warned of again"
    assert "(a file, not a folder)" in failures[0].getMessage() and "AJUSTE_CACHE_DIR" in failures[0].getMessage()
    assert cache.get("second") is not None, "kept in memory: the run goes on without the disk"
    assert blocking.read_text(encoding="utf-8") == "not a folder", "the file is left as it was"


def test_cache_list_names_what_each_entry_holds(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajuste.models.boundary import BoundaryStates

    monkeypatch.setenv("AJUSTE_CACHE_DIR", str(tmp_path / "cache"))
    teacher = {"kind": "teacher probabilities", "teacher": str(tmp_path / "runs" / "spam-minilm"), "texts": 3}
    cache.put("teacher-entry", BoundaryStates(torch.ones(3, 2)), teacher)
    cache.put("vectors-entry", BoundaryStates(torch.ones(5, 4)), {"kind": "piece vectors", "encoder": "/m/minilm"})
    monkeypatch.setenv("COLUMNS", "200")  # the table whole, not cut to a narrow terminal
    lines = cli("cache", "list").out.splitlines()
    assert lines[0].split()[3:5] == ["model", "what"]
    assert any("spam-minilm" in line and "teacher probabilities" in line for line in lines)
    assert any("minilm" in line and "piece vectors" in line for line in lines)


def test_cache_list_fits_a_pipe_without_cutting_a_value(cli: Callable[..., CliResult], monkeypatch) -> None:
    # a pipe or a log is 80 columns wide: the table used to cut every column to "tiny-ber…", "precisi…", "109.6 …"
    from ajuste.models.boundary import BoundaryStates

    monkeypatch.setenv("COLUMNS", "80")
    states = BoundaryStates(torch.zeros(3, 4))
    long_name = "sentence-transformers-all-MiniLM-L6-v2-finetuned"
    cache.put("b" * 32, states, {"model": long_name, "boundary": "before block 5", "texts": 5320,
                                 "max_length": 256, "precision": "bf16"})  # fmt: skip
    cache.put("a" * 32, states, {"kind": "teacher probabilities", "teacher": "/runs/train-ag-news", "texts": 5320})
    shown = cli("cache", "list")
    assert shown.code == 0, shown.err
    lines = shown.out.split(" entries, ")[0].splitlines()[:-1]  # the table, without the line of totals
    assert max(len(line) for line in lines) <= 80 and "…" not in shown.out, shown.out
    for value in ("before block 5", "teacher", "5320", "256", "bf16", "bbbbbb", "2 entries"):
        assert value in shown.out, value
    # the model's name and what was kept fold onto the lines below their row rather than being cut
    for column, whole in (("model", (long_name, "train-ag-news")), ("what", ("teacher probabilities",))):
        start = lines[0].index(column)
        folded = "".join(line[start:].split("  ")[0].strip() for line in lines[1:] if len(line) > start)
        assert all(value.replace(" ", "") in folded for value in whole), (column, folded)

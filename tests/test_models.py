"""Model families: bag, gpt from scratch, pretrained checkpoints (tiny BERT / GPT-2) and the bundled MiniLM.

Structure tests build modules through the family interface (no training); behaviour tests train for one
epoch on small generated data.
"""

from __future__ import annotations

import socket
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import ajuste
from ajuste.errors import ConfigError
from ajuste.models import make_family
from ajuste.models.bag import BagFamily, BagOfEmbeddings
from ajuste.models.gpt import GPTFamily
from ajuste.models.pretrained import PretrainedFamily, minilm_path
from ajuste.models.settings import BagSettings, GPTSettings, PretrainedSettings, parse_trainable
from ajuste.models.transformer import BackboneClassifier, find_blocks, freeze_below, pool
from ajuste.tokenize.bpe import END_OF_TEXT
from ajuste.tokenize.words import WordVocabulary
from ajuste.validation import model_settings
from tests.conftest import make_texts

TEXTS, LABELS = make_texts(60, seed=3)
SHORT = "win cash"
LONG = "see you at lunch later tonight mum, thanks for the dinner and the meeting it is ok love"


def family_for(model: str, **settings: Any) -> Any:
    """A family with its preprocessing fitted on the shared texts, as ``fit`` does before building."""
    values = {"family": model, **settings} if model in ("bag", "gpt", "minilm") else {"checkpoint": model, **settings}
    values.setdefault("family", "pretrained")
    family = make_family(model_settings(values))
    family.fit_preprocessing(TEXTS)
    return family


def trainable_names(module: nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def all_names(module: nn.Module) -> set[str]:
    return {name for name, _ in module.named_parameters()}


def with_prefixes(names: set[str], *prefixes: str) -> set[str]:
    return {name for name in names if name.startswith(prefixes)}


def logits_alone_and_padded(family: Any, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The short text's logits alone, and in a batch where it is right-padded to the long text's length."""
    short, long = family.encode([SHORT, LONG])
    assert len(long) > len(short) + 3, "the batch must actually pad the short text"
    module.eval()
    with torch.no_grad():
        alone = module(**family.collate([short]))[0]
        padded = module(**family.collate([short, long]))[0]
    return alone, padded


# -- bag ------------------------------------------------------------------------------------------


def test_a_bag_vocabulary_with_nothing_in_it_is_refused() -> None:
    """min_freq above every count, and no n-gram: every text was the unknown word, one answer for all."""
    texts = [f"w{i} z{i}" for i in range(20)]
    with pytest.raises(
        ConfigError, match=r"bag vocabulary .* is empty: no word seen at least min_freq=3 times.*Lower min_freq\.$"
    ):
        BagFamily(BagSettings(min_freq=3, ngrams=1)).fit_preprocessing(texts)
    BagFamily(BagSettings(min_freq=3, ngrams=2)).fit_preprocessing(texts)  # the word pairs still tell texts apart


def test_bag_module_is_mean_embedding_bag_then_linear_with_seed_text_init() -> None:
    family = family_for("bag", embed_dim=24, buckets=500)
    torch.manual_seed(0)
    module = family.build(3)
    assert isinstance(module, BagOfEmbeddings)
    assert isinstance(module.embedding, nn.EmbeddingBag) and module.embedding.mode == "mean"
    assert module.embedding.weight.shape == (family.vocabulary.size, 24)
    assert isinstance(module.fc, nn.Linear) and (module.fc.in_features, module.fc.out_features) == (24, 3)
    for weight in (module.embedding.weight.detach(), module.fc.weight.detach()):
        assert weight.abs().max() <= 0.5
        assert weight.abs().max() > 0.45  # uniform over the whole ±0.5 range, not a default small init
        assert abs(float(weight.mean())) < 0.1
    assert torch.equal(module.fc.bias, torch.zeros(3))


def test_bag_forward_is_the_mean_of_the_text_embeddings() -> None:
    family = family_for("bag", embed_dim=8, ngrams=1)
    module = family.build(2)
    ids = family.encode(["free prize now"])[0]
    with torch.no_grad():
        logits = module(**family.collate([ids]))[0]
        expected = module.fc(module.embedding.weight[ids].mean(dim=0))
    torch.testing.assert_close(logits, expected)


def test_bag_vocabulary_counts_words_and_respects_min_freq() -> None:
    vocabulary = WordVocabulary.fit(["a b b", "b c"], min_freq=2, ngrams=1, buckets=10)
    assert vocabulary.words == ("b",)
    assert vocabulary.encode("b a zzz") == [1, 0, 0]  # unknown words map to id 0
    assert vocabulary.size == 2  # no n-gram buckets with ngrams=1


def test_bag_ngrams_are_hashed_with_crc32_stable_across_processes() -> None:
    vocabulary = WordVocabulary.fit(["free prize now", "see you"], min_freq=1, ngrams=3, buckets=97)
    ids = vocabulary.encode("Free prize NOW")
    offset = 1 + len(vocabulary.words)
    expected_grams = [
        offset + zlib.crc32(gram.encode("utf-8")) % 97 for gram in ("free prize", "prize now", "free prize now")
    ]
    assert ids[:3] == [vocabulary._index[w] for w in ("free", "prize", "now")]
    assert ids[3:] == expected_grams
    assert all(offset <= i < vocabulary.size for i in ids[3:])
    again = WordVocabulary.from_dict(vocabulary.to_dict())
    assert again.encode("free prize now") == ids


def test_bag_max_length_truncates_ids() -> None:
    family = family_for("bag", max_length=3)
    assert all(len(ids) <= 3 for ids in family.encode(TEXTS))


def test_bag_handles_empty_texts_in_training_and_prediction() -> None:
    texts, labels = make_texts(40, seed=1)
    model = ajuste.build("bag", embed_dim=8, buckets=100)
    model.compile(lr=0.05)
    model.fit([*texts, "", "  "], [*labels, "ham", "spam"], epochs=1, verbose=False)
    predictions = model.predict(["", "free prize", ""])
    assert len(predictions) == 3
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(predictions.probabilities[0], predictions.probabilities[2])


# -- gpt from scratch -----------------------------------------------------------------------------


def test_gpt_config_is_built_from_the_hyperparameters() -> None:
    from transformers import GPT2Model

    settings = {
        "num_layers": 3,
        "num_heads": 4,
        "emb_dim": 32,
        "context_length": 48,
        "dropout": 0.2,
        "activation": "relu",
        "vocab_size": 320,
    }
    family = family_for("gpt", **settings)
    module = family.build(3)
    assert isinstance(module, BackboneClassifier) and isinstance(module.backbone, GPT2Model)
    config = module.backbone.config
    assert (config.n_layer, config.n_head, config.n_embd, config.n_positions) == (3, 4, 32, 48)
    assert config.activation_function == "relu"
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.2
    assert config.vocab_size == family.tokenizer.get_vocab_size() <= 320
    assert len(module.backbone.h) == 3
    assert module.backbone.wte.weight.shape == (config.vocab_size, 32)
    assert module.backbone.wpe.weight.shape == (48, 32)
    assert (module.head.in_features, module.head.out_features) == (32, 3)
    assert module.pooling == "last"


def test_gpt_bpe_tokenizer_learns_from_training_texts_only() -> None:
    texts, labels = make_texts(60, seed=2)
    val_texts = [f"xylophonist {t}" for t in texts[:10]]
    model = ajuste.build("gpt", num_layers=1, num_heads=2, emb_dim=16, vocab_size=2000)
    model.compile()
    model.fit(texts, labels, validation_data=(val_texts, labels[:10]), epochs=1, verbose=False)
    tokenizer = model.family_.tokenizer
    assert tokenizer.token_to_id(END_OF_TEXT) == 0
    # a word frequent in training is one token; a word only in validation is spelled out in pieces
    assert len(tokenizer.encode("prize").tokens) == 1
    assert tokenizer.token_to_id("Ġxylophonist") is None
    assert len(tokenizer.encode("xylophonist").tokens) > 3


def test_gpt_texts_end_with_end_of_text_and_fit_the_context() -> None:
    family = GPTFamily(GPTSettings(num_layers=1, num_heads=2, emb_dim=16, context_length=8))
    family.fit_preprocessing([LONG, *TEXTS])
    assert family.max_length == 8  # the longest training text is longer than the context
    encoded = family.encode([LONG, "", SHORT])
    assert [len(ids) for ids in encoded] == [8, 1, len(family.tokenizer.encode(SHORT).ids) + 1]
    assert all(ids[-1] == family.end_id for ids in encoded)
    torch.manual_seed(0)
    module = family.build(2)
    with torch.no_grad():
        assert module(**family.collate(encoded)).shape == (3, 2)


def test_gpt_max_length_defaults_to_the_longest_training_text() -> None:
    family = family_for("gpt", num_layers=1, num_heads=2, emb_dim=16, context_length=256)
    longest = max(len(ids) for ids in family.encode(TEXTS))
    assert family.max_length == longest < 256


def test_gpt_max_length_above_context_length_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot exceed context_length"):
        ajuste.build("gpt", context_length=16, max_length=32)
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        ajuste.build("gpt", num_heads=3, emb_dim=32)


# -- pooling --------------------------------------------------------------------------------------


def test_pool_functions_on_right_padded_hidden_states() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(pool(hidden, mask, "cls"), hidden[:, 0])
    torch.testing.assert_close(pool(hidden, mask, "last"), torch.stack([hidden[0, 1], hidden[1, 3]]))
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)]))


@pytest.mark.parametrize("pooling", ["auto", "cls", "mean", "pooler"])
def test_encoder_pooling_is_unchanged_by_right_padding(tiny_bert: Path, pooling: str) -> None:
    family = family_for(str(tiny_bert), pooling=pooling, trainable="all")
    module = family.build(2)
    assert module.pooling == ("pooler" if pooling == "auto" else pooling)  # BERT has a pooler: auto uses it
    alone, padded = logits_alone_and_padded(family, module)
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("source", ["gpt", "tiny_gpt2"])
def test_decoder_pools_the_last_real_token_whatever_the_padding(source: str, request: pytest.FixtureRequest) -> None:
    if source == "gpt":
        family = family_for("gpt", num_layers=2, num_heads=2, emb_dim=32, dropout=0.0)
    else:
        family = family_for(str(request.getfixturevalue("tiny_gpt2")), trainable="all")
    torch.manual_seed(0)
    module = family.build(2)
    assert module.pooling == "last"
    alone, padded = logits_alone_and_padded(family, module)
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)
    # and it is the last real token's hidden state that reaches the head
    short = family.encode([SHORT])[0]
    with torch.no_grad():
        hidden = module.backbone(**family.collate([short])).last_hidden_state
        torch.testing.assert_close(alone, module.head(hidden[0, len(short) - 1]))
        assert not torch.allclose(alone, module.head(hidden[0, 0]))


def test_decoder_refuses_pooler_pooling(tiny_gpt2: Path) -> None:
    with pytest.raises(ConfigError, match="pooler"):  # by build, from the checkpoint's config
        ajuste.build(str(tiny_gpt2), pooling="pooler")


def test_pretrained_decoder_pads_with_end_of_text(tiny_gpt2: Path) -> None:
    family = family_for(str(tiny_gpt2))
    assert family.tokenizer.pad_token_id is None
    assert family.pad_id == family.tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    ids, mask = family.collate(family.encode([SHORT, LONG])).values()
    short_length = int(mask[0].sum())
    assert (ids[0, short_length:] == family.pad_id).all()


# -- pretrained: head and trainable policies ------------------------------------------------------

BERT_LAYERS = ("backbone.encoder.layer.0.", "backbone.encoder.layer.1.")
GPT2_BLOCKS = ("backbone.h.0.", "backbone.h.1.")


def expected_trainable(names: set[str], kind: str, policy: str) -> set[str]:
    blocks, after = (BERT_LAYERS, "backbone.pooler.") if kind == "bert" else (GPT2_BLOCKS, "backbone.ln_f.")
    if policy == "head":
        return with_prefixes(names, "head.")
    if policy == "last_block":
        return with_prefixes(names, "head.", after, blocks[1])
    if policy == "last_n:2":
        return with_prefixes(names, "head.", after, *blocks)
    return names


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
@pytest.mark.parametrize("policy", ["head", "last_block", "last_n:2", "all"])
def test_trainable_policy_gives_exactly_the_expected_parameters(
    kind: str, policy: str, request: pytest.FixtureRequest
) -> None:
    checkpoint = request.getfixturevalue(f"tiny_{kind}")
    family = family_for(str(checkpoint), trainable=policy)
    module = family.build(3)
    names = all_names(module)
    embeddings = "backbone.embeddings." if kind == "bert" else "backbone.wte."
    assert with_prefixes(names, embeddings) and with_prefixes(names, *BERT_LAYERS if kind == "bert" else GPT2_BLOCKS)
    assert trainable_names(module) == expected_trainable(names, kind, policy)
    assert (module.head.out_features, module.head.in_features) == (3, 32)


def test_head_is_replaced_by_one_output_per_class(tiny_bert: Path) -> None:
    texts, labels = make_texts(30, seed=4, classes=("ham", "spam", "other"))
    model = ajuste.build(str(tiny_bert), trainable="head")
    model.compile(lr=1e-2)
    model.fit(texts, labels, epochs=1, batch_size=16, verbose=False)
    assert model.module_.head.out_features == 3
    assert model.predict(["free prize"]).probabilities.shape == (1, 3)
    assert not any("cls." in name or "classifier" in name for name in all_names(model.module_))


def test_lora_trains_adapters_and_head_only(tiny_bert: Path) -> None:
    from peft import PeftModel

    family = family_for(str(tiny_bert), trainable="lora", lora_rank=4)
    module = family.build(2)
    assert isinstance(module.backbone, PeftModel)
    trainable = trainable_names(module)
    adapters = {name for name in all_names(module) if "lora_" in name}
    assert adapters, "LoRA adds adapter weights"
    assert trainable == adapters | {"head.weight", "head.bias"}
    lora_a = next(p for n, p in module.named_parameters() if "lora_A" in n)
    assert lora_a.shape[0] == 4  # the rank


def test_lora_on_gpt2_conv1d_layers_raises_no_warning(tiny_gpt2: Path) -> None:
    # GPT-2 keeps its attention projections in Conv1D (transposed) layers: LoRA must be told so.
    family = family_for(str(tiny_gpt2), trainable="lora")
    module = family.build(2)
    assert any("lora_" in name for name in trainable_names(module))


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize(
    ("kind", "policy"),
    [
        ("bert", "head"),
        ("bert", "last_block"),
        ("bert", "lora"),
        ("bert", "all"),
        ("gpt2", "last_n:2"),
        ("gpt2", "all"),
    ],
)
def test_fit_changes_trainable_weights_only(kind: str, policy: str, request: pytest.FixtureRequest) -> None:
    checkpoint = request.getfixturevalue(f"tiny_{kind}")
    model = ajuste.build(str(checkpoint), trainable=policy)
    model.compile(lr=1e-2)
    before: dict[str, torch.Tensor] = {}

    class Snapshot(ajuste.Callback):
        def on_train_begin(self, logs: dict[str, Any]) -> None:
            before.update(snapshot(self.model.module_))

    history = model.fit(TEXTS, LABELS, epochs=2, batch_size=16, callbacks=[Snapshot()], verbose=False)
    assert len(history) == 2 and all(np.isfinite(row["loss"]) for row in history.epochs)
    after = snapshot(model.module_)
    trainable = trainable_names(model.module_)
    changed = {name for name in after if not torch.equal(before[name], after[name])}
    assert changed, "training changed nothing"
    assert changed <= trainable
    assert {"head.weight", "head.bias"} <= changed
    if policy == "all":
        assert len(changed) > len(trainable) // 2
    assert model.predict(TEXTS[:3]).probabilities.shape == (3, 2)


@pytest.mark.parametrize(
    ("kind", "frozen", "training"), [("bert", BERT_LAYERS[0], BERT_LAYERS[1]), ("gpt2", GPT2_BLOCKS[0], GPT2_BLOCKS[1])]
)
def test_frozen_modules_stay_in_eval_mode_during_training(
    kind: str, frozen: str, training: str, request: pytest.FixtureRequest
) -> None:
    checkpoint = request.getfixturevalue(f"tiny_{kind}")
    model = ajuste.build(str(checkpoint), trainable="last_block")
    model.compile(lr=1e-3)
    seen: list[tuple[bool, bool, bool, bool]] = []

    class Modes(ajuste.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any]) -> None:
            modules = dict(self.model.module_.named_modules())
            frozen_modes = [m.training for n, m in modules.items() if (n + ".").startswith(frozen)]
            trained_modes = [m.training for n, m in modules.items() if (n + ".").startswith(training)]
            embeddings = [
                m.training
                for n, m in modules.items()
                if n.startswith(("backbone.embeddings", "backbone.w", "backbone.drop"))
            ]
            assert frozen_modes and trained_modes and embeddings
            seen.append((any(frozen_modes), all(trained_modes), any(embeddings), self.model.module_.head.training))

    # two epochs with validation in between: evaluation must not leave the frozen part in train mode
    val = make_texts(10, seed=9)
    model.fit(TEXTS, LABELS, validation_data=val, epochs=2, batch_size=16, callbacks=[Modes()], verbose=False)
    assert len(seen) == 8 and all(s == (False, True, False, True) for s in seen)
    model.module_.train()
    assert not dict(model.module_.named_modules())[frozen.rstrip(".")].training


def test_find_blocks_and_freeze_below_on_bert(tiny_bert: Path) -> None:
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(tiny_bert)
    path, blocks = find_blocks(backbone)
    assert path == "encoder.layer" and len(blocks) == 2
    frozen = freeze_below(backbone, 1)
    assert frozen == [backbone.embeddings, blocks[0]]
    assert not any(p.requires_grad for p in backbone.embeddings.parameters())
    assert all(p.requires_grad for p in blocks[1].parameters())
    assert all(p.requires_grad for p in backbone.pooler.parameters())


def test_parse_trainable() -> None:
    assert [parse_trainable(p) for p in ("head", "last_block", "last_n:3", "all", "lora")] == [0, 1, 3, None, None]
    with pytest.raises(ConfigError, match="trainable"):
        ajuste.build("minilm", trainable="last_n:0")
    with pytest.raises(ConfigError, match="trainable"):
        ajuste.build("minilm", trainable="some")


def refuse_weight_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModel

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights were loaded before the settings were checked")

    monkeypatch.setattr(AutoModel, "from_pretrained", fail)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_length": 65}, r"model\.max_length: 65 exceeds the checkpoint's context \(64\)"),
        ({"trainable": "last_n:3"}, "model.trainable: last_n:3 asks for more blocks than the 2"),
    ],
)
@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_settings_that_do_not_fit_the_checkpoint_are_refused_before_building(
    kind: str, settings: dict[str, Any], message: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = request.getfixturevalue(f"tiny_{kind}")
    refuse_weight_loading(monkeypatch)
    with pytest.raises(ConfigError, match=message):  # by build itself, from the checkpoint's config
        ajuste.build(str(checkpoint), **settings)


def test_pretrained_max_length_at_the_context_is_accepted(tiny_bert: Path) -> None:
    family = family_for(str(tiny_bert), max_length=64)
    assert family.max_length == 64
    assert max(len(ids) for ids in family.encode([" ".join(["word"] * 200)])) == 64


def test_pretrained_max_length_defaults_to_the_longest_training_text(tiny_bert: Path) -> None:
    family = family_for(str(tiny_bert))
    assert family.max_length == max(len(ids) for ids in family.encode(TEXTS)) < 64


# -- families are chosen by settings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "family_type"),
    [(BagSettings(), BagFamily), (GPTSettings(), GPTFamily), (PretrainedSettings(family="minilm"), PretrainedFamily)],
)
def test_make_family(settings: Any, family_type: type) -> None:
    assert isinstance(make_family(settings), family_type)


def test_build_routes_names_to_families(tiny_bert: Path) -> None:
    assert isinstance(ajuste.build().settings, BagSettings)
    assert isinstance(ajuste.build("gpt", num_layers=1).settings, GPTSettings)
    settings = ajuste.build(str(tiny_bert), trainable="head").settings
    assert isinstance(settings, PretrainedSettings) and settings.checkpoint == str(tiny_bert)
    assert ajuste.build(tiny_bert, trainable="head").settings == settings, "a pathlib.Path names the same folder"
    with pytest.raises(ajuste.ConfigError, match="last_n:9 asks for more blocks than the 6 it has"):
        ajuste.build("minilm", trainable="last_n:9")  # the bundled checkpoint is checked at build as any other
    assert all(name in ajuste.__all__ for name in ("DataError", "RunFolderError", "NotFittedError", "ConfigError"))
    with pytest.raises(ConfigError, match="embed_dim"):
        ajuste.build("gpt", embed_dim=3)


# -- the bundled MiniLM ---------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_minilm_loads_offline_from_the_package_and_predicts(no_network: None) -> None:
    texts, labels = make_texts(16, seed=5)
    model = ajuste.build("minilm", trainable="head")
    model.compile(lr=1e-2)
    model.fit(texts, labels, epochs=1, batch_size=16, verbose=False)
    predictions = model.predict(["WIN a free prize now", "see you at lunch"])
    assert len(predictions) == 2 and set(predictions.labels) <= {"ham", "spam"}
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    described = model.describe()
    assert described["pooling"] == "mean"  # from the sentence-transformers pooling config
    assert Path(described["source"]) == minilm_path()
    assert described["model_type"] == "bert" and described["blocks"] == 6


def test_minilm_refuses_a_checkpoint() -> None:
    with pytest.raises(ConfigError, match="bundled"):
        ajuste.build("minilm", checkpoint="elsewhere")

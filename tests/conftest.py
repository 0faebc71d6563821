"""Shared fixtures: small generated data, tiny checkpoints built and saved in the test, the CLI in-process."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ajuste.cli.main import main

# As the command line does: the tokenizers library's threads stay off in the test processes that fork workers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

_SPAM = ["win", "free", "prize", "claim", "cash", "urgent", "call", "txt", "offer", "winner", "reward", "now"]
_HAM = ["see", "you", "lunch", "later", "mum", "home", "tonight", "thanks", "meeting", "dinner", "ok", "love"]
_NEUTRAL = ["the", "a", "to", "and", "is", "it", "for", "on", "at", "with"]


def make_texts(n: int, seed: int = 0, classes: tuple[str, ...] = ("ham", "spam")) -> tuple[list[str], list[str]]:
    """``n`` distinct short texts whose words give away their class (learnable in a few epochs)."""
    rng = random.Random(seed)
    vocab = {"ham": _HAM, "spam": _SPAM, "other": ["rain", "sun", "cloud", "wind", "snow", "storm"]}
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        label = classes[len(texts) % len(classes)]
        words = rng.sample(vocab[label], 3) + rng.sample(_NEUTRAL, 2)
        rng.shuffle(words)
        text = " ".join(words) + f" {rng.randint(0, 9999)}"
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
    return texts, labels


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty freeze-boundary cache, on disk and in memory: none writes to ~/.cache."""
    from ajuste import cache

    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("AJUSTE_CACHE_DIR", str(folder))
    for variable in ("AJUSTE_CACHE_SIZE", "AJUSTE_CACHE_MEMORY"):
        monkeypatch.delenv(variable, raising=False)
    cache.clear()
    return folder


@pytest.fixture
def quiet_optuna() -> Iterator[None]:
    """Optuna's log at warnings only, for the tests that run studies (``pytest.mark.usefixtures``)."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(previous)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of tiny models: models of a few hundred weights gain nothing from threads,
    and on a busy machine (the tests share two cores with other work) OpenMP's waiting threads make every epoch
    several times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def small_data() -> tuple[list[str], list[str]]:
    return make_texts(120)


def write_csv(
    path: Path, texts: list[str], labels: list[str], text_col: str = "text", label_col: str = "label"
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([text_col, label_col])
        writer.writerows(zip(texts, labels))
    return path


def predict_in_a_new_process(run: Path, text: str) -> tuple[bool, int, str]:
    """``ajuste predict RUN TEXT --json`` in a new Python process: whether it imported torch, its exit code, and
    everything it wrote."""
    code = (
        "import sys\n"
        "from ajuste.cli.main import main\n"
        f"code = main(['predict', {str(run)!r}, {text!r}, '--json'])\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    last = (result.stdout.strip().splitlines() or [""])[-1]
    exit_code = int(last.split()[-1]) if last.split() and last.split()[-1].lstrip("-").isdigit() else -1
    return last.startswith("torch imported"), exit_code, result.stdout + result.stderr


def write_jsonl(path: Path, texts: list[str], labels: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels)), "utf-8")
    return path


def deny_reading(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading ``path`` fail as it does without read permission: for real where permissions bind,
    else (root reads anything) by making the read itself raise the PermissionError the system would."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real = Path.read_bytes

    def refused(self: Path) -> bytes:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refused)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    texts, labels = make_texts(120)
    return write_csv(tmp_path / "data.csv", texts, labels)


@pytest.fixture(scope="session")
def sms_dir() -> Path:
    """The shared copy of the SMS Spam Collection (../shared/datasets)."""
    if not (SHARED_DATASETS / "sms_spam" / "SMSSpamCollection").is_file():
        pytest.fail(f"the shared datasets are missing: expected {SHARED_DATASETS}/sms_spam/SMSSpamCollection")
    return SHARED_DATASETS


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out.strip().splitlines()[-1])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``ajuste ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own exits
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def _corpus() -> list[str]:
    texts, _ = make_texts(300, seed=7, classes=("ham", "spam", "other"))
    return texts


def _seeded(build: Callable[[], Any]) -> Any:
    """A tiny model's random weights from a fixed seed, whatever ran before: the tests that use it (an int8
    export within a point of fp32 on 1,000 held-out texts) must not depend on which tests drew random numbers first."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with its own WordPiece tokenizer, saved as a checkpoint folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    # The vocabulary is written out, not learnt by tokenizers' WordPiece trainer: that trainer breaks ties between
    # equally frequent pairs in hash order, so its vocabulary (and every model trained on it) changed from run to run.
    words = Counter(word for text in _corpus() for word in text.lower().split())
    letters = sorted({letter for word in words for letter in word})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [*specials, *letters, *(f"##{letter}" for letter in letters)]
    frequent = [word for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])) if word not in pieces]
    vocab = {token: i for i, token in enumerate([*pieces, *frequent][:200])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=fast.pad_token_id,
    )
    _seeded(lambda: BertModel(config)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide GPT-2 language model with a byte-level BPE tokenizer, saved as a checkpoint folder."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from ajuste.tokenize.bpe import END_OF_TEXT, train_bpe

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    fast = GPT2TokenizerFast(
        tokenizer_object=train_bpe(_corpus(), 400),
        eos_token=END_OF_TEXT,
        bos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=64,
    )
    fast.save_pretrained(folder)
    eot = fast.convert_tokens_to_ids(END_OF_TEXT)
    config = GPT2Config(
        vocab_size=len(fast), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot
    )
    _seeded(lambda: GPT2LMHeadModel(config)).save_pretrained(folder)
    return folder


@dataclass
class Trainings:
    """What the classifiers of a test trained on (and validated on) and evaluated, in order."""

    fits: list[tuple[Any, Any]]
    evaluated: list[Any]


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> Trainings:
    """Every ``fit_from`` (its data and validation data) and ``evaluate`` (its data) of any classifier, recorded."""
    from ajuste.training.classifier import TextClassifier

    found = Trainings([], [])
    original_fit, original_evaluate = TextClassifier.fit_from, TextClassifier.evaluate

    def fit_from(self: TextClassifier, data: Any, *args: Any, **kwargs: Any) -> Any:
        found.fits.append((data, kwargs.get("validation_data")))
        return original_fit(self, data, *args, **kwargs)

    def evaluate(self: TextClassifier, data: Any, *args: Any, **kwargs: Any) -> Any:
        found.evaluated.append(data)
        return original_evaluate(self, data, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "fit_from", fit_from)
    monkeypatch.setattr(TextClassifier, "evaluate", evaluate)
    return found

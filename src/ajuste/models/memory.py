"""Whether a model fits in this machine's memory, estimated from its settings before any weight exists.

A model too large for the machine would otherwise be found out by the allocator: a long freeze while
the system swaps, then the process killed without a word. The estimate counts the parameters a family's
settings imply and what each costs — 16 bytes to train (fp32 weights, gradients and AdamW's two
moments), 4 to predict — and leaves out activations: it is a lower bound, so a refusal is certain to
be right, and a model that passes may still need more.
"""

from __future__ import annotations

import os
from pathlib import Path

from ajuste.errors import ConfigError
from ajuste.models.settings import BagSettings, GPTSettings

__all__ = ["BYTES_TO_PREDICT", "BYTES_TO_TRAIN", "available_memory", "check_memory", "parameter_count"]

#: fp32 weights, their gradients and AdamW's two moments: 4 + 4 + 4 + 4 bytes per parameter.
BYTES_TO_TRAIN = 16
#: fp32 weights alone.
BYTES_TO_PREDICT = 4

_SMALLER = {
    "bag": "Use a smaller --buckets or --embed-dim (or --ngrams 1, which needs no buckets)",
    "gpt": "Use a smaller --emb-dim, --num-layers or --vocab-size",
}


def parameter_count(settings: BagSettings | GPTSettings, vocabulary_rows: int, num_labels: int) -> int:
    """The parameters of the model that ``settings`` build, from the size of its fitted vocabulary.

    ``vocabulary_rows``: embedding rows (bag: unknown word, words and n-gram buckets; gpt: BPE tokens).
    """
    if isinstance(settings, BagSettings):
        width = settings.embed_dim
        body = vocabulary_rows * width
    else:
        width = settings.emb_dim
        # GPT-2: token and position embeddings; per block two layer norms (2d each), attention
        # (qkv d×3d + 3d, projection d×d + d) and the feed-forward layer (d×4d + 4d, 4d×d + d),
        # which is 12d² + 13d; a final layer norm.
        block = 12 * width * width + 13 * width
        body = (vocabulary_rows + settings.context_length) * width + settings.num_layers * block + 2 * width
    head = width * num_labels + num_labels
    return body + head


def available_memory() -> int | None:
    """Bytes of memory this machine can still give without swapping; ``None`` where it cannot tell."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # the free pages, else all of them
        try:
            return int(os.sysconf(pages)) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            continue
    return None


def _gigabytes(count: float) -> str:
    value = count / 1e9
    return f"{value:.0f} GB" if value >= 10 else f"{value:.1f} GB"


def check_memory(
    settings: BagSettings | GPTSettings, vocabulary_rows: int, num_labels: int, *, training: bool = True
) -> None:
    """Refuse, before allocating, a model whose weights (and, to train, gradients and optimizer state)
    alone need more memory than this machine has available."""
    available = available_memory()
    if available is None:  # nothing to compare with: the allocator will have the last word
        return
    parameters = parameter_count(settings, vocabulary_rows, num_labels)
    needed = parameters * (BYTES_TO_TRAIN if training else BYTES_TO_PREDICT)
    if needed <= available:
        return
    what = "weights, gradients and optimizer state" if training else "weights"
    raise ConfigError(
        f"a {settings.family} model this large does not fit in memory",
        expected=f"at most {_gigabytes(available)}, the memory this machine has available",
        found=f"about {_gigabytes(needed)} needed for the {what} of {parameters:,} parameters",
        fix=f"{_SMALLER[settings.family]}, or use a machine with more memory.",
    )

"""Whether a model fits in this machine's memory, estimated from its settings before any weight exists.

A model too large for the machine would otherwise be found out by the allocator: a long freeze while
the system swaps, then the process killed without a word. Each family counts the parameters its
settings imply (``parameter_count``); each costs 16 bytes to train (fp32 weights, gradients and
AdamW's two moments) and 4 to predict. Activations are left out: the estimate is a lower bound, so
a refusal is certain to be right, and a model that passes may still need more.
"""

from __future__ import annotations

import os
from pathlib import Path

from ajuste.errors import ConfigError

__all__ = ["BYTES_TO_PREDICT", "BYTES_TO_TRAIN", "available_memory", "check_memory"]

#: fp32 weights, their gradients and AdamW's two moments: 4 + 4 + 4 + 4 bytes per parameter.
BYTES_TO_TRAIN = 16
#: fp32 weights alone.
BYTES_TO_PREDICT = 4


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


def check_memory(family: str, parameters: int, smaller: str, *, training: bool = True) -> None:
    """Refuse, before allocating, a model of ``parameters`` whose weights (and, to train, gradients and
    optimizer state) alone need more memory than this machine has available; ``smaller`` says how to shrink it."""
    available = available_memory()
    if available is None:  # nothing to compare with: the allocator will have the last word
        return
    needed = parameters * (BYTES_TO_TRAIN if training else BYTES_TO_PREDICT)
    if needed <= available:
        return
    what = "weights, gradients and optimizer state" if training else "weights"
    raise ConfigError(
        f"a {family} model this large does not fit in memory",
        expected=f"at most {_gigabytes(available)}, the memory this machine has available",
        found=f"about {_gigabytes(needed)} needed for the {what} of {parameters:,} parameters",
        fix=f"{smaller}, or use a machine with more memory.",
    )

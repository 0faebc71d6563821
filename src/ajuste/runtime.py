"""How many threads torch computes with: one per physical core this process may run on.

Hyper-threads share a core's vector units: a second thread per core adds contention, not speed, to the
matrix products that dominate training. ``AJUSTE_THREADS`` overrides the choice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ajuste.errors import ConfigError

__all__ = ["configure_threads", "physical_cores"]

log = logging.getLogger(__name__)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (logical CPUs when the topology is unknown)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((package, core))
    return max(1, len(cores))


def configure_threads() -> int:
    """Set torch's intra-op threads to ``AJUSTE_THREADS`` or to the physical cores; return the number."""
    import torch

    wanted = os.environ.get("AJUSTE_THREADS", "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ConfigError(
                "AJUSTE_THREADS must be a whole number of threads",
                found=repr(wanted),
                fix="Set AJUSTE_THREADS=4, or unset it to use one thread per physical core.",
            )
        threads = int(wanted)
    else:
        threads = physical_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        log.info("torch computes with %d threads", threads)
    return threads

"""Helpers shared by the benchmark scripts: machine facts, running commands, writing RESULTS.md sections."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
OUT = BENCH / "out"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "datasets"


def machine() -> dict[str, Any]:
    """CPU model, cores and library versions: what a figure was measured on."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ajuste.models.boundary import bf16_supported

    return {
        "cpu": cpu,
        # "AMD EPYC" names several generations: whether bf16 is native tells apart ones that time pretrained models
        # (bf16 by default) very differently
        "bf16_native": bf16_supported(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "date": time.strftime("%Y-%m-%d"),
    }


def commit() -> str:
    """The short commit of the checkout (``+`` when files differ from it), or ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def run_cli(args: list[str], *, timeout: int = 3600) -> tuple[dict[str, Any], float]:
    """Run ``ajuste ARGS --json`` as a user would (a new process), timed end to end."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ajuste.cli.main", *args, "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ajuste {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def write_json(name: str, content: Any) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(content, indent=2))
    return path


def update_results(section: str, body: str) -> None:
    """Replace (or append) the section of bench/RESULTS.md between this script's markers."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nMeasured by the scripts in bench/.\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"

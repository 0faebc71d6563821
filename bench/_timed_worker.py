"""`ajuste ARGS` with every call into Optuna's database storage timed: the benchmark's view of how long a worker
waits on the database. Writes {"database_seconds", "wall_seconds", "calls"} to $AJUSTE_BENCH_TIMING at exit.

    AJUSTE_BENCH_TIMING=out.json python bench/_timed_worker.py tune ...
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import time
from typing import Any

import optuna

spent = {"database_seconds": 0.0, "calls": 0}
lock = threading.Lock()


def timed(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            # the heartbeat thread's calls run beside the trial: they are not time the worker waits
            if threading.current_thread() is threading.main_thread():
                with lock:
                    spent["database_seconds"] += time.perf_counter() - started
                    spent["calls"] += 1

    return wrapper


for name, value in list(vars(optuna.storages.RDBStorage).items()):
    if inspect.isfunction(value) and not name.startswith("__"):  # methods, not static or class methods
        setattr(optuna.storages.RDBStorage, name, timed(value))


def main() -> int:
    from ajuste.cli.main import main as ajuste

    started = time.perf_counter()
    code = ajuste(sys.argv[1:])
    result = {**spent, "wall_seconds": time.perf_counter() - started}
    with open(os.environ["AJUSTE_BENCH_TIMING"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

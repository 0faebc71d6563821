"""One study, several workers, on a real PostgreSQL server started for the benchmark (as the tests start one).

1. Workers: 1, 2 and 4 `ajuste tune --dataset sms-spam --model bag --trials N` processes on this machine, one
   study each size: trials per minute (the whole study, first start to last exit), the share of each worker's
   time spent in calls to the database (every RDBStorage call of its main thread timed by
   bench/_timed_worker.py), duplicate proposals (counted trials with the same settings, the queued defaults
   aside), and that exactly N trials counted and one final model was made.
2. Fifty workers: 50 processes that only ask and tell (random sampler, a 20 ms objective, ajuste's storage
   settings: pool, heartbeat) against one study, while a probe times `SELECT 1` and counts the server's
   connections: is the database still responsive?

    python bench/bench_workers.py [--data-dir ../shared/datasets] [--trials 40] [--simulated 50]

Prints a table, writes bench/out/workers.json and the `workers` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA_DIR, ROOT, machine, update_results, write_json

sys.path.insert(0, str(ROOT))
from tests.postgres import PASSWORD, USER, Postgres, start_postgres

BENCH = Path(__file__).resolve().parent


def run_workers(server: Postgres, workers: int, trials: int, data_dir: str, scratch: Path) -> dict[str, Any]:
    import optuna

    study = f"workers-{workers}"
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    processes, timings = [], []
    started = time.perf_counter()
    for i in range(workers):
        timing = scratch / f"{study}-{i}.json"
        timings.append(timing)
        args = [sys.executable, str(BENCH / "_timed_worker.py"), "tune", "--dataset", "sms-spam"]
        args += ["--data-dir", data_dir, "--model", "bag", "--trials", str(trials), "--storage", server.url]
        args += ["--study", study, "--out", str(scratch / f"{study}-{i}"), "--quiet", "--json", "--ensemble", "1"]
        processes.append(subprocess.Popen(args, env={**env, "AJUSTE_BENCH_TIMING": str(timing)}))
    codes = [p.wait(timeout=7200) for p in processes]
    wall = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"a worker failed: exit codes {codes}")
    url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{server.port}/postgres"
    storage = optuna.storages.RDBStorage(url)
    trials_done = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    again = {n for t in trials_done for n in t.system_attrs.get("retry_history", ())}
    counted = [
        t
        for t in trials_done
        if t.state.is_finished() and not t.user_attrs.get("interrupted") and t.number not in again
    ]
    searched = [json.dumps(t.params, sort_keys=True) for t in counted if not t.user_attrs.get("portfolio")]
    storage.engine.dispose()
    shares = []
    for timing in timings:
        spent = json.loads(timing.read_text())
        shares.append(spent["database_seconds"] / spent["wall_seconds"])
    finals = sum(1 for i in range(workers) if (scratch / f"{study}-{i}" / "model" / "config.json").is_file())
    trained = [float(t.user_attrs.get("seconds", 0.0)) for t in counted]
    return {
        "workers": workers,
        "trials": len(counted),
        "mean_trial_seconds": round(statistics.mean(trained), 2),
        "seconds": round(wall, 1),
        "trials_per_minute": round(60 * len(counted) / wall, 2),
        "database_share": round(statistics.mean(shares), 4),
        "duplicate_proposals": len(searched) - len(set(searched)),
        "final_models": finals,
    }


SIMULATED = """
import json, os, sys, time, warnings
import optuna
from ajuste.search.storage import open_storage
warnings.simplefilter("ignore")  # heartbeats are for study.optimize; ask and tell still send none
optuna.logging.set_verbosity(optuna.logging.ERROR)
url, name, trials, out, ready, go = sys.argv[1:7]
storage = open_storage(url, heartbeat=60)
study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
open(ready, "w").close()
while not os.path.exists(go):  # every process imported and connected: the load starts together
    time.sleep(0.05)
asks, tells = [], []
for _ in range(int(trials)):
    t = time.perf_counter(); trial = study.ask(); asks.append(time.perf_counter() - t)
    x = trial.suggest_float("x", -1, 1); time.sleep(0.02)
    t = time.perf_counter(); study.tell(trial, x * x); tells.append(time.perf_counter() - t)
json.dump({"ask": asks, "tell": tells}, open(out, "w"))
"""


def simulate(server: Postgres, processes: int, trials: int, scratch: Path) -> dict[str, Any]:
    """``processes`` workers that only ask and tell, and a probe of the database's responsiveness."""
    import optuna
    import psycopg

    url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{server.port}/postgres"
    optuna.create_study(study_name="simulated", storage=url)
    script = scratch / "simulated.py"
    script.write_text(SIMULATED)
    probe: list[float] = []
    connections: list[int] = []
    done = threading.Event()

    def watch() -> None:
        dsn = f"host=127.0.0.1 port={server.port} user={USER} password={PASSWORD} dbname=postgres"
        with psycopg.connect(dsn) as connection:
            while not done.is_set():
                started = time.perf_counter()
                connection.execute("SELECT 1").fetchone()
                probe.append(time.perf_counter() - started)
                row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                connections.append(int(row.fetchone()[0]))  # type: ignore[index]
                time.sleep(0.1)

    go = scratch / "go"
    children = [
        subprocess.Popen(
            [
                *(sys.executable, str(script), url, "simulated", str(trials)),
                *(str(scratch / f"sim-{i}.json"), str(scratch / f"ready-{i}"), str(go)),
            ]
        )
        for i in range(processes)
    ]
    for _ in range(6000):  # at most ten minutes for every process to import and connect
        if all((scratch / f"ready-{i}").exists() for i in range(processes)):
            break
        time.sleep(0.1)
    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    go.touch()
    codes = [c.wait(timeout=1800) for c in children]
    wall = time.perf_counter() - started
    done.set()
    watcher.join(timeout=30)
    if any(codes):
        raise RuntimeError(f"a simulated worker failed: exit codes {codes}")
    asks, tells = [], []
    for i in range(processes):
        found = json.loads((scratch / f"sim-{i}.json").read_text())
        asks += found["ask"]
        tells += found["tell"]
    total = len(optuna.load_study(study_name="simulated", storage=url).get_trials(deepcopy=False))

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "processes": processes,
        "trials": total,
        "seconds": round(wall, 1),
        "trials_per_second": round(total / wall, 1),
        "ask_ms_p50": p(asks, 0.5),
        "ask_ms_p99": p(asks, 0.99),
        "tell_ms_p50": p(tells, 0.5),
        "tell_ms_p99": p(tells, 0.99),
        "probe_ms_p50": p(probe, 0.5),
        "probe_ms_p99": p(probe, 0.99),
        "probe_ms_max": p(probe, 1.0),
        "connections_max": max(connections) if connections else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--trials", type=int, default=40, help="Trials of each study.")
    parser.add_argument("--simulated", type=int, default=50, help="Processes of the ask-and-tell simulation.")
    args = parser.parse_args()
    rows = []
    for server in start_postgres():
        with tempfile.TemporaryDirectory() as folder:
            for workers in (1, 2, 4):
                row = run_workers(server, workers, args.trials, args.data_dir, Path(folder))
                rows.append(row)
                print(
                    f"{workers} workers: {row['trials']} trials in {row['seconds']} s, "
                    f"{row['trials_per_minute']} trials/min, database {100 * row['database_share']:.1f}% of the time, "
                    f"{row['duplicate_proposals']} duplicates, {row['final_models']} final model(s)",
                    flush=True,
                )
            sim = simulate(server, args.simulated, 20, Path(folder))
            print(f"simulation: {sim}", flush=True)
    info = machine()
    write_json("workers", {"machine": info, "trials": args.trials, "workers": rows, "simulation": sim})
    lines = [
        "## Many workers on one PostgreSQL study (bench/bench_workers.py)",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores (the workers and PostgreSQL "
        f"share them), torch {info['torch']}. PostgreSQL started by the script (initdb, loopback, fsync off). "
        f"Each row: one study of `ajuste tune --dataset sms-spam --model bag --trials {args.trials}` run by that "
        "many worker processes at once; time from the first start to the last exit (data preparation, the final "
        "refit and the test evaluation included). Database share: the fraction of each worker's wall time spent "
        "in calls to Optuna's storage from its main thread (mean over workers). Each worker samples its own "
        "settings (its seed comes from its process), so each study's trials differ in cost: mean trial seconds "
        "(training time of a counted trial, as it ran) says how much.",
        "",
        "| workers | trials counted | mean trial seconds | study seconds | trials/min | time in the database "
        "| duplicate proposals | final models |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['workers']} | {r['trials']} | {r['mean_trial_seconds']} | {r['seconds']} | "
            f"{r['trials_per_minute']} | "
            f"{100 * r['database_share']:.1f}% | {r['duplicate_proposals']} | {r['final_models']} |"
            for r in rows
        ),
        "",
        f"Fifty workers, simulated: {sim['processes']} processes asking and telling 20 trials each (random "
        "sampler, a 20 ms objective, ajuste's storage settings; timed from the moment all had connected) against "
        "one study, on the same 2 cores as the server: "
        f"{sim['trials']} trials in {sim['seconds']} s ({sim['trials_per_second']} trials/s); ask p50 "
        f"{sim['ask_ms_p50']} ms, p99 {sim['ask_ms_p99']} ms; tell p50 {sim['tell_ms_p50']} ms, p99 "
        f"{sim['tell_ms_p99']} ms. A probe's `SELECT 1` meanwhile: p50 {sim['probe_ms_p50']} ms, p99 "
        f"{sim['probe_ms_p99']} ms, slowest {sim['probe_ms_max']} ms; at most {sim['connections_max']} client "
        "connections open on the server (its limit here: 120; PostgreSQL's default is 100).",
    ]
    update_results("workers", "\n".join(lines))


if __name__ == "__main__":
    main()

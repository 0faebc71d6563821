"""The search issue's figures, on the built-in sms-spam and this machine's CPU.

    python bench/bench_tune.py default    # `ajuste tune --dataset sms-spam --timeout 10m --ensemble 5`, both
                                          # protocols, 3 seeds, ended again with --ensemble 1 (the best trial),
                                          # each beside every family's default `ajuste train` run
    python bench/bench_tune.py samplers   # every sampler on a fixed cheap task (bag), 40 trials x 5 seeds
    python bench/bench_tune.py samplers-default --trials 30 --seeds 3 --samplers random,tpe,nn
                                          # samplers on tune's default space (every family), portfolio first
    python bench/bench_tune.py pruning    # the same time budget with --pruner asha and --pruner none
    python bench/bench_tune.py ensemble   # one study each: its final --ensemble 5 against its best trial alone
    python bench/bench_tune.py protocols --timeout 5m  # how the final trial is chosen: val accuracy, re-scoring
                                                       # the top 3 on folds, val loss, --cv 5 (sms and ag)
    python bench/bench_tune.py larger --default-seeds 123,1  # AG News (7,600 texts), 10m (or --timeout): --screen
                                                             # off against auto, in turns; which families finished
                                                             # (--screens auto: that one alone, other rows kept;
                                                             # each search with --ensemble, then its best alone)

Each part prints a table, writes bench/out/tune-<part>.json and its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA_DIR, OUT, commit, machine, pct, run_cli, update_results, write_json

#: The cheap fixed task of the sampler comparison: the bag family with a small hashing table.
SAMPLER_SPACE: dict[str, Any] = {
    "model.family": "bag",
    "model.buckets": 10_000,
    "model.embed_dim": {"low": 8, "high": 128, "step": 8, "grid": [16, 64, 128]},
    "model.ngrams": {"low": 1, "high": 3},
    "model.min_freq": [1, 2, 3],
    "train.lr": {"low": 1e-4, "high": 1.0, "log": True},
    "train.batch_size": [16, 32, 64, 128],
    "train.epochs": {"low": 1, "high": 10, "grid": [2, 5, 10]},
    "train.weight_decay": {"low": 1e-6, "high": 0.3, "log": True, "grid": [1e-5, 1e-2]},
    "train.warmup": {"low": 0.0, "high": 0.3, "grid": [0.0, 0.2]},
    "train.label_smoothing": {"low": 0.0, "high": 0.3, "grid": [0.0, 0.1]},
}
# (the `grid` lists are the points of the grid sampler: 12,960 in all, of which it tries a seeded 40)
SAMPLER_NAMES = ("random", "grid", "tpe", "gp", "cmaes", "genetic", "nn")


def _machine_line(info: dict[str, Any]) -> str:
    return f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, torch {info['torch']}."


PROTOCOLS = {
    "dedup": ("deduplicated (default)", []),
    "published": ("--keep-duplicates (published protocol)", ["--keep-duplicates"]),
}


def _default_names() -> list[str]:
    """Every default family, and `minilm --trainable all`: the single run issue 10 started from (99.22%)."""
    from ajuste.models.registry import default_families

    return [*default_families(), "minilm all"]


def _default_runs(data: list[str], scratch: Path) -> dict[str, dict[str, Any]]:
    """Every default family's single `ajuste train --model F` run on the same split and seed."""
    runs = {}
    for name in _default_names():
        family, _, trainable = name.partition(" ")
        flags = ["--model", family, *(["--trainable", trainable] if trainable else [])]
        out = scratch / f"train-{family}-{trainable}"
        summary, seconds = run_cli(["train", *data, *flags, "--out", str(out)])
        runs[name] = {"val": summary["val"]["accuracy"], "test": summary["test"]["accuracy"], "seconds": seconds}
        print(f"  train {' '.join(flags):30s} {seconds:6.1f}s  test {pct(summary['test']['accuracy'])}", flush=True)
    return runs


def default_part(
    data_dir: str, timeout: str, seeds: list[int], protocols: list[str], size: int, keep: Path | None, reuse: bool
) -> None:
    """`ajuste tune --timeout T --ensemble K` against every family's default run, per protocol and seed; the same
    study then ended again with `--finalize --ensemble 1` (no new trial), so the single best trial and the ensemble
    come from the same trials. Rows are merged into bench/out/tune-default.json (by protocol and seed), so seeds can
    be measured one command at a time; with ``reuse``, a split's default runs already in the file are not trained
    again; with ``keep``, each study's folder is kept there (to end it again another way)."""
    path = OUT / "tune-default.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    rows = [r for r in old.get("rows", []) if "seed" in r and r.get("timeout") == timeout]
    names = _default_names()
    for key in protocols:
        name, extra = PROTOCOLS[key]
        for seed in seeds:
            data = ["--dataset", "sms-spam", "--data-dir", data_dir, *extra, "--seed", str(seed)]
            args = ["tune", *data, "--timeout", timeout, "--ensemble", str(size)]
            with tempfile.TemporaryDirectory() as folder:
                scratch = Path(folder)
                out = str((keep or scratch) / f"tune-{key}-{seed}")
                both, seconds = run_cli([*args, "--out", out], timeout=7200)
                single = ["tune", *data, "--finalize", "--ensemble", "1", "--out", out]
                summary, finalize = run_cli(single, timeout=7200)
                members = (both.get("ensemble") or {}).get("members") or [{"trial": None, "weight": 1.0}]
                row = {
                    "protocol": name,
                    "seed": seed,
                    "timeout": timeout,
                    "command": "ajuste " + " ".join(a for a in args if a not in ("--data-dir", data_dir)),
                    "seconds": round(seconds, 1),
                    "finalize_seconds": round(finalize, 1),
                    "trials": summary["trials"],
                    "families": summary.get("families", []),
                    "best_params": summary["best_params"],
                    "val": summary["val"]["accuracy"],
                    "test": summary["test"]["accuracy"],
                    "test_ci95": summary["test"]["accuracy_ci95"],
                    "test_texts": summary["data"]["test"],
                    "ensemble": {
                        "size": size,
                        "members": members,
                        "val": both["val"]["accuracy"],
                        "test": both["test"]["accuracy"],
                        "test_ci95": both["test"]["accuracy_ci95"],
                    },
                }
                print(
                    f"{name} seed {seed}: tune {seconds:.0f}s test {pct(row['test'])}, "
                    f"ensemble of {len(members)} {pct(both['test']['accuracy'])}",
                    flush=True,
                )
                earlier = next((r for r in rows if (r["protocol"], r["seed"]) == (name, seed)), None)
                if reuse and earlier and all(f in earlier.get("defaults", {}) for f in names):
                    row["defaults"] = earlier["defaults"]
                    row["defaults_from"] = earlier.get("defaults_from") or old.get("machine", {}).get("date", "?")
                else:
                    row["defaults"] = _default_runs(data, scratch)
                    row["defaults_from"] = machine()["date"]
            rows = [r for r in rows if (r["protocol"], r["seed"]) != (name, seed)] + [row]
            write_json("tune-default", {"machine": machine(), "rows": rows})
    info = machine()
    size = next((r["ensemble"]["size"] for r in rows if "ensemble" in r), size)
    reused = sorted({r["defaults_from"] for r in rows if r.get("defaults_from") and r["defaults_from"] != info["date"]})
    lines = [
        f"## Search: `ajuste tune --dataset sms-spam --timeout {timeout}` against every default run "
        "(bench/bench_tune.py default)",
        "",
        f"{_machine_line(info)} Default settings: families {', '.join(names[:-1])} with their default "
        "spaces, every family's defaults and portfolio tried first, TPE sampler, median pruner (by cohort), "
        f"validation accuracy, refit on train. Each study searched with `--ensemble {size}`, then ended again with "
        "`--finalize --ensemble 1` (no new trial): the two final models come from the same trials, each tested "
        "once. Seconds: the searching command (search, members' training, test, report). Beside each search, on "
        "the same split and seed: `ajuste train --model F` with defaults, for every family, and `--model minilm "
        "--trainable all`"
        + (f" (measured {', '.join(reused)} on the same training code)" if reused else "")
        + ". Test accuracy.",
        "",
        "| protocol | seed | seconds | trials (complete / pruned / failed) | tune, best trial (95% interval) "
        f"| tune, ensemble of up to {size} (members) | "
        + " | ".join(f"{f} default" for f in names)
        + " | best default |",
        "| --- | ---: | ---: | --- | --- | --- | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    for r in sorted(rows, key=lambda r: (r["protocol"], r["seed"])):
        t = r["trials"]
        low, high = r["test_ci95"]
        defaults = [r["defaults"][f]["test"] for f in names if f in r["defaults"]]
        both = r.get("ensemble")
        ensembled = f"{pct(both['test'])} ({len(both['members'])})" if both else "–"
        lines.append(
            f"| {r['protocol']} | {r['seed']} | {r['seconds']:.0f} | {t['complete']} / {t['pruned']} / {t['fail']} "
            f"| {pct(r['test'])} ({pct(low)}–{pct(high)}) | {ensembled} | "
            + " | ".join(pct(r["defaults"][f]["test"]) if f in r["defaults"] else "–" for f in names)
            + f" | {pct(max(defaults))} |"
        )
    lines += ["", "Medians over the seeds (test accuracy):", ""]
    lines += [
        "| protocol | seeds | tune, best trial | tune, ensemble | "
        + " | ".join(names)
        + " | best trial >= best default median? | ensemble >= best default median? |"
    ]
    lines += ["| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " | --- | --- |"]
    for name in dict.fromkeys(r["protocol"] for r in rows):
        mine = [r for r in rows if r["protocol"] == name]
        tuned = statistics.median(r["test"] for r in mine)
        ensembles = [r["ensemble"]["test"] for r in mine if "ensemble" in r]
        ensembled = statistics.median(ensembles) if len(ensembles) == len(mine) else None
        medians = {
            f: statistics.median(r["defaults"][f]["test"] for r in mine if f in r["defaults"])
            for f in names
            if any(f in r["defaults"] for r in mine)
        }
        best = max(medians.values())
        lines.append(
            f"| {name} | {len(mine)} | {pct(tuned)} | {pct(ensembled) if ensembled is not None else '–'} | "
            + " | ".join(pct(medians[f]) if f in medians else "–" for f in names)
            + f" | {'yes' if tuned >= best else 'NO'} | "
            + ("–" if ensembled is None else "yes" if ensembled >= best else "NO")
            + " |"
        )
    lines += [
        "",
        "Targets (issue 10): deduplicated median >= 98.5%; `--keep-duplicates` median >= 99.0% (best published row "
        "98.33%, GPT-2 XL on an A100); and tune's median >= the best family's default median.",
        "Per family, trials and seconds of each search: bench/out/tune-default.json (`families`).",
    ]
    update_results("tune-default", "\n".join(lines))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _compare_samplers(
    config: Any, space: Any, names: list[str], seeds: int, trials: int, checkpoints: list[int], portfolio: bool
) -> tuple[dict[str, Any], int]:
    """Each sampler's studies (one per sampler seed) of ``trials`` trials on the same split, no pruning, the
    portfolio queued first if asked; returns every study's scores by sampler, and how many trials were queued."""
    import optuna

    from ajuste.data import load_data
    from ajuste.search.objective import Objective
    from ajuste.search.portfolio import enqueue_portfolio
    from ajuste.search.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_data(config.data, seed=config.seed)
    results: dict[str, Any] = {}
    queued = 0
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["AJUSTE_CACHE_DIR"] = scratch  # every comparison starts with an empty freeze-boundary cache
        for name in names:
            runs = []
            for seed in range(seeds):
                search = Objective(config, space, data)
                sampler = make_sampler(name, space, seed=seed)
                study = optuna.create_study(direction="minimize", sampler=sampler, pruner=optuna.pruners.NopPruner())
                queued = enqueue_portfolio(study, config, space) if portfolio else 0
                started = time.perf_counter()
                study.optimize(search, n_trials=trials, catch=(Exception,))
                seconds = time.perf_counter() - started
                values = [t.value if t.value is not None else float("inf") for t in study.trials]
                best_so_far = [min(values[: i + 1]) for i in range(len(values))]
                families = [str(t.params.get("model.family", space.families[0])) for t in study.trials]
                runs.append(
                    {
                        "seed": seed,
                        "values": values,
                        "best_so_far": best_so_far,
                        "families": families,
                        "val_accuracy": [t.user_attrs.get("val_metrics", {}).get("val_accuracy") for t in study.trials],
                        "trial_seconds": [t.duration.total_seconds() if t.duration else None for t in study.trials],
                        "seconds": seconds,
                    }
                )
                best = min(range(len(values)), key=values.__getitem__)
                print(
                    f"{name:8s} seed {seed}  best val loss {best_so_far[-1]:.4f} (trial {best}, {families[best]})"
                    f"  {seconds:6.1f}s",
                    flush=True,
                )
            results[name] = {
                "runs": runs,
                "median_best": {
                    str(k): statistics.median(r["best_so_far"][min(k, len(r["best_so_far"])) - 1] for r in runs)
                    for k in checkpoints
                },
                "seconds": sum(r["seconds"] for r in runs),
            }
    return results, queued


def _sampler_table(results: dict[str, Any], checkpoints: list[int], measured: bool = False) -> list[str]:
    """The comparison's table: each sampler's median best score at each checkpoint, and whether it beats random's."""
    random_best = results.get("random", {}).get("median_best", {})
    last = str(checkpoints[-1])
    lines = [
        "| sampler | "
        + " | ".join(f"best val loss after {k}" for k in checkpoints)
        + f" | beats random at {last} | seconds (all seeds) |"
        + (" measured |" if measured else ""),
        "| --- | " + " | ".join("---:" for _ in checkpoints) + " | --- | ---: |" + (" --- |" if measured else ""),
    ]
    for name, result in results.items():
        m = result["median_best"]
        beats = "—" if name == "random" or not random_best else ("yes" if m[last] < random_best[last] else "no")
        cells = " | ".join(f"{m[str(k)]:.4f}" for k in checkpoints)
        when = f" {result.get('measured', '–')} |" if measured else ""
        lines.append(f"| `{name}` | {cells} | {beats} | {result['seconds']:.0f} |{when}")
    return lines


def samplers_part(data_dir: str, seeds: int, trials: int, names: list[str]) -> None:
    from ajuste.search.settings import TuneConfig
    from ajuste.search.space import parse_space

    config = TuneConfig.model_validate(
        {
            "data": {"dataset": "sms-spam", "data_dir": data_dir},
            "model": {"family": "bag"},
            "space": SAMPLER_SPACE,
            "tune": {"metric": "loss", "pruner": "none"},
        }
    )
    space = parse_space(config.space, base_model=config.model)
    checkpoints = sorted({10, 20, trials})
    results, _ = _compare_samplers(config, space, names, seeds, trials, checkpoints, portfolio=False)
    info = machine()
    write_json("tune-samplers", {"machine": info, "space": SAMPLER_SPACE, "results": results})
    lines = [
        f"## Sampler comparison: bag on sms-spam, {trials} trials x {seeds} seeds (bench/bench_tune.py samplers)",
        "",
        f"{_machine_line(info)} A fixed, cheap task: the `bag` family (10,000 hash buckets) on the default "
        "deduplicated sms-spam split, 9 settings searched (embed_dim, ngrams, min_freq, lr, batch size, epochs, "
        "weight decay, warmup, label smoothing), no pruning. The score is the validation cross-entropy (lower is "
        "better): validation accuracy on 128 texts moves in steps of 0.8 points and ties between most good "
        "settings, so it cannot rank samplers. Figures are the median over the seeds of the best score after "
        f"{', '.join(str(k) for k in checkpoints)} trials; training is deterministic, so every sampler faces the "
        "same function.",
        "",
        *_sampler_table(results, checkpoints),
    ]
    update_results("tune-samplers", "\n".join(lines))


def samplers_default_part(data_dir: str, seeds: int, trials: int, names: list[str], portfolio: bool) -> None:
    """Samplers on the space `ajuste tune --dataset sms-spam` searches (every default family), each study
    starting from the portfolio as tune's do; the score is the validation loss, the split and training fixed."""
    from ajuste.search.settings import TuneConfig
    from ajuste.search.tune import search_space

    config = TuneConfig.model_validate(
        {"data": {"dataset": "sms-spam", "data_dir": data_dir}, "tune": {"metric": "loss", "pruner": "none"}}
    )
    space = search_space(config)
    checkpoints = sorted({10, 20, trials})
    section = "tune-samplers-default" if portfolio else "tune-samplers-default-sampled"
    # Samplers are merged into the JSON one by one (each as soon as its studies end), so that a long comparison
    # can run sampler by sampler; a sampler's earlier result is kept only if it had the same trials and seeds.
    path = OUT / f"{section}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    results = {
        name: {"measured": str((old.get("machine") or {}).get("date", "–")), **result}
        for name, result in (old.get("results") or {}).items()
        if len(result.get("runs", [])) == seeds and all(len(r["values"]) == trials for r in result["runs"])
    }
    queued = int(old.get("portfolio_trials") or 0)
    info = machine()
    for name in names:
        found, queued = _compare_samplers(config, space, [name], seeds, trials, checkpoints, portfolio)
        results[name] = {**found[name], "measured": f"{time.strftime('%Y-%m-%d')}, {commit()}"}
        results = {n: results[n] for n in SAMPLER_NAMES if n in results}
        content = {"machine": info, "families": space.families, "portfolio_trials": queued, "results": results}
        write_json(section, content)
    lines = [
        f"## Sampler comparison on tune's default space{'' if portfolio else ', no portfolio'}: sms-spam, "
        f"{trials} trials x {seeds} seeds "
        "(bench/bench_tune.py samplers-default)",
        "",
        f"{_machine_line(info)} The space `ajuste tune --dataset sms-spam` searches: every default family "
        f"({', '.join(space.families)}), "
        + (
            f"each study starting with the {queued} portfolio trials that tune queues (every family's defaults, "
            f"then the portfolio), so the samplers differ from trial {queued + 1} on. "
            if queued
            else "no portfolio queued (`--no-portfolio`): every trial is the sampler's. "
        )
        + "The freeze-boundary cache is shared by the studies (the first fills it), so the seconds do not compare. "
        "No pruning; the default deduplicated split; the score is the validation cross-entropy "
        "(lower is better; see the bag comparison above for why not accuracy). Figures are the median over the "
        f"sampler seeds (0 to {seeds - 1}) of the best score after "
        f"{', '.join(str(k) for k in checkpoints)} trials. Training is seeded, so every sampler faces the same "
        "function. Measured: the date and commit of each sampler's studies.",
        "",
        *_sampler_table(results, checkpoints, measured=True),
    ]
    update_results(section, "\n".join(lines))


def pruning_part(data_dir: str, timeout: str, models: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for pruner in ("none", "asha"):
            args = [
                "tune",
                "--dataset",
                "sms-spam",
                "--data-dir",
                data_dir,
                "--model",
                models,
                "--timeout",
                timeout,
                "--pruner",
                pruner,
                "--sampler",
                "random",
                "--ensemble",
                "1",
            ]
            summary, seconds = run_cli([*args, "--out", str(Path(scratch) / pruner)], timeout=7200)
            t = summary["trials"]
            rows.append(
                {
                    "pruner": pruner,
                    "seconds": round(seconds, 1),
                    "trials": t,
                    "best_value": summary["best_value"],
                    "test": summary["test"]["accuracy"],
                }
            )
            print(f"{pruner:6s} {seconds:7.1f}s  trials {t}  best val {summary['best_value']:.4f}", flush=True)
    info = machine()
    write_json("tune-pruning", {"machine": info, "rows": rows})
    lines = [
        f"## Pruning: the same {timeout} budget with and without ASHA (bench/bench_tune.py pruning)",
        "",
        f"{_machine_line(info)} `ajuste tune --dataset sms-spam --model {models} --timeout {timeout} --sampler random "
        "--pruner P`: the random sampler, so both runs draw the same sequence of settings and only pruning differs.",
        "",
        "| pruner | trials run (complete + pruned) | complete | pruned | best val accuracy | test acc of the refit |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        t = r["trials"]
        lines.append(
            f"| `{r['pruner']}` | {t['complete'] + t['pruned']} | {t['complete']} | {t['pruned']} | "
            f"{pct(r['best_value'])} | {pct(r['test'])} |"
        )
    update_results("tune-pruning", "\n".join(lines))


ENSEMBLE_DATA = {
    "sms": lambda data_dir: ["--dataset", "sms-spam", "--data-dir", data_dir],
    "ag": lambda data_dir: ["--data", str(Path(data_dir) / "ag_news_test" / "ag_news_test.csv")],
}


def ensemble_part(data_dir: str, timeout: str, datasets: list[str], size: int = 5) -> None:
    """One study per dataset: searched for ``timeout`` with ``--ensemble 5``, then the same study ended again with
    ``--finalize --ensemble 1`` (no new trial), so both final models come from the same trials and each is tested
    once (the second access is recorded in run.yaml)."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in datasets:
            data = ENSEMBLE_DATA[name](data_dir)
            out = str(Path(scratch) / name)
            ensemble, seconds = run_cli(
                ["tune", *data, "--timeout", timeout, "--ensemble", str(size), "--out", out], timeout=7200
            )
            done = sum(ensemble["trials"].values())
            single, single_seconds = run_cli(
                ["tune", *data, "--finalize", "--ensemble", "1", "--out", out], timeout=7200
            )
            chosen = ensemble.get("ensemble") or {}
            row = {
                "dataset": name,
                "timeout": timeout,
                "seconds": round(seconds, 1),
                "trials": ensemble["trials"],
                "members": chosen.get("members", []),
                "val_single": (chosen.get("val") or {})
                .get("single_best", {})
                .get("accuracy", single["val"]["accuracy"]),
                "val_ensemble": (chosen.get("val") or {})
                .get("ensemble", {})
                .get("accuracy", ensemble["val"]["accuracy"]),
                "test_single": single["test"]["accuracy"],
                "test_single_ci95": single["test"]["accuracy_ci95"],
                "test_ensemble": ensemble["test"]["accuracy"],
                "test_ensemble_ci95": ensemble["test"]["accuracy_ci95"],
                "single_seconds": round(single_seconds, 1),
                "test_texts": ensemble["data"]["test"],
            }
            rows.append(row)
            print(
                f"{name:4s} trials {done}  members {len(row['members'])}  val {pct(row['val_single'])} -> "
                f"{pct(row['val_ensemble'])}  test {pct(row['test_single'])} -> {pct(row['test_ensemble'])}",
                flush=True,
            )
    info = machine()
    write_json("tune-ensemble", {"machine": info, "rows": rows})
    lines = [
        f"## Search: the final ensemble against the best trial alone (bench/bench_tune.py ensemble, {timeout})",
        "",
        f"{_machine_line(info)} One study per dataset, default families and settings, searched for {timeout} with "
        f"`--ensemble {size}`; then the same study ended again with `--finalize --ensemble 1` (no new trial), so "
        "both final models come from the same trials; each was tested once. sms: the "
        "default protocol; ag: ../shared/datasets/ag_news_test, default split; seed 123. Members: trial (weight).",
        "",
        "| dataset | trials (complete / pruned / failed) | members | val acc, best trial | val acc, ensemble "
        "| test acc, best trial (95% interval) | test acc, ensemble (95% interval) | test texts |",
        "| --- | --- | --- | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        t = r["trials"]
        members = ", ".join(f"{m['trial']} ({m['weight']:.2f})" for m in r["members"]) or "the best trial alone"
        single, both = r["test_single_ci95"], r["test_ensemble_ci95"]
        lines.append(
            f"| {r['dataset']} | {t['complete']} / {t['pruned']} / {t['fail']} | {members} | {pct(r['val_single'])} "
            f"| {pct(r['val_ensemble'])} | {pct(r['test_single'])} ({pct(single[0])}–{pct(single[1])}) | "
            f"{pct(r['test_ensemble'])} ({pct(both[0])}–{pct(both[1])}) | {r['test_texts']} |"
        )
    update_results("tune-ensemble", "\n".join(lines))


#: How the final trial is chosen, for the protocol comparison: (name, flags of the search, flags of a second end
#: of the same study with --finalize, or None). Every protocol refits on train+val, so that only the choice differs,
#: and makes one trial's model (--ensemble 1; --cv and --rescore imply it).
CHOICE_PROTOCOLS = {
    "accuracy": ("validation accuracy", ["--refit", "train+val", "--ensemble", "1"], None),
    "rescore": ("top 3 re-scored on 5 folds", None, ["--rescore", "3"]),
    "loss": ("validation loss", ["--metric", "loss", "--refit", "train+val", "--ensemble", "1"], None),
    "cv": ("--cv 5", ["--cv", "5"], None),
}


def protocols_part(data_dir: str, timeout: str, datasets: list[str], seeds: list[int], choices: list[str]) -> None:
    """The protocol comparison of issue 10, item 3: for each dataset and seed, the test accuracy of the model each
    way of choosing picks. Re-scoring ends the validation-accuracy study a second time (`--finalize --rescore 3`:
    no new trial, the same trials), so those two differ only in the choice. Rows are merged into
    bench/out/tune-protocols.json (by dataset, seed and protocol)."""
    path = OUT / "tune-protocols.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    rows = [r for r in old.get("rows", []) if r.get("timeout") == timeout]
    for name in datasets:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as folder:
                data = [*ENSEMBLE_DATA[name](data_dir), "--seed", str(seed)]
                plain = str(Path(folder) / "plain")
                for number, key in enumerate(choices):
                    protocol, search, again = CHOICE_PROTOCOLS[key]
                    if search is None:  # the validation-accuracy study (run first), ended again
                        args = ["tune", *data, "--finalize", "--refit", "train+val", *(again or []), "--out", plain]
                    else:
                        out = plain if key == "accuracy" else str(Path(folder) / str(number))
                        args = ["tune", *data, "--timeout", timeout, *search, "--out", out]
                    summary, seconds = run_cli(args, timeout=7200)
                    row = {
                        "dataset": name,
                        "seed": seed,
                        "timeout": timeout,
                        "protocol": protocol,
                        "seconds": round(seconds, 1),
                        "trials": summary["trials"],
                        "best_trial": summary["best_trial"],
                        "val": summary["val"]["accuracy"],
                        "test": summary["test"]["accuracy"],
                        "test_texts": summary["data"]["test"],
                        # how many complete trials shared the chosen one's search score (absent before 1f8d840)
                        "tied_at_best": (summary.get("choice") or {}).get("tied_at_best"),
                        "measured": f"{time.strftime('%Y-%m-%d')}, {commit()}",
                    }
                    print(f"{name} seed {seed} {protocol:28s} {seconds:6.0f}s  test {pct(row['test'])}", flush=True)
                    slot = (name, seed, protocol)
                    rows = [r for r in rows if (r["dataset"], r["seed"], r["protocol"]) != slot] + [row]
                    write_json("tune-protocols", {"machine": machine(), "rows": rows})
    info = machine()
    names = [protocol for protocol, _, _ in CHOICE_PROTOCOLS.values()]
    lines = [
        f"## Search: how the final trial is chosen (bench/bench_tune.py protocols, {timeout} per study)",
        "",
        f"{_machine_line(info)} Default families and settings, `--timeout {timeout}`, every final model refit on "
        "train+val and tested once. Re-scoring ends the validation-accuracy study a second time with `--finalize "
        "--rescore 3` (no new trial), so those two columns differ only in the choice; its seconds are the "
        "re-scoring's alone. sms: the default protocol; ag: ../shared/datasets/ag_news_test, default split. Test "
        "accuracy of the chosen model; the last rows: median over the seeds. Measured: the date and commit of the "
        "row's studies (rows are measured again by dataset and seed).",
        "",
        "| dataset | seed | " + " | ".join(names) + " | measured |",
        "| --- | ---: | " + " | ".join("---:" for _ in names) + " | --- |",
    ]
    by_key = {(r["dataset"], r["seed"], r["protocol"]): r for r in rows}
    for dataset, seed in sorted({(r["dataset"], r["seed"]) for r in rows}):
        cells = []
        for protocol in names:
            r = by_key.get((dataset, seed, protocol))
            cells.append(f"{pct(r['test'])} ({r['seconds']:.0f} s)" if r else "–")
        dates = sorted({r.get("measured", "unknown") for r in rows if (r["dataset"], r["seed"]) == (dataset, seed)})
        lines.append(f"| {dataset} | {seed} | " + " | ".join(cells) + f" | {'; '.join(dates)} |")
    for dataset in sorted({r["dataset"] for r in rows}):
        cells = []
        for protocol in names:
            found = [r["test"] for r in rows if r["dataset"] == dataset and r["protocol"] == protocol]
            cells.append(f"{pct(statistics.median(found))} ({len(found)} seeds)" if found else "–")
        lines.append(f"| {dataset} | median | " + " | ".join(cells) + " | |")
    update_results("tune-protocols", "\n".join(lines))


#: What the larger-data part compares: a search without screening, and the default (a quarter, from 4,000 texts).
SCREENS = ("off", "auto")


def _study(run_dir: Path) -> Any:
    """The study of the search in ``run_dir``."""
    import optuna

    from ajuste.runs.folder import RunFolder

    folder = RunFolder(run_dir)
    info = folder.read_search_info()
    assert info is not None, f"{run_dir} holds no search"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=info.study, storage=folder.storage_url(info))


def _cohort_name(trial: Any) -> str:
    """``minilm all``: a trial's family, and its trainable layers for a pretrained model."""
    from ajuste.search.study import cohort

    family, trainable = cohort(trial)
    return f"{family} {trainable}".strip()


def _cohorts(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per cohort (family, and trainable layers for a pretrained model) of the study in ``run_dir``: trials that
    count, how they ended (screened out, stopped by the time budget, otherwise pruned), seconds, best val score."""
    from optuna.trial import TrialState

    from ajuste.search.study import CUT, counts_towards_budget, screened_out

    found: dict[str, dict[str, Any]] = {}
    for trial in _study(run_dir).get_trials(deepcopy=False):
        if not counts_towards_budget(trial) or not trial.user_attrs.get("settings"):
            continue
        name = _cohort_name(trial)
        row = found.setdefault(
            name, {"trials": 0, "complete": 0, "screened_out": 0, "stopped": 0, "pruned": 0, "seconds": 0.0}
        )
        row["trials"] += 1
        row["seconds"] = round(row["seconds"] + float(trial.user_attrs.get("seconds") or 0.0), 1)
        if trial.state == TrialState.COMPLETE:
            row["complete"] += 1
            row["best"] = max(row.get("best", 0.0), float(trial.value or 0.0))
            if cut := trial.user_attrs.get(CUT):  # trained on every text for the epochs that fitted, or none
                fitted = f"{cut['epochs']} of {cut['planned']} epochs" if cut["epochs"] else "its screen's model"
                row.setdefault("cut", []).append(fitted)
        elif screened_out(trial):
            row["screened_out"] += 1
        elif trial.user_attrs.get("stopped"):
            row["stopped"] += 1
        else:
            row["pruned"] += 1
    return found


def larger_part(
    data_dir: str, timeout: str, seeds: list[int], screens: Sequence[str] = SCREENS, ensemble: int = 1
) -> None:
    """Issue 10, item 8, on the largest data here (AG News, 7,600 texts: 5,320 to train on): the same search with
    ``--screen off`` and with the default ``--screen auto`` (a quarter of the training texts), in turns, per seed
    (``screens``: only some of them, the others' rows kept); which cohorts each reached and finished within the
    budget, and the test accuracy of its choice. With ``ensemble`` above 1 the search ends with ``--ensemble N``
    (tune's default is 5) and the same study is ended again with ``--finalize --ensemble 1`` (no new trial): the
    row's choice is the best trial alone, its ``ensemble`` the other final model. Rows are merged into
    bench/out/tune-larger.json (by seed and screen)."""
    path = OUT / "tune-larger.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    rows = list(old.get("rows", []))
    data = ENSEMBLE_DATA["ag"](data_dir)
    for seed in seeds:
        for screen in screens:
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "run"
                # every search starts with an empty cache: frozen layers computed by an earlier run would make a
                # later one cheaper
                os.environ["AJUSTE_CACHE_DIR"] = str(Path(folder) / "cache")
                args = ["tune", *data, "--seed", str(seed), "--timeout", timeout, "--screen", screen]
                summary, seconds = run_cli([*args, "--ensemble", str(ensemble), "--out", str(out)], timeout=7200)
                cohorts = _cohorts(out)
                cohort_of = {t.number: _cohort_name(t) for t in _study(out).get_trials(deepcopy=False)}
                averaged = None
                if ensemble > 1:
                    averaged, summary = (
                        summary,
                        run_cli(
                            ["tune", *data, "--seed", str(seed), "--finalize", "--ensemble", "1", "--out", str(out)],
                            timeout=7200,
                        )[0],
                    )
            best = summary["best_params"]
            row = {
                "dataset": "ag",
                "seed": seed,
                "timeout": timeout,
                "screen": screen,
                "seconds": round(seconds, 1),
                "trials": summary["trials"],
                "cohorts": cohorts,
                "chosen": f"{best.get('model.family')} {best.get('model.trainable') or ''}".strip(),
                "val": summary["val"]["accuracy"],
                "test": summary["test"]["accuracy"],
                "test_ci95": summary["test"]["accuracy_ci95"],
                "test_texts": summary["data"]["test"],
                "measured": f"{time.strftime('%Y-%m-%d')}, {commit()}",
            }
            if averaged is not None:
                members = (averaged.get("ensemble") or {}).get("members", [])
                row["ensemble"] = {
                    "size": ensemble,
                    "members": [{**m, "cohort": cohort_of[m["trial"]]} for m in members],
                    "val": averaged["val"]["accuracy"],
                    "test": averaged["test"]["accuracy"],
                    "test_ci95": averaged["test"]["accuracy_ci95"],
                }
            done = ", ".join(f"{name} {c['complete']}/{c['trials']}" for name, c in cohorts.items())
            print(
                f"ag seed {seed} --screen {screen:4s} {seconds:5.0f}s chose {row['chosen']:12s} test "
                f"{pct(row['test'])}  finished/run: {done}",
                flush=True,
            )
            slot = (timeout, seed, screen)
            rows = [r for r in rows if (r["timeout"], r["seed"], r["screen"]) != slot] + [row]
            write_json("tune-larger", {"machine": machine(), "rows": rows})
    info = machine()
    lines = [
        "## Search on larger data: screening on a subset (bench/bench_tune.py larger)",
        "",
        f"{_machine_line(info)} `ajuste tune --data ag_news_test.csv --timeout T` (../shared/datasets/"
        "ag_news_test: 7,600 texts, 4 topics; default split, 5,320 training and 760 validation texts), default "
        "families, portfolio and settings, with `--screen off` and with the default `--screen auto` (every trial "
        "first on a stratified quarter of the training texts, 1,330), the two run in turns. Per cohort: trials "
        "that count — finished on every text / screened out / stopped by the time budget / pruned; (cut: k of n "
        "epochs): a trial screened in that trained on every text for the k of its n epochs that fitted in the time "
        "left (since 2026-12-03); (cut: its screen's model): one screened in with not one epoch on every text "
        "fitting in the time left, whose model is its screen's, trained on the quarter (since commit c1993f9, "
        "2026-12-03; before, such a trial was stopped). Seconds: the "
        "whole command, each with an empty cache of frozen layers. Test accuracy of the final model (95% "
        "interval), tested once. Chosen, val and test acc: the best trial alone; the ensemble (rows since "
        "2026-12-03, searched with `--ensemble 5`, tune's default, and the study then ended again with `--finalize "
        "--ensemble 1`, no new trial, for the best trial alone): test accuracy of tune's default final model and "
        "its members' cohorts with their weights; older rows were searched with `--ensemble 1`. Measured: the date "
        "and commit of the row's search.",
        "",
        "| T | seed | --screen | seconds | linear | bag | gpt | minilm last_block | minilm all | other trials "
        "| chosen | val acc | test acc (95% interval) | ensemble: test acc (members) | measured |",
        "| --- | ---: | --- | ---: | --- | --- | --- | --- | --- | --- | --- | ---: | --- | --- | --- |",
    ]
    main_cohorts = ("linear", "bag", "gpt", "minilm last_block", "minilm all")
    from ajuste.search.settings import parse_duration

    order = {value: index for index, value in enumerate(sorted({r["timeout"] for r in rows}, key=parse_duration))}
    for r in sorted(rows, key=lambda r: (order[r["timeout"]], r["seed"], SCREENS.index(r["screen"]))):
        cells = []
        for name in main_cohorts:
            c = r["cohorts"].get(name)
            cut = "".join(f" (cut: {epochs})" for epochs in (c or {}).get("cut", []))
            cells.append(
                "–" if c is None else f"{c['complete']}{cut} / {c['screened_out']} / {c['stopped']} / {c['pruned']}"
            )
        other = sum(c["trials"] for name, c in r["cohorts"].items() if name not in main_cohorts)
        low, high = r["test_ci95"]
        averaged = r.get("ensemble")
        members = (
            "–"
            if averaged is None
            else f"{pct(averaged['test'])} ("
            + ", ".join(f"{m['cohort']} {m['weight']:.2f}" for m in averaged["members"])
            + ")"
        )
        lines.append(
            f"| {r['timeout']} | {r['seed']} | {r['screen']} | {r['seconds']:.0f} | "
            + " | ".join(cells)
            + f" | {other} | "
            f"{r['chosen']} | {pct(r['val'])} | {pct(r['test'])} ({pct(low)}–{pct(high)}) | {members} | "
            f"{r.get('measured', '2026-11-30, f6111c9')} |"
        )
    update_results("tune-larger", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "part",
        choices=("default", "samplers", "samplers-default", "pruning", "ensemble", "protocols", "larger"),
    )
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--timeout", default="10m", help="Search time per run (default and pruning parts).")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--samplers", default=",".join(SAMPLER_NAMES))
    parser.add_argument(
        "--no-portfolio", action="store_true", help="samplers-default: queue no portfolio (every trial sampled)."
    )
    parser.add_argument("--models", default="bag,gpt", help="Families of the pruning part.")
    parser.add_argument("--datasets", default="sms,ag", help="Datasets of the ensemble part (sms, ag).")
    parser.add_argument(
        "--default-seeds", default="123,1,2", help="Seeds of the default and protocols parts (split and search)."
    )
    parser.add_argument("--protocols", default="dedup,published", help="Protocols of the default part.")
    parser.add_argument(
        "--ensemble", type=int, default=5, help="Ensemble size of the default and larger parts' searches."
    )
    parser.add_argument("--keep", help="Default part: keep each study's folder under this folder.")
    parser.add_argument(
        "--screens", default=",".join(SCREENS), help="Larger part: the --screen values to run (off,auto)."
    )
    parser.add_argument(
        "--reuse-defaults",
        action="store_true",
        help="Default part: take a split's default runs from bench/out/tune-default.json when it has them.",
    )
    parser.add_argument(
        "--choices",
        default=",".join(CHOICE_PROTOCOLS),
        help="Ways of choosing of the protocols part: accuracy (first, if rescore is given), rescore, loss, cv.",
    )
    args = parser.parse_args()
    if args.part == "default":
        seeds = [int(seed) for seed in args.default_seeds.split(",")]
        keep = Path(args.keep) if args.keep else None
        default_part(
            args.data_dir, args.timeout, seeds, args.protocols.split(","), args.ensemble, keep, args.reuse_defaults
        )
    elif args.part == "ensemble":
        ensemble_part(args.data_dir, args.timeout, args.datasets.split(","))
    elif args.part == "protocols":
        seeds = [int(seed) for seed in args.default_seeds.split(",")]
        choices = args.choices.split(",")
        if "rescore" in choices and ("accuracy" not in choices or choices.index("rescore") < choices.index("accuracy")):
            parser.error("--choices: rescore ends the accuracy study, so accuracy comes first")
        protocols_part(args.data_dir, args.timeout, args.datasets.split(","), seeds, choices)
    elif args.part == "larger":
        screens = args.screens.split(",")
        seeds = [int(seed) for seed in args.default_seeds.split(",")]
        larger_part(args.data_dir, args.timeout, seeds, screens, args.ensemble)
    elif args.part == "samplers":
        samplers_part(args.data_dir, args.seeds, args.trials, args.samplers.split(","))
    elif args.part == "samplers-default":
        samplers_default_part(args.data_dir, args.seeds, args.trials, args.samplers.split(","), not args.no_portfolio)
    else:
        pruning_part(args.data_dir, args.timeout, args.models)


if __name__ == "__main__":
    main()

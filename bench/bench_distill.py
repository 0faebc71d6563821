"""Distillation: cheap students of a fine-tuned MiniLM against the teacher and against a `bag` on labels alone.

For each dataset (sms-spam with its default protocol; ../shared/datasets/ag_news_test with the default 70/10/20
split; seed 123, or each of --seeds: a seed is a split and a training), as a user runs it, each command in a new
process:

1. the teacher: `ajuste train --model minilm --trainable all` (reused from --work when it is already there);
2. `ajuste train --model bag` (the student's family on the labels alone, same split);
3. `ajuste distill TEACHER --student bag` (default settings), and the same with `--augment 10`;
4. `ajuste distill TEACHER --student static` (the teacher's piece vectors, frozen, under a linear layer).

Then every model predicts all the texts of the dataset (5,574 SMS; 7,600 news), each loaded from its folder as
`ajuste predict` loads it and warmed up first, the models in turns (one pass each per round, so that a drift of
the machine's speed falls on all of them alike): the median of --repeat rounds, in texts per second. The
teacher's probabilities and the piece vectors are computed afresh (an empty cache).

    python bench/bench_distill.py [--data-dir ../shared/datasets] [--work /tmp/ajuste-distill] [--repeat 3]
                                  [--only sms|ag] [--seeds 123,1,2]

Prints a table, writes bench/out/distill.json and the `distill` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA_DIR, OUT, machine, pct, run_cli, update_results, write_json

#: The issue's targets: the distilled bag within this many points of the teacher's test accuracy, and at
#: least this many times its prediction throughput.
WITHIN_POINTS = 1.0
SPEEDUP = 50.0
DEFAULT_SEED = 123


def datasets(data_dir: Path) -> dict[str, list[str]]:
    return {
        "sms": ["--dataset", "sms-spam", "--data-dir", str(data_dir)],
        "ag": ["--data", str(data_dir / "ag_news_test" / "ag_news_test.csv")],
    }


def all_texts(data_args: list[str]) -> list[str]:
    from ajuste.data import DataSettings, load_table

    if data_args[0] == "--dataset":
        settings = DataSettings(dataset=data_args[1], data_dir=data_args[3])
    else:
        settings = DataSettings(path=data_args[1])
    return [t for t in load_table(settings).texts if t]


def texts_per_second(runs: list[Path], texts: list[str], repeat: int) -> list[float]:
    """Each run's median texts per second over ``repeat`` rounds, every round one pass of each model in turn."""
    from ajuste.runs.folder import RunFolder

    models = [RunFolder.open(run).predictor() for run in runs]
    for model in models:
        model.predict(texts[:64])
    speeds: list[list[float]] = [[] for _ in models]
    for _ in range(repeat):
        for model, mine in zip(models, speeds):
            started = time.perf_counter()
            model.predict(texts)
            mine.append(len(texts) / (time.perf_counter() - started))
    return [statistics.median(mine) for mine in speeds]


def teacher(name: str, data_args: list[str], work: Path) -> tuple[Path, dict[str, Any], float | None]:
    """The teacher's run folder, its metrics, and the seconds of its command (None when reused)."""
    from ajuste.runs.folder import RunFolder

    folder = work / f"{name}-teacher"  # name: the dataset, and the seed when it is not the default
    if not RunFolder(folder).is_finished():
        summary, seconds = run_cli(
            ["train", *data_args, "--model", "minilm", "--trainable", "all", "--out", str(folder), "--overwrite"]
        )
        return folder, summary, seconds
    metrics = RunFolder(folder).read_metrics() or {}
    run_file = RunFolder(folder).read_run_file()
    recorded = run_file.record.seconds if run_file else None
    return folder, {"val": metrics["val"], "test": metrics["test"], "recorded_seconds": recorded}, None


def measure(
    dataset: str, data_args: list[str], seed: int, work: Path, repeat: int, students: list[str] | None = None
) -> list[dict[str, Any]]:
    texts = all_texts(data_args)
    name = dataset if seed == DEFAULT_SEED else f"{dataset}-s{seed}"
    data_args = [*data_args, "--seed", str(seed)]
    teacher_dir, teacher_summary, teacher_seconds = teacher(name, data_args, work)
    runs: list[tuple[str, str, Path, dict[str, Any], float | None]] = [
        ("teacher", "ajuste train --model minilm --trainable all", teacher_dir, teacher_summary, teacher_seconds)
    ]
    commands = [
        ("bag, labels only", ["train", *data_args, "--model", "bag"], "ajuste train --model bag"),
        ("bag, distilled", ["distill", str(teacher_dir), "--student", "bag"], "ajuste distill TEACHER --student bag"),
        (
            "bag, distilled + augment",
            ["distill", str(teacher_dir), "--student", "bag", "--augment", "10"],
            "ajuste distill TEACHER --student bag --augment 10",
        ),
        (
            "static, distilled",
            ["distill", str(teacher_dir), "--student", "static"],
            "ajuste distill TEACHER --student static",
        ),
    ]
    commands = [command for command in commands if students is None or command[0] in students]
    for label, args, shown in commands:
        out = work / f"{name}-{label.replace(', ', '-').replace(' + ', '-').replace(' ', '-')}"
        summary, seconds = run_cli([*args, "--out", str(out), "--overwrite"])
        runs.append((label, shown, out, summary, seconds))
    rows = []
    facts = machine()
    measured = facts["date"] + ("" if facts.get("bf16_native") else ", no native bf16")
    rates = texts_per_second([folder for _, _, folder, _, _ in runs], texts, repeat)
    teacher_rate = rates[0]
    for (label, shown, _, summary, seconds), rate in zip(runs, rates):
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "model": label,
                "command": shown,
                "seconds": None if seconds is None else round(seconds, 1),
                "val_accuracy": summary["val"]["accuracy"],
                "test_accuracy": summary["test"]["accuracy"],
                "test_ci95": summary["test"].get("accuracy_ci95"),
                "test_texts": (summary.get("data") or {}).get("test"),
                "texts_per_second": round(rate, 1),
                "speedup": round(rate / teacher_rate, 1),
                "texts": summary.get("texts"),
                "predicted_texts": len(texts),
                "recorded_seconds": summary.get("recorded_seconds"),
                "measured": measured,
            }
        )
        print(
            f"{name:4s} {label:26s} val {pct(summary['val']['accuracy']):>8s} "
            f"test {pct(summary['test']['accuracy']):>8s} {rate:10,.0f} texts/s  x{rate / teacher_rate:6.1f}",
            flush=True,
        )
    return rows


def _key(row: dict[str, Any]) -> tuple[str, int]:
    return row["dataset"], row.get("seed", DEFAULT_SEED)


#: The table's models, in its order (the teacher first: the others' Δ is against it).
MODELS = ["teacher", "bag, labels only", "bag, distilled", "bag, distilled + augment", "static, distilled"]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | seed | model | command | seconds | val acc | test acc (95% interval) | Δ test vs teacher "
        "| predict texts/s | × teacher | measured |",
        "| --- | ---: | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    teacher_test: dict[tuple[str, int], float] = {}
    for row in rows:
        teacher_test.setdefault(_key(row), row["test_accuracy"])
        ci = row["test_ci95"]
        interval = f" ({pct(ci[0])}–{pct(ci[1])})" if ci else ""
        delta = 100 * (row["test_accuracy"] - teacher_test[_key(row)])
        recorded = row.get("recorded_seconds")
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else f"reused ({recorded:.0f} in its run.yaml)"
        lines.append(
            f"| {row['dataset']} | {_key(row)[1]} | {row['model']} | `{row['command']}` | {seconds} | "
            f"{pct(row['val_accuracy'])} | {pct(row['test_accuracy'])}{interval} | {delta:+.2f} | "
            f"{row['texts_per_second']:,.0f} | {row['speedup']:,.1f} | {row.get('measured', '')} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Per dataset and distilled student: the gap to the teacher and the speed-up, each seed and their median."""
    lines = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        teachers = {_key(row): row for row in rows if row["dataset"] == dataset and row["model"] == "teacher"}
        distilled = (row["model"] for row in rows if row["dataset"] == dataset and "distilled" in row["model"])
        for model in dict.fromkeys(distilled):
            mine = [row for row in rows if row["dataset"] == dataset and row["model"] == model]
            gaps = [100 * (teachers[_key(row)]["test_accuracy"] - row["test_accuracy"]) for row in mine]
            speedups = [row["speedup"] for row in mine]
            gap, speedup = statistics.median(gaps), statistics.median(speedups)
            ok = gap <= WITHIN_POINTS and speedup >= SPEEDUP
            seeds = ", ".join(f"seed {_key(row)[1]}: {g:.2f}" for row, g in zip(mine, gaps))
            lines.append(
                f"- {dataset}, {model}: {gap:.2f} points below the teacher (median of {len(mine)} seed(s); {seeds}; "
                f"target ≤ {WITHIN_POINTS:g}), {speedup:,.1f}× its throughput (target ≥ {SPEEDUP:g}×): "
                f"{'met' if ok else 'missed'}."
            )
    return lines


def previous_rows() -> list[dict[str, Any]]:
    """The rows already in bench/out/distill.json: a run of some datasets or seeds keeps the others'."""
    path = OUT / "distill.json"
    return list(json.loads(path.read_text())["rows"]) if path.is_file() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ajuste-distill")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("sms", "ag"), help="One dataset only.")
    parser.add_argument("--seeds", default=str(DEFAULT_SEED), help="Comma-separated seeds (123).")
    parser.add_argument(
        "--students",
        help="Models to measure again, separated by ';', e.g. 'static, distilled;bag, distilled' (all); the "
        "teacher always is (the others' speed is against it), and the other rows stay as they were measured.",
    )
    args = parser.parse_args()
    students = None if args.students is None else [name.strip() for name in args.students.split(";")]
    if students is not None and not set(students) <= set(MODELS[1:]):
        parser.error(f"--students: expected names among {'; '.join(MODELS[1:])}, separated by ';'")
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["AJUSTE_CACHE_DIR"] = tempfile.mkdtemp(prefix="ajuste-distill-cache-")  # teacher runs afresh
    seeds = [int(seed) for seed in args.seeds.split(",")]
    measured: list[dict[str, Any]] = []
    for name, data_args in datasets(args.data_dir).items():
        if args.only is None or args.only == name:
            for seed in seeds:
                measured.extend(measure(name, data_args, seed, args.work, args.repeat, students))
    done = {(*_key(row), row["model"]) for row in measured}
    rows = [row for row in previous_rows() if (*_key(row), row["model"]) not in done] + measured
    rows.sort(
        key=lambda row: (
            row["dataset"] != "sms",
            row.get("seed", DEFAULT_SEED) != DEFAULT_SEED,
            row.get("seed", DEFAULT_SEED),
            MODELS.index(row["model"]),
        )
    )
    facts = machine()
    write_json("distill", {"machine": facts, "rows": rows})
    header = (
        f"Last measured {facts['date']} on {facts['cpu']}, {facts['cores']} cores, torch {facts['torch']}. "
        "sms: the built-in dataset's default protocol (deduplicated, ham undersampled, 70/10/20); "
        "ag: ../shared/datasets/ag_news_test (7,600 texts, 4 topics), default 70/10/20 split; the seed is the "
        "split's and the training's; `measured`: the date of each row (rows are measured again by dataset, seed "
        "and model) and whether the CPU had native bf16. Every command in a new process, with default settings but "
        "those shown; the "
        "teacher's probabilities and the static student's piece vectors computed afresh (an empty cache). Seconds: "
        "the whole command. Predict: texts per second of `predict` over every text of the dataset (5,574; 7,600), "
        "each model loaded from its folder as `ajuste predict` loads it "
        "(the bag and static students in NumPy, the teacher in PyTorch: bf16 where the CPU has it natively, "
        f"else fp32) and warmed up, median of {args.repeat} "
        "rounds, each round one pass of every model in turn, in one process. Δ: test accuracy minus the teacher's, "
        "in points."
    )
    body = "\n".join([header, "", table(rows), "", *verdicts(rows)])
    update_results("distill", body)
    print(table(rows))
    print("\n".join(verdicts(rows)))


if __name__ == "__main__":
    main()

"""Prediction speed of PyTorch and ONNX Runtime, and the cold start of `ajuste predict`.

1. Throughput: a `minilm --trainable last_block` run on sms-spam (default protocol), exported with
   `ajuste export` in fp32 and int8; each variant predicts all 5,574 texts of the collection (loaded and
   warmed up first, then timed in turns: the median of --repeat rounds) and is scored on the run's test split;
   two ablation rows time the int8 model without ajuste's ONNX Runtime settings.
2. Cold start: seconds from `ajuste predict RUN "text"` (a new process, as a user types it) to its exit, for
   a default `bag` run (and, for comparison, its int8 export and the minilm run); median of --starts runs.

    python bench/bench_export.py [--data-dir ../shared/datasets] [--repeat 5] [--starts 10]

Prints a table, writes bench/out/export.json and the `export` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA_DIR, machine, pct, run_cli, update_results, write_json

AJUSTE = str(Path(sys.executable).parent / "ajuste")


def timed_pass(model: Any, texts: list[str], precision: str | None) -> float:
    started = time.perf_counter()
    model.predict(texts, precision=precision)
    return len(texts) / (time.perf_counter() - started)


def test_split(run: Path) -> Any:
    import ajuste
    from ajuste.runs.folder import RunFolder

    run_file = RunFolder(run).read_run_file()
    assert run_file is not None
    return ajuste.load_data(run_file.config.data, seed=run_file.config.seed).test


def throughput(run: Path, scratch: Path, texts: list[str], repeat: int) -> list[dict[str, Any]]:
    """Every variant loaded and warmed up, then timed in turns (one pass each per round): a machine that speeds
    up or slows down during the benchmark moves every variant alike, not the last ones measured."""
    import ajuste
    import ajuste.training.onnx as onnx_runtime

    exported = {}
    for quantize in (None, "int8"):
        flags = ["--quantize", quantize] if quantize else []
        summary, seconds = run_cli(["export", str(run), "--out", str(scratch / f"onnx-{quantize}"), *flags])
        exported[quantize] = (Path(summary["run_dir"]), summary, seconds)
    test = test_split(run)
    int8 = exported["int8"][0]
    models: dict[str, tuple[Any, str | None, Path, Any]] = {
        "PyTorch fp32": (ajuste.load(run), "fp32", run, None),
        "PyTorch bf16": (ajuste.load(run), "bf16", run, None),
        "ONNX fp32": (ajuste.load(exported[None][0]), None, exported[None][0], exported[None]),
        "ONNX int8": (ajuste.load(int8), None, int8, exported["int8"]),
    }
    # Ablations of the two choices ajuste makes for ONNX Runtime (see ajuste/training/onnx.py): batches run one
    # after another on one session of a thread per core, and ONNX Runtime's own graph rewrites all left on.
    one_after_another = ajuste.load(int8)
    one_after_another.cores = 1
    models["ONNX int8, batches one after another"] = (one_after_another, None, int8, exported["int8"])
    for model, precision, _, _ in models.values():
        model.predict(texts[:64], precision=precision)
        model.predict(texts, precision=precision)  # the second session of an ONNX model is made here
    chosen = onnx_runtime.DISABLED_OPTIMIZERS
    onnx_runtime.DISABLED_OPTIMIZERS = []
    try:  # both of its sessions made with every rewrite on
        all_rewrites = ajuste.load(int8)
        all_rewrites.predict(texts[:64])
        all_rewrites.predict(texts)
        models["ONNX int8, all of ONNX Runtime's graph rewrites"] = (all_rewrites, None, int8, exported["int8"])
    finally:
        onnx_runtime.DISABLED_OPTIMIZERS = chosen
    speeds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeat):
        for name, (model, precision, _, _) in models.items():
            speeds[name].append(timed_pass(model, texts, precision))
    rows = []
    for name, (model, precision, folder, export) in models.items():
        speed = statistics.median(speeds[name])
        metrics = model.evaluate(test, precision=precision)
        row = {
            "variant": name,
            "texts_per_second": round(speed, 1),
            "passes": [round(value, 1) for value in speeds[name]],
            "test_accuracy": metrics["accuracy"],
            "test_texts": metrics["n"],
            "model_bytes": sum(p.stat().st_size for p in (folder / "model").rglob("*") if p.is_file()),
        }
        if export:
            row["export_seconds"] = round(export[2], 1)
            row["max_probability_difference"] = export[1]["max_probability_difference"]
        rows.append(row)
        print(f"{name:48s} {speed:8.1f} texts/s  test {pct(metrics['accuracy'])}", flush=True)
    return rows


def cold_start(runs: dict[str, Path], starts: int) -> list[dict[str, Any]]:
    rows = []
    for name, run in runs.items():
        seconds = []
        for _ in range(starts):
            started = time.perf_counter()
            subprocess.run([AJUSTE, "predict", str(run), "WINNER! Claim your free prize now", "--quiet"], check=True)
            seconds.append(time.perf_counter() - started)
        rows.append(
            {"run": name, "median_seconds": round(statistics.median(seconds), 3), "max_seconds": round(max(seconds), 3)}
        )
        print(f"cold start {name:22s} median {statistics.median(seconds):.2f} s  max {max(seconds):.2f} s", flush=True)
    return rows


def all_texts(data_dir: str) -> list[str]:
    from ajuste.data import DataSettings, load_table

    table = load_table(DataSettings(dataset="sms-spam", data_dir=data_dir))
    return [t or "" for t in table.texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--repeat", type=int, default=5, help="Timed rounds over all texts (median).")
    parser.add_argument("--starts", type=int, default=10, help="Cold starts timed per run (median).")
    args = parser.parse_args()
    data = ["--dataset", "sms-spam", "--data-dir", args.data_dir]
    texts = all_texts(args.data_dir)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        minilm, minilm_seconds = run_cli(
            ["train", *data, "--model", "minilm", "--trainable", "last_block", "--out", str(scratch / "minilm")]
        )
        print(f"minilm last_block trained in {minilm_seconds:.0f} s, test {pct(minilm['test']['accuracy'])}")
        speed = throughput(Path(minilm["run_dir"]), scratch, texts, args.repeat)
        bag, _ = run_cli(["train", *data, "--model", "bag", "--out", str(scratch / "bag")])
        bag_int8, _ = run_cli(["export", bag["run_dir"], "--quantize", "int8", "--out", str(scratch / "bag-int8")])
        starts = cold_start(
            {
                "bag": Path(bag["run_dir"]),
                "bag, ONNX int8": Path(bag_int8["run_dir"]),
                "minilm last_block": Path(minilm["run_dir"]),
            },
            args.starts,
        )
    info = machine()
    write_json("export", {"machine": info, "texts": len(texts), "throughput": speed, "cold_start": starts})
    by_name = {row["variant"]: row for row in speed}
    ratio = by_name["ONNX int8"]["texts_per_second"] / by_name["PyTorch bf16"]["texts_per_second"]
    lines = [
        "## Prediction speed: PyTorch and ONNX Runtime; cold start (bench/bench_export.py)",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, torch {info['torch']}. A `minilm "
        "--trainable last_block` run on sms-spam (default protocol, seed 123), exported by `ajuste export` (fp32, "
        f"and `--quantize int8`). Texts per second: `predict` over all {len(texts):,} texts of the collection, the "
        f"model loaded and warmed up first; every variant timed in turn, one pass each per round, median of "
        f"{args.repeat} rounds; test accuracy on the run's test split. The last two rows are ablations of "
        "`ajuste`'s ONNX Runtime settings (src/ajuste/training/onnx.py): the batches of one call run side by "
        "side, one per core, and ONNX Runtime's fused residual-add + layer norm is turned off.",
        "",
        "| variant | texts/s | test accuracy | test texts | model size |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['variant']} | {r['texts_per_second']:,.0f} | {pct(r['test_accuracy'])} | {r['test_texts']} | "
            f"{r['model_bytes'] / 2**20:.1f} MB |"
            for r in speed
        ),
        "",
        f"ONNX int8 predicts {ratio:.2f}x as many texts per second as PyTorch bf16, at "
        f"{100 * (by_name['ONNX int8']['test_accuracy'] - by_name['PyTorch bf16']['test_accuracy']):+.2f} points "
        "of test accuracy.",
        "",
        f'Cold start: `ajuste predict RUN "text"` in a new process, to its exit; median and slowest of {args.starts}.',
        "",
        "| run | median seconds | slowest |",
        "| --- | ---: | ---: |",
        *(f"| {r['run']} | {r['median_seconds']:.2f} | {r['max_seconds']:.2f} |" for r in starts),
    ]
    update_results("export", "\n".join(lines))


if __name__ == "__main__":
    main()

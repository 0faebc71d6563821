"""Every family at its defaults, on both shared datasets: test accuracy, seconds, prediction speed.

For each dataset (sms-spam with its default protocol; ag_news_test with the default 70/10/20 split) and
each row, the real `ajuste train` runs in a new process (imports, data, training, evaluation and the run
folder inside the timing); then, in this process, the run folder is loaded and every text of the dataset
is predicted, timed after a short warm-up: texts per second of `predict` alone.

    python bench/bench_families.py [--data-dir ../shared/datasets] [--rows linear,bag,...] [--datasets sms,ag]

Prints a table, writes bench/out/families.json and the `families` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA_DIR, OUT, machine, pct, run_cli, update_results, write_json

# name, flags of `ajuste train`
ROWS: list[tuple[str, list[str]]] = [
    ("linear", ["--model", "linear"]),
    ("bag", ["--model", "bag"]),
    ("gpt", ["--model", "gpt"]),
    ("minilm-last_block", ["--model", "minilm", "--trainable", "last_block"]),
    ("minilm-all", ["--model", "minilm", "--trainable", "all"]),
    # the bundled MiniLM's vectors of its word pieces in the training texts' context, frozen, under a linear layer:
    # by default its last layer's beside its embedding layer's; the last layer's alone (the default until 2026-12-01)
    ("static", ["--model", "static"]),
    ("static-last", ["--model", "static", "--layers", "last"]),
]


def datasets(data_dir: str) -> dict[str, tuple[list[str], Path]]:
    """The `ajuste train` flags of each dataset, and the file whose texts are predicted."""
    shared = Path(data_dir)
    return {
        "sms": (["--dataset", "sms-spam", "--data-dir", data_dir], shared / "sms_spam" / "SMSSpamCollection"),
        "ag": (
            ["--data", str(shared / "ag_news_test" / "ag_news_test.csv")],
            shared / "ag_news_test" / "ag_news_test.csv",
        ),
    }


def all_texts(path: Path) -> list[str]:
    from ajuste.data import DataSettings, load_table

    table = load_table(DataSettings(path=str(path)))
    return [t or "" for t in table.texts]


def prediction_speed(run: Path, texts: list[str]) -> float:
    """Texts per second of ``predict`` over every text, the model loaded and warmed up beforehand."""
    import ajuste

    model = ajuste.load(run)
    model.predict(texts[:64])
    started = time.perf_counter()
    model.predict(texts)
    return len(texts) / (time.perf_counter() - started)


def measure(name: str, flags: list[str], data_flags: list[str], texts: list[str], scratch: Path) -> dict[str, Any]:
    out = scratch / name
    summary, seconds = run_cli(["train", *data_flags, *flags, "--out", str(out)], timeout=7200)
    return {
        "row": name,
        "command": "ajuste train " + " ".join(flags),
        "seconds": round(seconds, 1),
        "val": summary["val"]["accuracy"],
        "test": summary["test"]["accuracy"],
        "test_ci95": summary["test"]["accuracy_ci95"],
        "test_texts": summary["data"]["test"],
        "predict_texts_per_second": round(prediction_speed(out, texts), 1),
        "predicted_texts": len(texts),
        "measured": machine()["date"],
        "bf16_native": machine()["bf16_native"],
    }


def when(row: dict[str, Any]) -> str:
    """The row's date, and whether its CPU had native bf16 (pretrained models predict in bf16 only where it has)."""
    native = row.get("bf16_native")
    return row["measured"] + ("" if native is None else ", native bf16" if native else ", no native bf16")


def table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| dataset | command | seconds | val acc | test acc (95% interval) | test texts | predict texts/s | measured |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for dataset, rows in results.items():
        for r in rows:
            low, high = r["test_ci95"]
            lines.append(
                f"| {dataset} | `{r['command']}` | {r['seconds']:.1f} | {pct(r['val'])} | "
                f"{pct(r['test'])} ({pct(low)}–{pct(high)}) | {r['test_texts']} | "
                f"{r['predict_texts_per_second']:,.0f} | {when(r)} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--rows", default=",".join(r[0] for r in ROWS), help="Comma-separated row names.")
    parser.add_argument("--datasets", default="sms,ag", help="Comma-separated: sms, ag.")
    args = parser.parse_args()
    rows, chosen = args.rows.split(","), args.datasets.split(",")
    previous = OUT / "families.json"
    results: dict[str, list[dict[str, Any]]] = {}
    if previous.exists():  # rows not re-run this time keep their last measurement
        import json

        found = json.loads(previous.read_text())
        results = found["results"]
        for row in (r for rows_of in results.values() for r in rows_of):  # when each kept row was measured
            row.setdefault("measured", found["machine"]["date"])
    with tempfile.TemporaryDirectory() as scratch:
        for dataset, (data_flags, file) in datasets(args.data_dir).items():
            if dataset not in chosen:
                continue
            texts = all_texts(file)
            kept = {r["row"]: r for r in results.get(dataset, [])}
            for name, flags in ROWS:
                if name not in rows:
                    continue
                row = measure(name, flags, data_flags, texts, Path(scratch) / dataset)
                kept[name] = row
                print(
                    f"{dataset:4s} {name:20s} {row['seconds']:7.1f}s  val {pct(row['val'])}  test {pct(row['test'])}  "
                    f"predict {row['predict_texts_per_second']:,.0f} texts/s",
                    flush=True,
                )
            results[dataset] = [kept[name] for name, _ in ROWS if name in kept]
    info = machine()
    write_json("families", {"machine": info, "results": results})
    lines = [
        "## Every family at its defaults, on both datasets (bench/bench_families.py)",
        "",
        f"Measured {', '.join(sorted({r['measured'] for rs in results.values() for r in rs}))} (each row's date in "
        f"its last column) on {info['cpu']}, {info['cores']} cores, torch {info['torch']}. sms: the built-in "
        "dataset's default protocol (deduplicated, ham undersampled, 70/10/20, seed 123); ag: "
        "../shared/datasets/ag_news_test (7,600 texts, 4 topics) with the default 70/10/20 split, seed 123. "
        "Seconds: the whole `ajuste train` command in a new process. Predict: texts per second of `predict` "
        "over every text of the dataset (5,574 SMS; 7,600 news), the run loaded and warmed up first. The CPU "
        "changed on 2026-12-01 (no native bf16 since): seconds and speeds of rows of different dates do not compare.",
        "",
        *table(results),
    ]
    update_results("families", "\n".join(lines))


if __name__ == "__main__":
    main()

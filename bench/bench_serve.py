"""`ajuste serve` under load from a client on loopback: requests per second and latency.

A default `bag` run and a `minilm --trainable last_block` run are trained on sms-spam (default protocol) and
each served by `ajuste serve` (default settings: up to 64 texts per model call, no added wait) in its own process.
Then 1, 8 and 32 concurrent clients (threads, one keep-alive connection each) send `POST /v1/predict` with
one SMS text per request, --requests requests per client after a warm-up; every answer is checked (status
200, one prediction). Latency: from sending a request to its answer.

    python bench/bench_serve.py [--data-dir ../shared/datasets] [--requests 200]

Prints a table, writes bench/out/serve.json and the `serve` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_DATA_DIR, machine, run_cli, update_results, write_json

AJUSTE = str(Path(sys.executable).parent / "ajuste")
CLIENTS = (1, 8, 32)
#: The default (no added wait) and a server that waits 5 ms for more requests before each model call.
BATCHING = {"default": [], "--max-wait-ms 5": ["--max-wait-ms", "5"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(run: Path, flags: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen([AJUSTE, "serve", str(run), "--port", str(port), "--quiet", *flags])
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):  # at most a minute for the model to load
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"ajuste serve {run} did not answer /healthz within a minute")


def load(url: str, clients: int, requests: int, texts: list[str]) -> dict[str, Any]:
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for k in range(5):  # warm-up: connection open, batcher running
                http.post("/v1/predict", json={"texts": [texts[(index + k) % len(texts)]]})
            barrier.wait()
            for k in range(requests):
                text = texts[(index * requests + k) % len(texts)]
                started = time.perf_counter()
                answer = http.post("/v1/predict", json={"texts": [text]})
                latencies[index].append(time.perf_counter() - started)
                if answer.status_code != 200 or len(answer.json()["predictions"]) != 1:
                    errors.append(f"{answer.status_code}: {answer.text[:100]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=600)
    seconds = time.perf_counter() - started
    every = sorted(x for client_latencies in latencies for x in client_latencies)
    if errors or len(every) != clients * requests:
        raise RuntimeError(f"{len(errors)} bad answers, {len(every)} of {clients * requests} done: {errors[:3]}")
    return {
        "clients": clients,
        "requests": len(every),
        "requests_per_second": round(len(every) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(every), 2),
        "p99_ms": round(1000 * every[min(len(every) - 1, int(0.99 * len(every)))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--requests", type=int, default=200, help="Requests per client.")
    args = parser.parse_args()
    from ajuste.data import DataSettings, load_table

    texts = [t for t in load_table(DataSettings(dataset="sms-spam", data_dir=args.data_dir)).texts if t]
    data = ["--dataset", "sms-spam", "--data-dir", args.data_dir]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        runs = {
            "bag": ["--model", "bag"],
            "minilm last_block": ["--model", "minilm", "--trainable", "last_block"],
        }
        for name, flags in runs.items():
            summary, _ = run_cli(["train", *data, *flags, "--out", str(scratch / name.split()[0])])
            for batching, serve_flags in BATCHING.items():
                server, url = start(Path(summary["run_dir"]), serve_flags)
                try:
                    for clients in CLIENTS:
                        row = {"model": name, "batching": batching, **load(url, clients, args.requests, texts)}
                        results.append(row)
                        print(
                            f"{name:18s} {batching:16s} {clients:3d} clients  {row['requests_per_second']:8.1f} req/s"
                            f"  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms",
                            flush=True,
                        )
                finally:
                    server.terminate()
                    server.wait(timeout=60)
    info = machine()
    write_json("serve", {"machine": info, "requests_per_client": args.requests, "results": results})
    lines = [
        "## `ajuste serve` under load (bench/bench_serve.py)",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores (server and clients share them), torch "
        f"{info['torch']}. Runs trained on sms-spam (default protocol), served with the default settings "
        "(up to 64 texts per model call, the requests that arrived while the model computed; no added wait), "
        f"and with `--max-wait-ms 5` for comparison. Each client: one keep-alive connection, {args.requests} "
        "requests of one SMS text after 5 warm-up requests; every answer checked. Latency from sending a request "
        "to its answer.",
        "",
        "| model | batching | clients | requests/s | p50 latency | p99 latency |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['model']} | {r['batching']} | {r['clients']} | {r['requests_per_second']:,.0f} | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |"
            for r in results
        ),
    ]
    update_results("serve", "\n".join(lines))


if __name__ == "__main__":
    main()

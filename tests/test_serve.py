"""``ajuste serve``: the micro-batcher alone, then real server processes on loopback ports — every endpoint,
every limit, the API key, 50 concurrent clients, two models at once, the OpenAPI contract, and SIGTERM
while a request is in flight."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ajuste.runs.folder import RunFolder
from ajuste.serve import BatcherStopped, MicroBatcher, open_runs
from ajuste.training.classifier import TextClassifier
from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]
ROOT = Path(__file__).resolve().parents[1]
#: Every wait on the network or on the server process ends by this many seconds.
PATIENCE = 60.0
KEY = "s3cret-key-for-tests"
SMALL_LIMITS = ("--max-texts", "40", "--max-chars", "300", "--max-body-bytes", "30000")
BATCHING = ("--max-batch", "16", "--max-wait-ms", "20")


# -- tiny runs, made by the commands themselves ----------------------------------------------------------


@dataclass(frozen=True)
class Runs:
    spam: Path  # `ajuste train`: a bag model, ham / spam
    tuned: Path  # `ajuste tune`, one trial: a bag model, ham / spam / other, with report.html


def build_runs(folder: Path) -> Runs:
    """A trained run and a tuning run, each through the command line in this process."""
    from ajuste.cli.main import main

    texts, labels = make_texts(60, seed=1)
    spam_data = write_csv(folder / "spam.csv", texts, labels)
    spam = folder / "spam"
    flags = ["--model", "bag", "--embed-dim", "16", "--buckets", "1000", "--lr", "0.05", "--epochs", "3"]
    assert main(["train", "--data", str(spam_data), *flags, "--out", str(spam), "--quiet"]) == 0

    texts, labels = make_texts(60, seed=2, classes=("ham", "spam", "other"))
    three_data = write_csv(folder / "three.csv", texts, labels)
    config = folder / "tune.yaml"
    space = {"model.embed_dim": 16, "model.buckets": 1000, "train.lr": 0.05, "train.epochs": [2, 3]}
    config.write_text(yaml.safe_dump({"space": space}), encoding="utf-8")
    tuned = folder / "tuned"
    tune = ["tune", "--data", str(three_data), "--model", "bag", "--config", str(config), "--trials", "1"]
    assert main([*tune, "--sampler", "random", "--pruner", "none", "--out", str(tuned), "--quiet"]) == 0
    assert (tuned / "report.html").is_file()
    return Runs(spam, tuned)


def expected(model: TextClassifier, texts: list[str]) -> list[dict[str, Any]]:
    """What ``ajuste predict --json`` says of ``texts``: the answer the server must give."""
    return model.predict(texts).to_records()


def assert_same_predictions(answer: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> None:
    """Same labels in the same order; probabilities equal up to float32 rounding (a batch's neighbours may
    change the order of additions)."""
    assert [p["label"] for p in answer] == [p["label"] for p in wanted]
    for got, want in zip(answer, wanted):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


# -- a server process ----------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str) -> None:
        """Until ``text`` shows in the server's stderr (bounded)."""
        deadline = time.monotonic() + PATIENCE
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server never logged {text!r}; its stderr:\n{self.log()[-3000:]}")
            time.sleep(0.05)


def _wait_until_up(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    """The server's URL, from the JSON line it prints at start, once /healthz answers (bounded)."""
    deadline = time.monotonic() + PATIENCE
    url = None
    while True:
        if process.poll() is not None:
            pytest.fail(f"ajuste serve exited with {process.returncode}:\n{stderr.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"ajuste serve did not answer /healthz within {PATIENCE:.0f} s")
        if url is None:
            lines = stdout.read_text(encoding="utf-8", errors="replace").splitlines()
            url = next((json.loads(line)["url"] for line in lines if line.startswith("{")), None)
        if url is not None:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
        time.sleep(0.05)


@contextmanager
def running_server(
    runs: Sequence[Path], folder: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """``ajuste serve RUNS --port 0 FLAGS`` as a process: yielded once it answers, stopped with SIGTERM after,
    and required to exit 0."""
    folder.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k != "AJUSTE_API_KEY"}
    environment.update({"AJUSTE_THREADS": "1", "AJUSTE_CACHE_DIR": str(folder / "cache"), **(env or {})})
    command = [sys.executable, "-m", "ajuste.cli.main", "serve", *map(str, runs), "--port", "0", "--json", *flags]
    stdout, stderr = folder / "stdout.txt", folder / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=environment, cwd=ROOT)
    try:
        server = Server(process, _wait_until_up(process, stdout, stderr), stdout, stderr)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=PATIENCE)
            raise AssertionError(f"ajuste serve did not stop within {PATIENCE:.0f} s of SIGTERM") from None
    assert code == 0, f"ajuste serve exited with {code} after SIGTERM:\n{server.log()[-3000:]}"
    assert "stopped by SIGTERM" in server.log()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return build_runs(tmp_path_factory.mktemp("serve-runs"))


@pytest.fixture(scope="module")
def models(runs: Runs) -> dict[str, TextClassifier]:
    """The served models, loaded in the test: what the server's answers are compared with."""
    return {"spam": RunFolder.open(runs.spam).load(), "tuned": RunFolder.open(runs.tuned).load()}


@pytest.fixture(scope="module")
def two_models(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Both runs behind one server, with small limits and batches."""
    folder = tmp_path_factory.mktemp("two-models")
    with running_server([runs.spam, runs.tuned], folder, *SMALL_LIMITS, *BATCHING) as server:
        yield server


@pytest.fixture(scope="module")
def keyed(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One run behind a server whose key comes from $AJUSTE_API_KEY."""
    folder = tmp_path_factory.mktemp("keyed")
    with running_server([runs.spam], folder, env={"AJUSTE_API_KEY": KEY}) as server:
        yield server


# -- the micro-batcher alone ---------------------------------------------------------------------------------


def batched(
    requests: list[list[str]], *, max_batch: int, fail: bool = False
) -> tuple[list[list[str] | BaseException], list[list[str]]]:
    """Submit ``requests`` together to a batcher whose model upper-cases texts; (answers, model calls)."""
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        if fail:
            raise ValueError("the model broke")
        return [text.upper() for text in texts]

    async def scenario() -> list[list[str] | BaseException]:
        batcher: MicroBatcher[str] = MicroBatcher("m", predict, max_batch=max_batch, max_wait=0.0)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(texts) for texts in requests), return_exceptions=True)
        await batcher.stop()
        return answers

    return asyncio.run(asyncio.wait_for(scenario(), PATIENCE)), calls


def test_requests_that_wait_together_share_one_model_call_and_each_gets_its_own_slice() -> None:
    requests = [["a", "b"], ["c"], [], ["d", "e", "f"]]
    answers, calls = batched(requests, max_batch=64)
    assert answers == [["A", "B"], ["C"], [], ["D", "E", "F"]]
    assert calls == [["a", "b", "c", "d", "e", "f"]]  # an empty request never reaches the model


def test_a_request_larger_than_max_batch_runs_alone() -> None:
    answers, calls = batched([["a", "b", "c", "d"], ["e"], ["f"]], max_batch=3)
    assert answers == [["A", "B", "C", "D"], ["E"], ["F"]]
    assert calls == [["a", "b", "c", "d"], ["e", "f"]]


def test_a_request_that_would_overflow_the_batch_waits_for_the_next() -> None:
    answers, calls = batched([["a", "b"], ["c", "d", "e"], ["f"]], max_batch=4)
    assert answers == [["A", "B"], ["C", "D", "E"], ["F"]]
    assert calls == [["a", "b"], ["c", "d", "e", "f"]]


def test_a_failing_model_fails_the_requests_of_its_batch_with_its_error() -> None:
    answers, calls = batched([["a"], ["b"]], max_batch=64, fail=True)
    assert len(calls) == 1
    assert all(isinstance(answer, ValueError) and "broke" in str(answer) for answer in answers)


def test_stopping_answers_what_is_queued_and_refuses_what_comes_after() -> None:
    async def scenario() -> tuple[list[list[str]], BaseException | None]:
        batcher: MicroBatcher[str] = MicroBatcher("m", lambda t: [x.upper() for x in t], max_batch=1, max_wait=1.0)
        batcher.start()
        waiting = [asyncio.ensure_future(batcher.submit([str(i)])) for i in range(5)]
        await asyncio.sleep(0)  # the five are queued
        await batcher.stop()
        try:
            await batcher.submit(["late"])
        except BatcherStopped as exc:
            return [w.result() for w in waiting], exc
        return [w.result() for w in waiting], None

    answers, refused = asyncio.run(asyncio.wait_for(scenario(), PATIENCE))
    assert answers == [[str(i)] for i in range(5)]
    assert isinstance(refused, BatcherStopped)


# -- the command, in this process: what it refuses -----------------------------------------------------------


def one_line_error(result: CliResult) -> str:
    assert result.code == 2, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def test_without_fastapi_serve_says_what_to_install(cli: Cli, runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an environment without it looks like to import
    line = one_line_error(cli("serve", runs.spam))
    assert 'pip install "ajuste[serve]"' in line and "fastapi" in line


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_key_variable_is_refused(runs: Runs, value: str) -> None:
    # it served every model without a key, as if the variable were unset, while --api-key= was refused; as a
    # process with a time limit, so that a server that starts fails the test instead of holding it
    command = [sys.executable, "-m", "ajuste.cli.main", "serve", str(runs.spam), "--port", "0"]
    environment = {**os.environ, "AJUSTE_API_KEY": value}
    try:
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=PATIENCE, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise AssertionError("the server started with an empty key") from None
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "$AJUSTE_API_KEY is set, and empty" in done.stderr and "unset AJUSTE_API_KEY" in done.stderr


def test_serve_refuses_bad_settings_a_missing_run_and_a_port_in_use(cli: Cli, runs: Runs, tmp_path: Path) -> None:
    line = one_line_error(cli("serve", runs.spam, "--max-batch", "0", "--max-texts", "-1"))
    assert "--max-batch: must be >= 1" in line and "--max-texts: must be >= 1" in line  # named by the flags typed
    line = one_line_error(cli("serve", runs.spam, "--api-key", "with space"))
    assert "--api-key:" in line and "with space" not in line  # the key is never repeated
    assert "does not exist" in one_line_error(cli("serve", tmp_path / "nothing"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = one_line_error(cli("serve", runs.spam, "--port", str(taken.getsockname()[1])))
    assert "cannot listen on 127.0.0.1" in line and "--port" in line


def test_two_folders_of_one_name_serve_under_two_names(runs: Runs, tmp_path: Path) -> None:
    from ajuste.errors import ConfigError

    copy = shutil.copytree(runs.spam, tmp_path / "other" / runs.spam.name)
    assert [model.name for model in open_runs([runs.spam, copy])] == ["spam", "spam-2"]
    link = tmp_path / "latest"
    link.symlink_to(runs.spam)
    with pytest.raises(ConfigError, match="given twice"):
        open_runs([runs.spam, link])


def test_an_exported_run_serves_with_onnx_runtime(cli: Cli, runs: Runs, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    exported = tmp_path / "spam-onnx"
    assert cli("export", runs.spam, "--out", exported, "--quiet").code == 0
    (model,) = open_runs([exported])
    assert model.describe()["runtime"] == "onnx" and model.describe()["labels"] == ["ham", "spam"]
    texts = ["win cash now", "see you at lunch"]
    assert_same_predictions(expected(model.classifier, texts), expected(RunFolder.open(runs.spam).load(), texts))


# -- endpoints ----------------------------------------------------------------------------------------------


def test_health_and_the_page_that_loads_nothing_from_elsewhere(two_models: Server) -> None:
    assert httpx.get(f"{two_models.url}/healthz", timeout=PATIENCE).json() == {"status": "ok"}
    assert httpx.head(f"{two_models.url}/healthz", timeout=PATIENCE).status_code == 200  # as uptime checks probe
    page = httpx.get(f"{two_models.url}/", timeout=PATIENCE)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<textarea" in page.text and "Predict" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_models_describe_each_run(two_models: Server, runs: Runs) -> None:
    listed = {m["name"]: m for m in httpx.get(f"{two_models.url}/v1/models", timeout=PATIENCE).json()["models"]}
    assert list(listed) == ["spam", "tuned"]
    assert listed["spam"]["labels"] == ["ham", "spam"] and listed["tuned"]["labels"] == ["ham", "other", "spam"]
    for name, run in (("spam", runs.spam), ("tuned", runs.tuned)):
        model = listed[name]
        assert model["family"] == "bag" and model["runtime"] == "pytorch" and model["settings"]["family"] == "bag"
        assert (
            model["metrics"]["test"]["accuracy"] == json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
        )
    assert listed["spam"]["report"] is None
    assert listed["tuned"]["report"] == "/v1/models/tuned/report"


def test_the_report_of_a_tuning_run_and_nothing_else(two_models: Server, runs: Runs) -> None:
    report = httpx.get(f"{two_models.url}/v1/models/tuned/report", timeout=PATIENCE)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.content == (runs.tuned / "report.html").read_bytes()
    for name in ("spam", "nobody", "..", "tuned%2F..%2Fspam"):
        assert httpx.get(f"{two_models.url}/v1/models/{name}/report", timeout=PATIENCE).status_code == 404


def test_openapi_describes_the_api(two_models: Server) -> None:
    schema = httpx.get(f"{two_models.url}/openapi.json", timeout=PATIENCE).json()
    assert {"/v1/predict", "/v1/models", "/v1/models/{name}/report", "/healthz"} <= set(schema["paths"])
    assert httpx.get(f"{two_models.url}/docs", timeout=PATIENCE).status_code == 200


def test_each_model_answers_in_input_order_as_in_the_test(
    two_models: Server, models: dict[str, TextClassifier]
) -> None:
    texts, _ = make_texts(12, seed=5, classes=("ham", "spam", "other"))
    texts += ["", "   ", "ünïcödé ✓ text 🚀"]
    for name, model in models.items():
        answer = httpx.post(f"{two_models.url}/v1/predict", json={"texts": texts, "model": name}, timeout=PATIENCE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == name
        assert_same_predictions(answer.json()["predictions"], expected(model, texts))


def test_a_lone_surrogate_is_predicted_as_a_replacement_character(
    two_models: Server, models: dict[str, TextClassifier]
) -> None:
    # valid JSON ("\\ud800" escapes half of a UTF-16 pair), which UTF-8 cannot hold: the bag's n-gram hashing
    # failed on it, and with it every other client's texts in the same batch (500)
    body = b'{"texts": ["free prize \\ud800 now", "see you at lunch"], "model": "spam"}'
    answer = post(two_models, body)
    assert answer.status_code == 200, answer.text
    texts = ["free prize \ufffd now", "see you at lunch"]
    assert_same_predictions(answer.json()["predictions"], expected(models["spam"], texts))


def test_a_request_larger_than_max_batch_is_answered_whole(
    two_models: Server, models: dict[str, TextClassifier]
) -> None:
    texts, _ = make_texts(40, seed=6)  # --max-texts 40, --max-batch 16
    answer = httpx.post(f"{two_models.url}/v1/predict", json={"texts": texts, "model": "spam"}, timeout=PATIENCE)
    assert answer.status_code == 200
    assert_same_predictions(answer.json()["predictions"], expected(models["spam"], texts))


def test_no_texts_is_no_predictions(two_models: Server) -> None:
    answer = httpx.post(f"{two_models.url}/v1/predict", json={"texts": [], "model": "tuned"}, timeout=PATIENCE)
    assert answer.status_code == 200 and answer.json() == {"model": "tuned", "predictions": []}


def test_the_model_must_be_named_when_several_are_served_and_known(two_models: Server) -> None:
    unnamed = httpx.post(f"{two_models.url}/v1/predict", json={"texts": ["hi"]}, timeout=PATIENCE)
    assert unnamed.status_code == 422
    (problem,) = unnamed.json()["detail"]
    assert problem["loc"] == ["body", "model"] and "spam" in problem["msg"] and "tuned" in problem["msg"]
    unknown = httpx.post(f"{two_models.url}/v1/predict", json={"texts": ["hi"], "model": "bert"}, timeout=PATIENCE)
    assert unknown.status_code == 404
    assert "'bert'" in unknown.json()["detail"] and "spam, tuned" in unknown.json()["detail"]


# -- limits ---------------------------------------------------------------------------------------------


def post(server: Server, content: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/predict",
        content=content,
        headers={"Content-Type": "application/json", **headers},
        timeout=PATIENCE,
    )


def test_too_many_texts_are_refused_with_the_limit(two_models: Server) -> None:
    answer = httpx.post(f"{two_models.url}/v1/predict", json={"texts": ["x"] * 41, "model": "spam"}, timeout=PATIENCE)
    assert answer.status_code == 413
    assert "41 texts" in answer.json()["detail"] and "at most 40" in answer.json()["detail"]


def test_a_text_too_long_is_refused_by_its_index(two_models: Server) -> None:
    texts = ["short", "x" * 300, "y" * 301]
    answer = httpx.post(f"{two_models.url}/v1/predict", json={"texts": texts, "model": "spam"}, timeout=PATIENCE)
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "texts", 2] and "text 2 has 301 characters" in problem["msg"]
    assert "y" * 50 not in answer.text  # the input is not echoed back


def test_a_body_too_large_is_refused_whether_announced_or_streamed(two_models: Server) -> None:
    body = json.dumps({"texts": ["z" * 250] * 150, "model": "spam"}).encode()  # ~38 kB > --max-body-bytes 30000
    announced = post(two_models, body)
    assert announced.status_code == 413 and "30000 bytes" in announced.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked, counted as it arrives
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    streamed = post(two_models, chunks())
    assert streamed.status_code == 413 and "30000 bytes" in streamed.json()["detail"]
    assert post(two_models, body[:100]).status_code == 422  # the server is still there; a cut body is bad JSON


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (b'{"texts": ["a", ', ["body", 16]),  # not JSON: where it broke
        (b'{"texts": ["a", 3], "model": "spam"}', ["body", "texts", 1]),
        (b'{"text": ["a"], "model": "spam"}', ["body", "texts"]),
        (b'{"texts": "one text", "model": "spam"}', ["body", "texts"]),
        (b'["a", "b"]', ["body"]),
        ('{"texts": ["café"], "model": "spam"}'.encode("latin-1"), ["body"]),  # not UTF-8: was a bare 400
        (b"[" * 5000 + b"]" * 5000, ["body"]),  # deeper than the JSON reader goes: was a bare 400
    ],
)
def test_malformed_requests_are_refused_with_the_field_named(two_models: Server, body: bytes, location: list) -> None:
    answer = post(two_models, body)
    assert answer.status_code == 422
    assert location in [problem["loc"] for problem in answer.json()["detail"]]


@pytest.mark.parametrize(
    ("sent_as", "said"),
    [
        # `curl -d` sends a form: "Input should be a valid dictionary", of a body that is one
        ("application/x-www-form-urlencoded", "sent with the header Content-Type: application/json; got Content-Type"),
        ("text/plain", "(with curl: -H 'Content-Type: application/json')"),
        ("application/json", 'the body must be a JSON object, such as {"texts": ["a text to classify"]}'),
    ],
)
def test_a_body_that_is_not_a_json_object_says_how_to_send_one(two_models: Server, sent_as: str, said: str) -> None:
    body = b'{"texts": ["hi"], "model": "spam"}' if sent_as != "application/json" else b'["hi"]'
    answer = post(two_models, body, **{"Content-Type": sent_as})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body"] and said in problem["msg"], problem


# -- many clients, the contract, the key --------------------------------------------------------------------


def test_fifty_concurrent_clients_each_get_their_own_answers(
    two_models: Server, models: dict[str, TextClassifier]
) -> None:
    clients = 50
    requests = []
    for i in range(clients):
        name = ("spam", "tuned")[i % 2]
        texts, _ = make_texts(1 + i % 5, seed=1000 + i, classes=("ham", "spam", "other"))
        requests.append((name, [f"{text} client {i}" for text in texts]))
    start = threading.Barrier(clients, timeout=PATIENCE)

    def ask(request: tuple[str, list[str]]) -> httpx.Response:
        name, texts = request
        start.wait()  # all at once: their texts share model calls
        return client.post("/v1/predict", json={"texts": texts, "model": name})

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(base_url=two_models.url, timeout=PATIENCE, limits=limits) as client:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            answers = list(pool.map(ask, requests, timeout=2 * PATIENCE))
    for (name, texts), answer in zip(requests, answers):
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == name
        assert_same_predictions(answer.json()["predictions"], expected(models[name], texts))


def test_the_api_keeps_its_openapi_contract(two_models: Server) -> None:
    """Generated requests, valid and invalid: never a 5xx, and every answer as the description says.
    (Valid requests may still be refused: a generated model name is rarely one that is served.)"""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(f"{two_models.url}/openapi.json", timeout=PATIENCE)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5  # predict, models, a report, health (GET and HEAD)
    for operation in operations:
        # Invalid input can be made only where there is a body: a path's string is always a valid string.
        negative = (schemathesis.GenerationMode.NEGATIVE,) if operation.body else ()
        for mode in (schemathesis.GenerationMode.POSITIVE, *negative):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def conforms(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=two_models.url, timeout=PATIENCE, excluded_checks=[positive_data_acceptance]
                )

            conforms()


def test_the_key_guards_every_endpoint_but_healthz_and_the_page(
    keyed: Server, models: dict[str, TextClassifier]
) -> None:
    def get(path: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{keyed.url}{path}", headers=headers, timeout=PATIENCE)

    assert get("/healthz").status_code == 200
    assert get("/").status_code == 200  # the page holds no data; it asks for the key
    for path in ("/v1/models", "/v1/models/spam/report", "/openapi.json", "/docs"):
        refused = get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "X-API-Key" in refused.json()["detail"]
    for wrong in ({"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": KEY}):
        assert get("/v1/models", **wrong).status_code == 401
    assert get("/v1/models", Authorization=f"Bearer {KEY}").status_code == 200
    assert get("/v1/models", **{"X-API-Key": KEY}).status_code == 200

    texts = ["win cash now", "see you at lunch"]
    refused = httpx.post(f"{keyed.url}/v1/predict", content=b"{not json", timeout=PATIENCE)
    assert refused.status_code == 401  # the key is asked before anything of the request is read
    for header in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        answer = httpx.post(f"{keyed.url}/v1/predict", json={"texts": texts}, headers=header, timeout=PATIENCE)
        assert answer.status_code == 200  # one model served: no need to name it
        assert_same_predictions(answer.json()["predictions"], expected(models["spam"], texts))
    schema = get("/openapi.json", **{"X-API-Key": KEY}).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert KEY not in keyed.output() + keyed.log()


# -- stopping -------------------------------------------------------------------------------------------------


def test_sigterm_while_a_request_is_in_flight_still_answers_it(
    runs: Runs, models: dict[str, TextClassifier], tmp_path: Path
) -> None:
    # 256 texts (the default --max-texts) of 18,000 characters: long enough for the model that the signal
    # lands while it computes; were it done first, the test would still hold (and still pass).
    texts = [" ".join([text] * 700)[:18_000] for text in make_texts(256, seed=9)[0]]
    with running_server([runs.spam], tmp_path, "--verbose", "--max-body-bytes", "8000000") as server:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{server.url}/v1/predict", json={"texts": texts}, timeout=PATIENCE)
            # The batcher logs when the model starts on the request: from then on it is in flight.
            server.wait_for_log("model spam: 256 texts from 1 requests in one call")
            server.process.send_signal(signal.SIGTERM)
            answer = pending.result(timeout=PATIENCE)
        assert answer.status_code == 200, answer.text
        assert_same_predictions(answer.json()["predictions"], expected(models["spam"], texts))
        assert server.process.wait(timeout=PATIENCE) == 0
    assert "every request in flight was answered" in server.log()

"""The page at ``/`` in a real browser (Debian's chromium through Playwright), against a real server that
asks for an API key and serves two models: type the key, choose a model, type two texts, predict, and
read back the labels and bars; open the tuning report through the page. A screenshot is kept."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ajuste.runs.folder import RunFolder
from tests.test_serve import KEY, PATIENCE, Runs, Server, build_runs, expected, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = PATIENCE * 1000


def unavailable(what: str) -> None:
    """Skip, saying what to install; on CI (CI=true) a missing browser is a failure, not a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: the browser test must run)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable('Playwright is not installed: pip install "ajuste[test]" (or pip install playwright)')
    if not CHROMIUM.is_file():
        unavailable(f"no chromium at {CHROMIUM}: apt-get install chromium (Playwright's own download is not used)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return build_runs(tmp_path_factory.mktemp("browser-runs"))


@pytest.fixture(scope="module")
def server(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("browser-server")
    with running_server([runs.spam, runs.tuned], folder, "--api-key", KEY) as running:
        yield running


def test_the_page_predicts_with_the_chosen_model_and_the_key(
    browser: Any, server: Server, runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    texts = ["win a free prize now call", "see you at home for dinner mum"]
    model = RunFolder.open(runs.tuned).load()
    page = browser.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    try:
        page.goto(server.url, timeout=WAIT_MS)
        # The models need the key: the page asks for it, and lists the models once it is typed.
        expect(page.locator("#key")).to_be_visible(timeout=WAIT_MS)
        page.fill("#key", KEY)
        page.press("#key", "Tab")
        expect(page.locator("#model-field")).to_be_visible(timeout=WAIT_MS)
        page.select_option("#model", "tuned")
        expect(page.locator("#report")).to_be_visible(timeout=WAIT_MS)

        page.fill("#texts", "\n".join(texts) + "\n\n")
        page.click("#predict")
        results = page.locator("#results .result")
        expect(results).to_have_count(len(texts), timeout=WAIT_MS)
        wanted = expected(model, texts)
        assert page.locator("#results .label").all_text_contents() == [p["label"] for p in wanted]
        for result, prediction in zip(results.all(), wanted):
            shown = result.locator(".bar")
            assert shown.locator(".class").all_text_contents() == list(prediction["probabilities"])
            numbers = [float(n) for n in shown.locator(".p").all_text_contents()]
            assert numbers == pytest.approx(list(prediction["probabilities"].values()), abs=6e-4)
        shot = tmp_path / "serve-page.png"
        page.screenshot(path=str(shot), full_page=True)
        with capsys.disabled():
            print(f"\nscreenshot of the try-it page: {shot}")

        with page.expect_popup(timeout=WAIT_MS) as opened:  # the report, fetched with the key
            page.click("#report")
        report = opened.value
        expect(report).to_have_title(re.compile("^Tuning report"), timeout=WAIT_MS)
    finally:
        page.close()
    # No script error and no request refused by the page's policy; only the first, keyless, call is refused.
    assert [p for p in problems if "status of 401" not in p] == [] and len(problems) == 1
    assert all(url.startswith(server.url) or url.startswith(("data:", "about:")) for url in requested), requested

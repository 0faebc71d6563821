"""Built-in datasets: found in a data directory or the cache, else downloaded once (offline: a local server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ajuste.data import DataSettings, load_table, resolved_balance
from ajuste.data.builtin import (
    BUILTIN_DATASETS,
    SMS_SPAM,
    BuiltinDataset,
    cache_dir,
    dataset_status,
    get_builtin,
    locate,
)
from ajuste.errors import ConfigError, DatasetUnavailableError
from tests.conftest import CliResult

CONTENT = b'ham\tsee you at lunch\nspam\tWIN a "free" prize now\nham\tok thanks\n'
EXPECTED_TAIL = Path("tiny") / "tiny.tsv"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data directory from the environment, and a cache of our own."""
    monkeypatch.delenv("AJUSTE_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("AJUSTE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> BuiltinDataset:
    """A three-line dataset registered under the name ``tiny``, with the checksum of CONTENT."""
    dataset = BuiltinDataset(
        name="tiny",
        description="three messages",
        folder="tiny",
        filename="tiny.tsv",
        url="http://127.0.0.1:9/never-used.zip",
        member="inside/tiny.tsv",
        sha256=hashlib.sha256(CONTENT).hexdigest(),
        rows=3,
        file_format="lines",
        defaults={"balance": "oversample"},
    )
    monkeypatch.setitem(BUILTIN_DATASETS, dataset.name, dataset)
    return dataset


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str, bytes], str]]:
    """``serve(name, payload)`` puts a file on a local HTTP server and returns its URL."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def put(name: str, payload: bytes) -> str:
        (root / name).write_bytes(payload)
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    yield put
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def dead_url() -> str:
    """A URL on a local port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/dataset.zip"


def zipped(member: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "about the data")
        archive.writestr(member, content)
    return buffer.getvalue()


def cached_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


# -- finding a local copy ------------------------------------------------------------------------


def test_sms_spam_is_registered() -> None:
    assert get_builtin("sms-spam") is SMS_SPAM
    assert SMS_SPAM.relative_path() == Path("sms_spam") / "SMSSpamCollection"
    assert SMS_SPAM.defaults["balance"] == "undersample"


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'sms-spma'") as caught:
        get_builtin("sms-spma")
    assert "one of sms-spam" in str(caught.value)
    assert "ajuste datasets" in str(caught.value)


def test_found_through_the_data_dir_argument(sms_dir: Path, dead_url: str) -> None:
    expected = sms_dir / "sms_spam" / "SMSSpamCollection"
    assert locate("sms-spam", sms_dir, url=dead_url) == expected
    assert locate("sms-spam", str(sms_dir), url=dead_url) == expected
    assert dataset_status(SMS_SPAM, sms_dir) == ("data-dir", expected)


def test_found_through_the_environment(monkeypatch: pytest.MonkeyPatch, sms_dir: Path, dead_url: str) -> None:
    assert dataset_status(SMS_SPAM) == ("missing", None)
    monkeypatch.setenv("AJUSTE_DATA_DIR", str(sms_dir))
    assert locate("sms-spam", url=dead_url) == sms_dir / "sms_spam" / "SMSSpamCollection"
    assert dataset_status(SMS_SPAM)[0] == "AJUSTE_DATA_DIR"


def test_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, sms_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("AJUSTE_DATA_DIR", str(tmp_path))
    assert locate("sms-spam", sms_dir, download=False) == sms_dir / "sms_spam" / "SMSSpamCollection"
    monkeypatch.setenv("AJUSTE_DATA_DIR", str(sms_dir))
    with pytest.raises(DatasetUnavailableError, match="not found in the data directory"):
        locate("sms-spam", tmp_path, download=False)


def test_explicit_data_dir_without_the_file_names_the_expected_path(tmp_path: Path, dead_url: str) -> None:
    empty = tmp_path / "datasets"
    empty.mkdir()
    with pytest.raises(DatasetUnavailableError) as caught:
        locate("sms-spam", empty, url=dead_url)
    message = str(caught.value)
    assert f"not found in the data directory {empty}" in message
    assert f"the file {empty / 'sms_spam' / 'SMSSpamCollection'}" in message
    assert "could not be downloaded" not in message  # an explicit folder is never a reason to download


def test_environment_data_dir_without_the_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: Path, dead_url: str
) -> None:
    monkeypatch.setenv("AJUSTE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetUnavailableError, match=r"nowhere[/\\]sms_spam[/\\]SMSSpamCollection"):
        locate("sms-spam", url=dead_url)
    assert cached_files(isolated) == []


def test_found_in_the_cache(isolated: Path, sms_dir: Path, dead_url: str) -> None:
    cached = isolated / "datasets" / "sms_spam" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True)
    cached.write_bytes((sms_dir / "sms_spam" / "SMSSpamCollection").read_bytes())
    assert locate("sms-spam", url=dead_url) == cached
    assert dataset_status(SMS_SPAM) == ("cache", cached)


def test_data_dir_is_searched_before_the_cache(isolated: Path, sms_dir: Path) -> None:
    cached = isolated / "datasets" / "sms_spam" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True)
    cached.write_text("ham\tcached copy\n", encoding="utf-8")
    assert dataset_status(SMS_SPAM, sms_dir)[0] == "data-dir"
    assert dataset_status(SMS_SPAM)[0] == "cache"


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("AJUSTE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ajuste"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ajuste"


def test_no_download_allowed(tiny: BuiltinDataset) -> None:
    with pytest.raises(DatasetUnavailableError, match="'tiny' is not downloaded") as caught:
        locate("tiny", download=False)
    assert "DIR/tiny/tiny.tsv" in str(caught.value)


# -- downloading ---------------------------------------------------------------------------------


def test_download_checks_and_caches(tiny: BuiltinDataset, isolated: Path, serve: Callable[..., str]) -> None:
    url = serve("good.zip", zipped(tiny.member, CONTENT))
    path = locate("tiny", url=url)
    assert path == isolated / "datasets" / EXPECTED_TAIL
    assert path.read_bytes() == CONTENT
    assert cached_files(isolated) == [path]  # no temporary file left beside it
    assert dataset_status(tiny) == ("cache", path)


def test_second_use_reads_the_cache_without_a_network(
    tiny: BuiltinDataset, serve: Callable[..., str], dead_url: str
) -> None:
    first = locate("tiny", url=serve("good.zip", zipped(tiny.member, CONTENT)))
    assert locate("tiny", url=dead_url) == first


def test_downloaded_dataset_loads_with_its_defaults(tiny: BuiltinDataset, serve: Callable[..., str]) -> None:
    locate("tiny", url=serve("good.zip", zipped(tiny.member, CONTENT)))
    settings = DataSettings(dataset="tiny")
    table = load_table(settings)
    assert table.texts == ["see you at lunch", 'WIN a "free" prize now', "ok thanks"]
    assert table.labels == ["ham", "spam", "ham"]
    assert resolved_balance(settings) == "oversample"
    assert resolved_balance(DataSettings(dataset="tiny", balance="none")) == "none"


def test_wrong_checksum_is_refused_and_nothing_cached(
    tiny: BuiltinDataset, isolated: Path, serve: Callable[..., str]
) -> None:
    tampered = CONTENT + b"spam\tone more line\n"
    url = serve("tampered.zip", zipped(tiny.member, tampered))
    with pytest.raises(DatasetUnavailableError, match="failed its checksum") as caught:
        locate("tiny", url=url)
    assert f"expected sha256 {tiny.sha256}" in str(caught.value)
    assert hashlib.sha256(tampered).hexdigest() in str(caught.value)
    assert cached_files(isolated) == []


def test_not_a_zip(tiny: BuiltinDataset, isolated: Path, serve: Callable[..., str]) -> None:
    with pytest.raises(DatasetUnavailableError, match="not the expected archive"):
        locate("tiny", url=serve("page.zip", b"<html>moved</html>"))
    assert cached_files(isolated) == []


def test_zip_without_the_member(tiny: BuiltinDataset, isolated: Path, serve: Callable[..., str]) -> None:
    with pytest.raises(DatasetUnavailableError, match="not the expected archive") as caught:
        locate("tiny", url=serve("other.zip", zipped("elsewhere.tsv", CONTENT)))
    assert "inside/tiny.tsv" in str(caught.value)
    assert cached_files(isolated) == []


def test_unreachable_url_says_where_to_put_the_file(isolated: Path, dead_url: str) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        locate("sms-spam", url=dead_url)
    message = str(caught.value)
    assert f"could not be downloaded from {dead_url}" in message
    assert "put the file at DIR/sms_spam/SMSSpamCollection and pass data_dir=DIR" in message
    assert "AJUSTE_DATA_DIR" in message
    assert cached_files(isolated) == []


def test_missing_page_on_the_server(tiny: BuiltinDataset, isolated: Path, serve: Callable[..., str]) -> None:
    url = serve("present.zip", b"") + "-but-not-this"
    with pytest.raises(DatasetUnavailableError, match="could not be downloaded") as caught:
        locate("tiny", url=url)
    assert "file not found" in str(caught.value).lower()
    assert cached_files(isolated) == []


@pytest.mark.slow
def test_real_sms_archive_matches_the_recorded_checksum(
    sms_dir: Path, isolated: Path, serve: Callable[..., str]
) -> None:
    original = (sms_dir / "sms_spam" / "SMSSpamCollection").read_bytes()
    url = serve("smsspamcollection.zip", zipped(SMS_SPAM.member, original))
    path = locate("sms-spam", url=url)
    assert path == isolated / "datasets" / "sms_spam" / "SMSSpamCollection"
    assert path.read_bytes() == original


# -- `ajuste datasets` ---------------------------------------------------------------------------


def sms_entry(result: CliResult) -> dict[str, object]:
    assert result.code == 0, result.err
    listed = {entry["name"]: entry for entry in result.json()["datasets"]}
    assert "sms-spam" in listed
    return listed["sms-spam"]


def test_datasets_command_with_data_dir(cli: Callable[..., CliResult], sms_dir: Path) -> None:
    entry = sms_entry(cli("datasets", "--data-dir", sms_dir, "--json"))
    assert entry["found"] == "data-dir"
    assert entry["path"] == str(sms_dir / "sms_spam" / "SMSSpamCollection")
    assert entry["rows"] == 5574
    assert entry["published"] is True
    assert entry["defaults"] == {"balance": "undersample"}
    assert entry["url"] == SMS_SPAM.url


def test_a_copy_that_is_not_the_published_file_is_said_to_be_one(
    cli: Callable[..., CliResult], sms_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a truncated copy was listed as found, as if it held the published 5,574 rows, and read without a word
    copy = tmp_path / "sms_spam" / "SMSSpamCollection"
    copy.parent.mkdir()
    copy.write_bytes((sms_dir / "sms_spam" / "SMSSpamCollection").read_bytes()[:20000])
    assert sms_entry(cli("datasets", "--data-dir", tmp_path, "--json"))["published"] is False
    assert "not the published file" in cli("datasets", "--data-dir", tmp_path).out
    with caplog.at_level("WARNING", logger="ajuste.data.builtin"):
        assert locate("sms-spam", tmp_path) == copy
    assert "is not the published sms-spam file" in caplog.text


def test_datasets_command_with_environment(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, sms_dir: Path
) -> None:
    monkeypatch.setenv("AJUSTE_DATA_DIR", str(sms_dir))
    assert sms_entry(cli("datasets", "--json"))["found"] == "AJUSTE_DATA_DIR"


def test_datasets_command_when_missing_and_cached(cli: Callable[..., CliResult], isolated: Path) -> None:
    entry = sms_entry(cli("datasets", "--json"))
    assert (entry["found"], entry["path"]) == ("missing", None)
    cached = isolated / "datasets" / "sms_spam" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True)
    cached.write_text("ham\thi\n", encoding="utf-8")
    entry = sms_entry(cli("datasets", "--json"))
    assert (entry["found"], entry["path"]) == ("cache", str(cached))


def test_datasets_command_human_table(cli: Callable[..., CliResult], sms_dir: Path) -> None:
    result = cli("datasets", "--data-dir", sms_dir)
    assert result.code == 0
    assert "sms-spam" in result.out
    assert "5,574" in result.out
    assert result.err == ""


def test_datasets_command_says_a_named_data_dir_lacks_the_file(
    cli: Callable[..., CliResult], isolated: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("datasets", "--data-dir", empty)
    assert result.code == 0
    assert "not in" in result.out and "fetched on first use" not in result.out
    assert sms_entry(cli("datasets", "--data-dir", empty, "--json"))["found"] == "missing"
    # a folder that is not there (a typo) is a mistake to fix, not a listing of what it lacks
    missing = cli("datasets", "--data-dir", tmp_path / "nowhere")
    assert missing.code == 2 and f"the data directory {tmp_path / 'nowhere'} is not a folder" in missing.err
    assert "found no such folder" in missing.err and len(missing.err.strip().splitlines()) == 1

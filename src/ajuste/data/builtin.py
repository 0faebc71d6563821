"""Built-in datasets: found in a data directory or the user cache, else downloaded once and checked."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ajuste.errors import ConfigError, DatasetUnavailableError

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "cache_dir",
    "dataset_status",
    "get_builtin",
    "locate",
    "named_data_dir",
]

log = logging.getLogger(__name__)

DATA_DIR_ENV = "AJUSTE_DATA_DIR"
CACHE_DIR_ENV = "AJUSTE_CACHE_DIR"


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset ajuste knows by name: where its file lives, how to fetch and check it, its defaults."""

    name: str
    description: str
    folder: str
    filename: str
    url: str
    member: str
    sha256: str
    rows: int
    file_format: str
    defaults: dict[str, str] = field(default_factory=dict)
    citation: str = ""

    def relative_path(self) -> Path:
        return Path(self.folder) / self.filename


SMS_SPAM = BuiltinDataset(
    name="sms-spam",
    description="SMS Spam Collection v.1: 5,574 SMS messages labelled ham or spam (UCI dataset 228, CC BY 4.0).",
    folder="sms_spam",
    filename="SMSSpamCollection",
    url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    member="SMSSpamCollection",
    sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    rows=5574,
    file_format="lines",
    defaults={"balance": "undersample"},
    citation="Almeida, Gómez Hidalgo, Yamakami. Contributions to the Study of SMS Spam Filtering. DocEng 2011.",
)

BUILTIN_DATASETS: dict[str, BuiltinDataset] = {SMS_SPAM.name: SMS_SPAM}


def get_builtin(name: str) -> BuiltinDataset:
    if name not in BUILTIN_DATASETS:
        known = ", ".join(BUILTIN_DATASETS)
        raise ConfigError(
            f"unknown dataset '{name}'",
            expected=f"one of {known}",
            found=f"'{name}'",
            fix="Run `ajuste datasets` to list them, or pass a data file with [[--data||path=FILE]].",
        )
    return BUILTIN_DATASETS[name]


def cache_dir() -> Path:
    """The user cache: $AJUSTE_CACHE_DIR, else $XDG_CACHE_HOME/ajuste, else ~/.cache/ajuste."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ajuste"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_published(dataset: BuiltinDataset, path: Path) -> bool:
    """Whether the file at ``path`` is the published one, byte for byte (its sha256)."""
    try:
        return _sha256(path) == dataset.sha256
    except OSError:
        return False


def dataset_status(dataset: BuiltinDataset, data_dir: str | Path | None = None) -> tuple[str, Path | None]:
    """Where ``dataset`` would be read from now, without downloading: (``data-dir``|``cache``|``missing``, path)."""
    for origin, folder in _search_folders(data_dir):
        candidate = folder / dataset.relative_path()
        if candidate.is_file():
            return origin, candidate
    return "missing", None


def named_data_dir(data_dir: str | Path | None = None) -> str | Path | None:
    """The data directory the user named (``data_dir``, else ``$AJUSTE_DATA_DIR``): searched alone, never a
    reason to download; None when none was named."""
    return data_dir if data_dir is not None else (os.environ.get(DATA_DIR_ENV) or None)


def _search_folders(data_dir: str | Path | None) -> list[tuple[str, Path]]:
    folders: list[tuple[str, Path]] = []
    named = named_data_dir(data_dir)
    if named is not None:  # named by the flag (or the API's data_dir), else by the environment variable
        folders.append(("data-dir" if data_dir is not None else DATA_DIR_ENV, Path(named)))
    folders.append(("cache", cache_dir() / "datasets"))
    return folders


def locate(name: str, data_dir: str | Path | None = None, *, download: bool = True, url: str | None = None) -> Path:
    """The local file of built-in dataset ``name``, downloading it into the cache the first time.

    A data directory (``data_dir``, else ``$AJUSTE_DATA_DIR``) is searched first, then the cache. A data
    directory that was named explicitly but lacks the file is an error, not a reason to download.
    """
    dataset = get_builtin(name)
    _, found = dataset_status(dataset, data_dir)
    if found is not None:
        if not is_published(dataset, found):  # a truncated or edited copy: it reads, but compares with nothing
            log.warning(
                "%s is not the published %s file (its sha256 differs from %s): results will not compare with "
                "others on '%s'",
                found,
                dataset.name,
                dataset.sha256[:12],
                dataset.name,
            )
        return found
    explicit = named_data_dir(data_dir)
    where = (
        "put the file at DIR/"
        + dataset.relative_path().as_posix()
        + " and pass [[--data-dir DIR||data_dir=DIR]] (or set AJUSTE_DATA_DIR)"
    )
    if explicit:
        raise DatasetUnavailableError(
            f"dataset '{name}' not found in the data directory {explicit}",
            expected=f"the file {Path(explicit) / dataset.relative_path()}",
            found="no such file",
            fix=f"Fix the data directory: {where}.",
        )
    if not download:
        raise DatasetUnavailableError(f"dataset '{name}' is not downloaded", fix=f"Download it, or {where}.")
    return _download(dataset, url or dataset.url, where)


def _download(dataset: BuiltinDataset, url: str, where: str) -> Path:
    target = cache_dir() / "datasets" / dataset.relative_path()
    log.info("downloading %s from %s", dataset.name, url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # an HTTP error holds the open response: close it rather than leak the socket
        reason = getattr(exc, "reason", exc)
        raise DatasetUnavailableError(
            f"dataset '{dataset.name}' is not on this machine and could not be downloaded from {url}",
            found=str(reason),
            fix=f"Without a network, {where}.",
        ) from None
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            content = archive.read(dataset.member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetUnavailableError(
            f"the download of '{dataset.name}' from {url} is not the expected archive",
            found=str(exc),
            fix=f"Try again later, or {where}.",
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != dataset.sha256:
        raise DatasetUnavailableError(
            f"the download of '{dataset.name}' failed its checksum",
            expected=f"sha256 {dataset.sha256}",
            found=digest,
            fix=f"Try again later, or {where}.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
        handle.write(content)
    os.replace(handle.name, target)
    return target

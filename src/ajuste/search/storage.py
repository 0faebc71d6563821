"""Where a study lives, and what sharing one study between processes and machines takes.

Three kinds of storage:

- **local**: the run folder's own ``study.db`` (SQLite), one process at a time (the folder is locked);
- **journal** (``journal:FILE``): Optuna's journal file, appended to under a file lock, for several processes
  on one machine without a server;
- **database** (``postgresql+psycopg://USER@HOST:PORT/DB``): Optuna's RDB storage on PostgreSQL, the engine
  Optuna recommends for many machines.

SQLite given as ``--storage`` is refused: several processes writing one SQLite file (let alone over a network
file system) fail on its locks. On a database, every worker sends a heartbeat while its trial runs; the trial
of a worker that stops sending one is failed after a grace period of three heartbeats and queued again
with the same settings for a living worker (the failed one does not count). Connection pools are small:
one connection kept open per worker, up to three while its trial, heartbeat and a lock overlap. A database
that goes away is retried with backoff for :data:`OUTAGE_LIMIT` seconds before the worker stops with a
message that says so.

The password of a database URL is used to connect and never written or shown: run folders record the URL
without it (:func:`public_url`); leave it out of ``--storage`` altogether and libpq reads it from
``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import optuna
from optuna.trial import FrozenTrial

from ajuste.errors import ConfigError, RunFolderError, SearchError, first_line

__all__ = [
    "OUTAGE_LIMIT",
    "STALE",
    "RetryStaleTrial",
    "check_storage",
    "close_storage",
    "database_retries",
    "open_storage",
    "public_url",
    "storage_kind",
    "study_lock",
    "worker_id",
    "worker_seed",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
StorageKind = Literal["local", "journal", "database"]
JOURNAL = "journal:"
#: System attribute of a trial queued again after a stale one: why the original failed.
STALE = "ajuste:stale"
#: Seconds a worker keeps retrying a database that does not answer before it stops.
OUTAGE_LIMIT = 120.0
#: Connections per worker: one kept open; up to two more while the trial, its heartbeat and a lock overlap.
POOL = {"pool_size": 1, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 600}


def storage_kind(url: str | None) -> StorageKind:
    if url is None or url.startswith("sqlite:"):
        return "local"
    return "journal" if url.startswith(JOURNAL) else "database"


def check_storage(url: str) -> str:
    """``url`` if ajuste can share a study through it; else a ConfigError that says what to use instead."""
    if url.startswith("sqlite:"):
        raise ConfigError(
            '[[--storage sqlite:||storage="sqlite:..."]] cannot be shared: several processes writing one SQLite file '
            "fail on its locks",
            found=public_url(url),
            fix="Leave [[--storage||storage]] out for one process (the run folder's own study.db); use "
            '[[--storage journal:FILE||storage="journal:FILE"]] for several processes on one machine, or '
            "postgresql+psycopg://USER@HOST:PORT/DB for several machines.",
        )
    if url.startswith(JOURNAL):
        if not url[len(JOURNAL) :].strip():
            raise ConfigError(
                '[[--storage journal:||storage="journal:"]] needs a file',
                fix='Give [[--storage journal:PATH/study.log||storage="journal:PATH/study.log"]].',
            )
        return url
    if not url.startswith(("postgresql:", "postgresql+")):
        raise ConfigError(
            "unsupported [[--storage||storage]]",
            expected="journal:FILE, or postgresql+psycopg://USER@HOST:PORT/DB",
            found=public_url(url),
        )
    return url


def public_url(url: str) -> str:
    """``url`` without its password: what a run folder records and a message shows."""
    if storage_kind(url) != "database":
        return url
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url.split("://", 1)[0] + "://…"  # not a URL at all: show nothing that might be a secret
    if not parsed.password:
        return url
    # URL.set(password=None) keeps the password ("None: unchanged"): build the URL again without it
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query)
    return bare.render_as_string(hide_password=False)


class RetryStaleTrial:
    """Heartbeat callback: the stale trial of a dead worker is queued again, up to three times per original
    trial, with the same settings. A finished trial cannot be changed, so the failed one is not marked: the
    copy names it (``failed_trial``, ``retry_history``), and a trial that was run again does not count
    (:func:`~ajuste.search.study.retried`)."""

    def __init__(self, grace: int) -> None:
        self.grace = grace
        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = f"its worker stopped sending heartbeats for {self.grace} s"
        log.warning("trial %d failed: %s; it runs again", trial.number, reason)
        fresh = copy.copy(trial)
        fresh.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("interrupted", "error", "worker")}
        fresh.system_attrs = {**trial.system_attrs, STALE: reason}
        self._retry(study, fresh)


def open_storage(url: str, *, heartbeat: int = 60) -> optuna.storages.BaseStorage:
    """The storage at ``url`` (a local SQLite URL, ``journal:FILE`` or a PostgreSQL URL)."""
    kind = storage_kind(url)
    if kind == "local":
        from sqlalchemy.exc import DatabaseError

        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
        except DatabaseError as exc:  # not a database, or a damaged one
            raise RunFolderError(
                f"the study database {url.split(':///', 1)[-1]} is damaged",
                found=first_line(exc.orig if exc.orig is not None else exc),
                fix="Restore it from a copy, or start the search afresh with [[`ajuste tune ... --overwrite`||"
                "overwrite=True]] (its trials are lost).",
            ) from None
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = url[len(JOURNAL) :]
        try:
            _check_journal(path)
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except (OSError, ValueError) as exc:  # no such folder, a folder, a file that is not a journal
            raise ConfigError(
                f"cannot use the journal file {path}",
                expected="a file in an existing folder, written by an earlier search or not yet there",
                found=first_line(exc),
                fix='Give [[--storage journal:FILE||storage="journal:FILE"]] with such a file.',
            ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return database_retries(
            lambda: optuna.storages.RDBStorage(
                url,
                engine_kwargs={**POOL, "connect_args": {"connect_timeout": 10}},
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=RetryStaleTrial(3 * heartbeat),
            ),
            url,
        )


def _database_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DBAPIError, DisconnectionError

    return (optuna.exceptions.StorageInternalError, DBAPIError, DisconnectionError)


def _from_database(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database connection, directly or as the cause of what Optuna raised while
    handling it (its trial bookkeeping can fail with another error when the storage fails under it)."""
    errors = _database_errors()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, errors):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def database_retries(action: Callable[[], T], url: str, *, limit: float = OUTAGE_LIMIT) -> T:
    """``action()``, retried with backoff (1 s, 2 s, 4 s … 15 s) while the database does not answer; after
    ``limit`` seconds of failures a SearchError that names the database and what to do."""
    started, wait = time.monotonic(), 1.0
    while True:
        try:
            return action()
        except Exception as exc:
            if not _from_database(exc):
                raise
            spent = time.monotonic() - started
            cause = str(exc.__cause__ or exc).strip().splitlines()[0][:200] if str(exc.__cause__ or exc) else ""
            if spent + wait > limit:
                raise SearchError(
                    f"the study's database did not answer for {spent:.0f} s",
                    found=f"{public_url(url)}: {cause or type(exc).__name__}",
                    fix="Check that PostgreSQL runs and is reachable; then run the same command again: the study "
                    "resumes where it is (a trial cut short runs again).",
                ) from None
            log.warning("the study's database does not answer (%s); retrying in %.0f s", cause, wait)
            time.sleep(wait)
            wait = min(2 * wait, 15.0)


@contextmanager
def study_lock(storage: optuna.storages.BaseStorage, url: str, study: str) -> Iterator[None]:
    """One holder at a time across every worker of ``study``: a PostgreSQL advisory lock, or a file lock beside
    the journal file (a local study is already the locked run folder's)."""
    kind = storage_kind(url)
    if kind == "local":
        yield
        return
    key = zlib.crc32(f"ajuste:{study}".encode())
    if kind == "journal":
        with open(f"{url[len(JOURNAL) :]}.ajuste-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    from sqlalchemy import text

    engine = _backend(storage).engine
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def _backend(storage: optuna.storages.BaseStorage) -> Any:
    return getattr(storage, "_backend", storage)  # a study wraps its RDB storage in a cache


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Close the storage's database connections (a process that goes on must not leave them open)."""
    engine = getattr(_backend(storage), "engine", None)
    if engine is not None:
        engine.dispose()


def worker_id() -> str:
    """This worker's name in the study: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(seed: int, worker: str) -> int:
    """A sampler seed of this worker's own, from the study's seed: no two workers draw the same startup trials."""
    return (seed * 1_000_003 + zlib.crc32(worker.encode())) % (2**31 - 1)


def _check_journal(path: str) -> None:
    """ValueError when the file at ``path`` exists and does not start as Optuna's journal does (a JSON object with
    an ``op_code`` per line): Optuna would only find out once the search has written its folder."""
    if not os.path.isfile(path) or not os.path.getsize(path):
        return
    with open(path, "rb") as handle:
        first = handle.readline(1 << 20)
    if not isinstance(entry := json.loads(first), dict) or "op_code" not in entry:
        raise ValueError("its first line is not an entry of an Optuna journal")

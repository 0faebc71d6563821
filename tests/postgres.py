"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` into a temporary folder, on a free loopback
port, password-protected, stopped and removed afterwards. Run as root (as CI is), the server runs as the
``postgres`` user that Debian's package creates: PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER, PASSWORD = "ajuste", "s3cret-test-password"


def missing(what: str) -> None:
    """Skip, saying what to install; on CI (CI=true) a missing server is a failure, not a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: the PostgreSQL tests must run)")
    pytest.skip(what)


def _program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postgres:
    folder: Path
    port: int
    pg_ctl: str
    as_user: list[str]

    @property
    def url(self) -> str:
        """The storage URL without the password (workers get it from PGPASSWORD)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.folder / "data"), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=120"
        self._ctl("-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "-t", "60", "stop")


def start_postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    if initdb is None or pg_ctl is None:
        missing("PostgreSQL is not installed: apt-get install postgresql (its initdb and pg_ctl are needed)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing('the PostgreSQL driver is not installed: pip install "ajuste[postgres]"')
    assert initdb is not None and pg_ctl is not None
    folder = Path(tempfile.mkdtemp(prefix="ajuste-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL does not run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    (folder / "password").write_text(PASSWORD)
    if as_user:
        shutil.chown(folder / "password", "postgres", "postgres")
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(folder / "data"),
            "-U",
            USER,
            "--pwfile",
            str(folder / "password"),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = Postgres(folder, free_port(), pg_ctl, as_user)
    server.start()
    try:
        yield server
    finally:
        try:
            server._ctl("-m", "immediate", "-w", "-t", "30", "stop")
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)

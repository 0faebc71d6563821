"""Listening and running: the socket bound before the models load, uvicorn until SIGTERM or Ctrl-C.

The socket is bound by us, not by uvicorn, so that a port in use is a one-line error before minutes of
loading, and so that ``--port 0`` can print the port it got. On SIGTERM or SIGINT uvicorn stops accepting
connections, answers the requests in flight, runs the app's shutdown (the batchers drain), and then sends
the signal again to the handler it found: ours notes it, so that a stop asked for is a clean exit.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import importlib.util
import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from ajuste.errors import ConfigError

__all__ = ["is_loopback", "listen", "require_server_packages", "run_server", "url_of"]

#: The optional packages of ``pip install "ajuste[serve]"``.
SERVER_PACKAGES = ("fastapi", "uvicorn")


def require_server_packages() -> None:
    """Refuse, with the command that fixes it, when FastAPI or uvicorn is not installed."""
    missing = [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            "`ajuste serve` needs FastAPI and uvicorn",
            found=f"{' and '.join(missing)} not installed",
            fix='Install them: pip install "ajuste[serve]".',
        )


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), not yet accepting connections."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on {host}",
            expected="an address of this machine (127.0.0.1, 0.0.0.0, ::1) or its host name",
            found=exc.strerror,
            fix="Pass --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface).",
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        raise ConfigError(
            f"cannot listen on {host}:{port}",
            found=exc.strerror or type(exc).__name__,
            fix="Another program uses that port: choose another --port (0 picks a free one)."
            if in_use
            else "Choose an address of this machine with --host, and a --port above 1023.",
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (the port it got when 0 was asked)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(sock: socket.socket) -> bool:
    """Whether only this machine can reach the socket."""
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


@contextlib.contextmanager
def _noted_stops(stops: list[str]) -> Iterator[None]:
    """SIGTERM and SIGINT, once uvicorn has shut down gracefully and raises them again, are noted, not fatal."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def note(number: int, frame: Any) -> None:
        stops.append(signal.Signals(number).name)

    previous = {number: signal.signal(number, note) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_server(app: Any, sock: socket.socket, *, verbose: bool) -> str | None:
    """Serve ``app`` on ``sock`` until stopped; the name of the signal that stopped it (None: none did).

    uvicorn logs on stderr at warning level, or, with ``verbose``, every start-up step and request."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    logging = copy.deepcopy(LOGGING_CONFIG)
    logging["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout keeps the --json line alone
    config = uvicorn.Config(
        app,
        log_config=logging,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        lifespan="on",
        ws="none",  # no websocket endpoint: nothing to load for it
        server_header=False,
    )
    stops: list[str] = []
    with _noted_stops(stops):
        uvicorn.Server(config).run(sockets=[sock])
    return stops[0] if stops else None

"""``ajuste serve``: run folders' models behind an HTTP API, with micro-batching, limits and an API key.

The parts, in the order a server is put together: :class:`ServeSettings` (the flags), :func:`listen` (the
socket), :func:`open_runs` (the models, each under its folder's name), ``ajuste.serve.app.create_app`` (the
FastAPI app: endpoints, limits, key, the try-it page), :func:`run_server` (uvicorn, until SIGTERM).
:class:`MicroBatcher` gathers the texts of concurrent requests into one model call.

FastAPI and uvicorn are optional (``pip install "ajuste[serve]"``): this package imports them only in
``ajuste.serve.app`` and in :func:`run_server`, so that :func:`require_server_packages` can say so first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajuste.lazy import lazy_attributes

if TYPE_CHECKING:
    from ajuste.serve.batching import BatcherStopped, MicroBatcher
    from ajuste.serve.served import ServedModel, open_runs
    from ajuste.serve.server import is_loopback, listen, require_server_packages, run_server, url_of
    from ajuste.serve.settings import ServeSettings

__all__ = [
    "BatcherStopped",
    "MicroBatcher",
    "ServeSettings",
    "ServedModel",
    "is_loopback",
    "listen",
    "open_runs",
    "require_server_packages",
    "run_server",
    "url_of",
]

#: Imported on first use: the command line reads ServeSettings for its flags without the models (and PyTorch).
__getattr__ = lazy_attributes(
    __name__,
    {
        "ajuste.serve.batching": ("BatcherStopped", "MicroBatcher"),
        "ajuste.serve.served": ("ServedModel", "open_runs"),
        "ajuste.serve.server": ("is_loopback", "listen", "require_server_packages", "run_server", "url_of"),
        "ajuste.serve.settings": ("ServeSettings",),
    },
)

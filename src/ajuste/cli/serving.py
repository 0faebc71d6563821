"""``ajuste serve RUN [RUN ...]``: flags into :class:`~ajuste.serve.ServeSettings`, the run folders opened,
one line per model and the URL, then the server until SIGTERM or Ctrl-C (both a clean stop: exit 0)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ajuste.cli.output import Output, plain
from ajuste.errors import ConfigError

__all__ = ["add_serve_parser", "serve"]

#: The flags that fill ServeSettings: field, type, metavar; each flag's default and help come from its field.
_SETTING_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("host", str, "ADDRESS"),
    ("port", int, "PORT"),
    ("max_batch", int, "N"),
    ("max_wait_ms", float, "MS"),
    ("max_texts", int, "N"),
    ("max_chars", int, "N"),
    ("max_body_bytes", int, "BYTES"),
)
API_KEY_VARIABLE = "AJUSTE_API_KEY"


def add_serve_parser(sub: Any, *flag_groups: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The ``serve`` subcommand on ``sub``; ``flag_groups`` add the flags it shares with other commands."""
    from ajuste.serve.settings import ServeSettings

    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="Serve run folders' models over HTTP: an API, and a page to try them.",
        description="Serve the models of run folders over HTTP: POST /v1/predict, GET /v1/models, "
        "GET /healthz, the OpenAPI description at /docs, and a page to try them at /. Concurrent "
        "requests share model calls. Stops on SIGTERM or Ctrl-C after answering the requests in flight. "
        'Needs pip install "ajuste[serve]".',
    )
    parser.add_argument(
        "runs", metavar="RUN", nargs="+", help="Run folders (of `ajuste train`, `tune` or `export`) to serve."
    )
    group = parser.add_argument_group("server")
    for name, kind, metavar in _SETTING_FLAGS:
        field = ServeSettings.model_fields[name]
        group.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            metavar=metavar,
            help=f"{(field.description or '').rstrip('.')} (default {field.default}).",
        )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="Require this key on every endpoint but /healthz and the try-it page, GET / (default "
        f"${API_KEY_VARIABLE}, else none; the variable keeps the key out of the process list).",
    )
    for add in flag_groups:
        add(parser)
    parser.set_defaults(handler=serve)
    return parser


def serve(args: argparse.Namespace) -> int:
    from ajuste.serve import is_loopback, listen, open_runs, require_server_packages, run_server, url_of
    from ajuste.serve.settings import ServeSettings
    from ajuste.validation import validate

    require_server_packages()
    values: dict[str, Any] = {
        name: getattr(args, name) for name, _, _ in _SETTING_FLAGS if getattr(args, name) is not None
    }
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_VARIABLE)
    if args.api_key is None and key is not None and not key.strip():
        # a variable set to nothing (a script's unset expansion, say) served every model to anyone, without a word
        raise ConfigError(
            f"${API_KEY_VARIABLE} is set, and empty",
            expected="the key that clients must send",
            fix=f"Give it a key, or unset it (unset {API_KEY_VARIABLE}) to serve without one.",
        )
    if key is not None:
        values["api_key"] = key
    settings = validate(ServeSettings, values, "serve")
    out = Output(json_mode=args.json, quiet=args.quiet)
    sock = listen(settings.host, settings.port)  # a port in use is refused before the models load
    try:
        from ajuste.serve.app import create_app

        models = open_runs(args.runs, trust_remote_code=args.trust_remote_code)
        app = create_app(models, settings, precision=args.precision)
        url = url_of(sock)
        described = [model.describe() for model in models]
        for model, info in zip(models, described):
            report = ", tuning report" if info["report"] else ""
            out.say(
                f"[bold]model[/]  {plain(model.name)}: {info['family']} ({info['runtime']}), "
                f"labels {plain(', '.join(info['labels']))}{report}  ← {plain(model.folder.path)}"
            )
        guard = "API key required" if settings.api_key is not None else "no API key"
        out.say(f"[bold]serving[/] {url}  (page /, API /v1/predict, docs /docs; {guard})")
        if settings.api_key is None and not is_loopback(sock):
            out.say(
                f"[bold yellow]warning[/] {settings.host} is reachable from other machines and no API key is set: "
                f"anyone who reaches it can use the models (set ${API_KEY_VARIABLE} or --api-key)"
            )
        out.json(
            {
                "url": url,
                "api_key": settings.api_key is not None,
                "models": [
                    {field: info[field] for field in ("name", "family", "runtime", "labels", "report")}
                    | {"run_dir": str(model.folder.path)}
                    for model, info in zip(models, described)
                ],
            }
        )
        stopped_by = run_server(app, sock, verbose=args.verbose)
    finally:
        sock.close()
    out.say(f"stopped{f' by {stopped_by}' if stopped_by else ''}: every request in flight was answered")
    return 0

"""The HTTP API: ``create_app(models, settings)`` is a FastAPI app that answers with the served models.

Endpoints: ``POST /v1/predict``, ``GET /v1/models``, ``GET /v1/models/{name}/report``, ``GET /healthz``, the
try-it page at ``/`` and the OpenAPI description (``/openapi.json``, ``/docs``).

What a request goes through, outermost first: the API key (every path but ``/healthz`` and the page; 401),
the body size (413, counted as it streams in, not only as announced), the JSON shape (422, pydantic), the
model's name (404 unknown; 422 left out while several are served), the texts per request (413) and the
characters per text (422 naming the index), then the model's micro-batcher.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ajuste.errors import ConfigError
from ajuste.serve.batching import BatcherStopped, MicroBatcher
from ajuste.serve.page import PAGE, PAGE_POLICY
from ajuste.serve.served import ServedModel
from ajuste.serve.settings import ServeSettings
from ajuste.training.classifier import TextClassifier

__all__ = ["create_app"]

#: Paths open without the key: the health check (for load balancers), and the page, which holds no data.
OPEN_PATHS = frozenset({"/healthz", "/"})
#: A report is one self-contained file: it may style itself and run its own inline code, load nothing.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

Record = dict[str, Any]


# -- what the API takes and answers (the OpenAPI description is made of these) ---------------------------


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="Texts to classify; the answer keeps their order.")
    model: str | None = Field(
        None, description="Name of the model (see GET /v1/models); may be left out when one model is served."
    )


class Prediction(BaseModel):
    label: str = Field(description="The most probable class.")
    probabilities: dict[str, float] = Field(description="Probability of each class.")


class PredictResponse(BaseModel):
    model: str = Field(description="Name of the model that answered.")
    predictions: list[Prediction] = Field(description="One prediction per text, in the order of the texts.")


class ModelInfo(BaseModel):
    name: str = Field(description="What to give as `model` in POST /v1/predict.")
    family: str
    labels: list[str]
    runtime: str = Field(
        description="What computes the model: pytorch, onnx for an exported run, or ensemble for the average of "
        "a tuned ensemble's members (its settings are those of its first member, the best trial)."
    )
    parameters: int | None = None
    metrics: dict[str, Any] | None = Field(description="The run folder's metrics.json (null when it has none).")
    settings: dict[str, Any] = Field(description="The model's settings.")
    report: str | None = Field(description="URL of the tuning report (null when the run has none).")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: str


class Problem(BaseModel):
    detail: str = Field(description="What went wrong, and how to fix it.")


def _problem(description: str) -> dict[str, Any]:
    """An error answer in the OpenAPI description: always JSON, even from a route that answers HTML."""
    return {"description": description, "content": {"application/json": {"schema": Problem.model_json_schema()}}}


# -- the gates every request passes -----------------------------------------------------------------------


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer with ``{"detail": ...}`` from a middleware, without going into the app."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


class ApiKeyGate:
    """Every path but :data:`OPEN_PATHS` requires the key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    def _given(self, scope: Scope) -> bool:
        authorization = _header(scope, b"authorization") or b""
        scheme, _, bearer = authorization.partition(b" ")
        offered = [_header(scope, b"x-api-key"), bearer.strip() if scheme.lower() == b"bearer" else None]
        # compare_digest takes as long whatever the first wrong byte: the key cannot be guessed byte by byte
        return any(hmac.compare_digest(key, self.key) for key in offered if key is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._given(scope):
            await self.app(scope, receive, send)
            return
        await _refuse(
            send,
            401,
            "this server requires an API key: send the header `Authorization: Bearer KEY` or `X-API-Key: KEY`",
            {"WWW-Authenticate": "Bearer"},
        )


class BodyLimit:
    """Bodies over ``max_bytes`` are refused with 413: by their Content-Length, and, as a client may announce
    less than it sends (or nothing, chunked), by counting what arrives. The body is read whole before the
    app sees it (it has to be, to be parsed as JSON)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, got: str) -> str:
        return (
            f"the request body is larger than this server accepts: at most {self.max_bytes} bytes "
            f"(--max-body-bytes), got {got}; send the texts in several requests"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = _header(scope, b"content-length")
        if announced is not None and announced.isdigit() and int(announced) > self.max_bytes:
            await _refuse(send, 413, self._too_large(f"{int(announced)} bytes announced"))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, self._too_large(f"{size} bytes and more coming"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # after the body, what the server says next (a disconnect)
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


# -- the app ------------------------------------------------------------------------------------------------


def _invalid(location: Sequence[str | int], message: str, kind: str) -> RequestValidationError:
    """A 422 in the shape pydantic gives to the request's own validation errors."""
    return RequestValidationError([{"loc": tuple(location), "msg": message, "type": kind}])


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and what, without echoing the input back (it may be megabytes of text)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = []
    sent_as = request.headers.get("content-type", "")
    for error in errors:
        message = str(error.get("msg", "invalid"))
        reason = (error.get("ctx") or {}).get("error")
        if reason and error.get("type") == "json_invalid":
            message += f": {reason}"
        at_body = tuple(error.get("loc", ())) == ("body",) and error.get("type") == "model_attributes_type"
        if at_body and "json" in sent_as.lower():
            message = 'the body must be a JSON object, such as {"texts": ["a text to classify"]}'
        elif at_body:
            # not read as JSON at all (`curl -d` sends a form): "should be a valid dictionary" misled
            message = (
                "the body must be JSON, sent with the header Content-Type: application/json; got "
                + (f"Content-Type: {sent_as}" if sent_as else "no Content-Type")
                + " (with curl: -H 'Content-Type: application/json')"
            )
        detail.append({"loc": list(error.get("loc", ())), "msg": message, "type": str(error.get("type", ""))})
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(detail)})


#: What FastAPI answers (400) to a body its JSON reader fails on by other than a syntax error.
_UNPARSED = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer, but a body that cannot be read as JSON at all (not UTF-8, nested too deep for the
    reader) is a 422 at ``body``, like any other body that is not the JSON the API takes."""
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 400 and exc.detail == _UNPARSED:
        why = "the body cannot be read as JSON: it is not UTF-8 text, or it nests too deep"
        return await _validation_error(request, _invalid(["body"], why, "json_invalid"))
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    return await http_exception_handler(request, exc)


def _check_limits(texts: list[str], settings: ServeSettings) -> None:
    if len(texts) > settings.max_texts:
        raise HTTPException(
            413,
            f"{len(texts)} texts in one request, and this server takes at most {settings.max_texts} "
            "(--max-texts): send them in several requests",
        )
    for index, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise _invalid(
                ("body", "texts", index),
                f"text {index} has {len(text)} characters, and this server takes at most {settings.max_chars} "
                "per text (--max-chars): shorten it or split it",
                "string_too_long",
            )


def _records(classifier: TextClassifier, precision: str | None) -> Callable[[list[str]], list[Record]]:
    def predict(texts: list[str]) -> list[Record]:
        return list(classifier.predict(texts, precision=precision).to_records())

    return predict


def _openapi(app: FastAPI, keyed: bool) -> Callable[[], dict[str, Any]]:
    """The OpenAPI description, saying (when a key is set) how to send it and that /healthz needs none."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            if keyed:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
                schema["security"] = [{"bearer": []}, {"apiKey": []}]
                for operation in schema["paths"]["/healthz"].values():  # GET and HEAD
                    operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(models: Sequence[ServedModel], settings: ServeSettings, *, precision: str | None = None) -> FastAPI:
    """The API over ``models`` (at least one), with the limits, batching and key of ``settings``."""
    from ajuste import __version__

    if not models:
        raise ConfigError("nothing to serve", expected="at least one run folder", found="none")
    served = {model.name: model for model in models}
    batchers = {
        model.name: MicroBatcher(
            model.name,
            _records(model.classifier, precision),
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_ms / 1000,
        )
        for model in models
    }
    names = ", ".join(served)
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    guarded: dict[int | str, dict[str, Any]] = {401: _problem("No API key, or a wrong one.")} if key is not None else {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for batcher in batchers.values():
            batcher.start()
        try:
            yield
        finally:  # after uvicorn has answered the requests in flight: the queues are empty, the workers end
            for batcher in batchers.values():
                await batcher.stop()

    app = FastAPI(
        title="ajuste serve",
        version=__version__,
        description=f"Text classification with the models of ajuste run folders. Served: {names}.",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.openapi = _openapi(app, keyed=key is not None)  # type: ignore[method-assign]
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if key is not None:
        app.add_middleware(ApiKeyGate, key=key)  # added last: the outermost gate, before the body is read

    def choose(name: str | None) -> ServedModel:
        if name is None:
            if len(served) == 1:
                return next(iter(served.values()))
            raise _invalid(("body", "model"), f"several models are served: give `model`, one of {names}", "missing")
        if name not in served:
            raise HTTPException(404, f"no model named {name!r} is served; served: {names}")
        return served[name]

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Predict the label of each text",
        description=f"At most {settings.max_texts} texts per request, {settings.max_chars} characters per text "
        f"and {settings.max_body_bytes} bytes per body. Requests that arrive together share model calls of up "
        f"to {settings.max_batch} texts.",
        responses={
            **guarded,
            404: _problem("No model of that name is served."),
            413: _problem("Too many texts, or too large a body."),
            500: _problem("The model failed on the batch of this request."),
            503: _problem("The server is stopping."),
        },
    )
    async def predict(body: PredictRequest) -> dict[str, Any]:
        model = choose(body.model)
        _check_limits(body.texts, settings)
        try:
            predictions = await batchers[model.name].submit(body.texts)
        except BatcherStopped as exc:
            raise HTTPException(503, str(exc)) from None
        except Exception as exc:  # the batcher has logged the traceback, once for the whole batch
            raise HTTPException(500, f"the model failed on this request's batch: {type(exc).__name__}") from None
        return {"model": model.name, "predictions": predictions}

    @app.get("/v1/models", response_model=ModelList, summary="The models served", responses=guarded)
    async def list_models() -> dict[str, Any]:
        return {"models": [model.describe() for model in served.values()]}

    @app.get(
        "/v1/models/{name}/report",
        response_class=HTMLResponse,
        summary="A tuning run's report.html",
        responses={**guarded, 404: _problem("No such model, or its run has no report.")},
    )
    async def report(name: str) -> FileResponse:
        # The name picks a served model; the file is always that folder's report.html, nothing else.
        model = served.get(name)
        if model is None:
            raise HTTPException(404, f"no model named {name!r} is served; served: {names}")
        if not model.has_report:
            raise HTTPException(404, f"the run of {name!r} has no report.html: only `ajuste tune` writes one")
        return FileResponse(
            model.folder.report_file,
            media_type="text/html",
            headers={"Content-Security-Policy": REPORT_POLICY, "X-Content-Type-Options": "nosniff"},
        )

    # HEAD too: load balancers and uptime checks often probe with it
    @app.api_route(
        "/healthz", methods=["GET", "HEAD"], response_model=Health, summary="Whether the server is up (no key needed)"
    )
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            PAGE,
            headers={
                "Content-Security-Policy": PAGE_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    return app

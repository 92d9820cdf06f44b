"""The web service: the OpenAI-compatible API, our jobs API and the page, in one process
(``cpwhisperx serve``). Every error is JSON in OpenAI's shape, with a one-line message."""

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cpwhisperx.errors import ConfigError, CpwError, MediaError, ModelNotFound
from cpwhisperx.web import editor_api, jobs_api, openai_api
from cpwhisperx.web.service import HttpError, ServerConfig, Service

log = logging.getLogger("cpwhisperx.web")
COOKIE = "cpwhisperx_token"


def error(status: int, message: str) -> JSONResponse:
    """OpenAI's shape, one line. ``x-should-retry: false``: its client would otherwise send a
    refused or failed request again, which here is a new job each time."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    line = " ".join(message.split()) or "error"
    return JSONResponse({"error": {"message": line, "type": kind, "param": None,
                                   "code": status}}, status_code=status,
                        headers={"x-should-retry": "false"})


JSON_LIMIT = 10 * 1024 * 1024  # a body that is not an upload: subtitle events, forms
# On every answer: never sniffed into another type, never framed, nothing loaded from elsewhere.
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")]


class Guard:
    """Before any route: the Host (a page elsewhere that rebinds its name to this machine
    finds a host it does not serve), the origin of a request that changes something (another
    site's page, another port included, is refused), the token, and the size of the body,
    counted as it arrives (a client may not say it, or say it wrong).

    The token comes as ``Authorization: Bearer`` (API clients), or in the page's address once
    (``/?token=``), which the answer turns into a cookie that the browser then sends with every
    request of the page (media elements and event streams cannot set a header)."""

    def __init__(self, app: ASGIApp, *, service: Service) -> None:
        self.app, self.service = app, service
        self.limit = service.config.max_upload_mb * 1024 * 1024

    def refusal(self, request: Request) -> JSONResponse | None:
        host = request.headers.get("host", "")
        if not self.service.host_ok(urllib.parse.urlsplit(f"//{host}").hostname or ""):
            return error(400, f"this server does not serve the host {host!r}")
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and (
                request.headers.get("sec-fetch-site") == "cross-site"
                or (origin is not None and urllib.parse.urlsplit(origin).netloc != host)):
            return error(403, "a request from another site's page is refused")
        header = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        in_address = request.query_params.get("token", "")
        if not (self.service.cookie_ok(request.cookies.get(COOKIE, ""))
                or self.service.token_ok(header or in_address)):
            return error(401, "missing or wrong API token: send Authorization: Bearer "
                              "<CPWHISPERX_API_TOKEN>, or open the page as "
                              "/?token=<CPWHISPERX_API_TOKEN>")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        cookie = None
        if (self.service.config.token and request.query_params.get("token")
                and not self.service.cookie_ok(request.cookies.get(COOKIE, ""))):
            cookie = f"{COOKIE}={self.service.cookie}; Path=/; HttpOnly; SameSite=Strict"

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"set-cookie", cookie.encode())] if cookie else []
                message["headers"] = [*message.get("headers", []), *HEADERS, *extra]
            await send(message)

        if (refused := self.refusal(request)) is not None:
            cookie = None
            return await refused(scope, receive, secured)
        upload = request.headers.get("content-type", "").startswith("multipart/form-data")
        limit = self.limit if upload else min(self.limit, JSON_LIMIT)
        too_large = error(413, f"the upload is larger than {self.service.config.max_upload_mb}"
                               " MB (serve --max-upload-mb)" if upload else
                          f"the request is larger than {JSON_LIMIT // 1024 // 1024} MB")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return await too_large(scope, receive, secured)
        seen, over = 0, False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # the app stops reading; its answer becomes ours below
                over = True
                return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            if not over:
                await secured(message)
            elif message["type"] == "http.response.start":
                await too_large(scope, receive, secured)

        await self.app(scope, counted, sending)


def _status(exc: CpwError) -> int:
    if isinstance(exc, HttpError):
        return exc.status
    # What the request asked for is wrong; anything else (a full disk) is the server's.
    return 400 if isinstance(exc, ConfigError | MediaError | ModelNotFound) else 500


def create_app(config: ServerConfig) -> FastAPI:
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.scheduler.start()
        yield
        service.scheduler.stop()

    # No /docs: its page loads Swagger UI from a CDN; the schema is at /api/openapi.json.
    app = FastAPI(title="CP-WhisperX", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.service = service
    app.include_router(openai_api.router)
    app.include_router(jobs_api.router)
    app.include_router(editor_api.router)
    app.add_middleware(Guard, service=service)

    @app.exception_handler(CpwError)
    async def on_cpw_error(_request: Request, exc: CpwError) -> JSONResponse:
        return error(_status(exc), exc.message)

    @app.exception_handler(HTTPException)
    async def on_http(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail).splitlines()[0])

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(400, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def on_bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error(500, f"internal error ({type(exc).__name__}); details in "
                          f"{config.out / 'serve.log'}")

    static = resources.files("cpwhisperx.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    return app


def serve(config: ServerConfig, *, port: int) -> None:
    import uvicorn

    config.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=config.out / "serve.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Requests waiting for their job must not hold up a stop: their jobs stay queued.
    uvicorn.run(create_app(config), host=config.host, port=port, log_level="warning",
                timeout_graceful_shutdown=5)

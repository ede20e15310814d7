"""The Studio's FastAPI application: the UI (`web.py`), the app endpoint (`api.py`), sessions, limits and errors.

Every error a user can cause is answered in one line: an HTML page in the UI, an OpenAI-shaped JSON object
(`{"error": {"message", "type", "param", "code"}}`) under /v1 and for the UI's fetch calls; never a traceback."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from kollm.errors import KollmError
from kollm.studio import api, web
from kollm.studio.client import ModelClient, ModelError
from kollm.studio.config import StudioConfig
from kollm.studio.db import open_db
from kollm.studio.security import check_new_password, csrf_token, hash_password, session_secret
from kollm.studio.state import Forbidden, Redirect, State
from kollm.studio.store import NotFound, get_setting, set_setting

log = logging.getLogger("kollm.studio")
PACKAGE = Path(str(resources.files("kollm.studio")))


def wants_json(request: Request) -> bool:
    p = request.url.path
    return p.startswith("/v1/") or p.endswith("/playground") or "application/json" in request.headers.get("accept", "")


def error_response(request: Request, status: int, message: str, kind: str | None = None,
                   param: str | None = None) -> Response:
    if wants_json(request):
        kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)
    st: State = request.app.state.studio
    html = st.env.get_template("error.html").render(message=message, status=status, user=_user(request),
                                                   csrf=csrf_token(request) if "session" in request.scope else "")
    return HTMLResponse(html, status)


def _user(request: Request) -> str | None:
    return request.session.get("user") if "session" in request.scope else None


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, by Content-Length or while streaming them in
    (a chunked upload has no Content-Length to check up front)."""

    class TooLarge(Exception):
        pass

    def __init__(self, app: object, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _413(self, send: object) -> None:
        body = (b'{"error": {"message": "the request body is too large", "type": "invalid_request_error", '
                b'"param": null, "code": null}}')
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._413(send)
        seen = 0
        started = False

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyLimit.TooLarge
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except BodyLimit.TooLarge:
            if not started:
                await self._413(send)


async def security_headers(request: Request, call_next: object) -> Response:
    response = await call_next(request)
    # No inline script or style anywhere: even if some text escaped escaping, the browser would not run it.
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def create_studio(cfg: StudioConfig, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The Studio app for `cfg` (database migrated, admin password set when the config gives one).
    `transport` replaces the network for the model calls (tests)."""
    data = Path(cfg.data).expanduser()
    data.mkdir(parents=True, exist_ok=True)
    db = open_db(cfg.url())
    if cfg.admin_password:
        with db() as s:
            if get_setting(s, "admin_password") is None:  # first start only: later, /password changes it
                check_new_password(cfg.admin_password, cfg.admin_password)
                set_setting(s, "admin_password", hash_password(cfg.admin_password))
    env = Environment(loader=FileSystemLoader(str(PACKAGE / "templates")), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(float(t or 0)))
    app = FastAPI(title="kollm studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = State(cfg, db, ModelClient(cfg.model_url, cfg.model, cfg.model_api_key, cfg.timeout_s,
                                                  transport), env)

    app.middleware("http")(security_headers)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(data), session_cookie="kollm_studio",
                       max_age=14 * 24 * 3600, same_site="lax", https_only=False)
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes + 64_000)  # the file plus the other form fields

    @app.exception_handler(Redirect)
    async def _redirect(request: Request, e: Redirect) -> Response:
        if wants_json(request):
            return error_response(request, 401, "log in to the Studio first", "authentication_error")
        return RedirectResponse(e.url, 303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, e: Forbidden) -> Response:
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(e.status, "permission_error")
        return error_response(request, e.status, e.message, kind)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, e: NotFound) -> Response:
        return error_response(request, 404, str(e), "not_found_error")

    @app.exception_handler(KollmError)
    async def _bad(request: Request, e: KollmError) -> Response:
        return error_response(request, 400, str(e))

    @app.exception_handler(ModelError)
    async def _model(request: Request, e: ModelError) -> Response:
        return error_response(request, 502, e.message, "model_error")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        err = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        return error_response(request, 400, f"{where or 'request'}: {err.get('msg', 'invalid')}", param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        msg = {404: "no such page", 405: "method not allowed"}.get(e.status_code, str(e.detail))
        return error_response(request, e.status_code, msg)

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> Response:
        log.exception("studio: unexpected error on %s", request.url.path)  # the trace goes to the log only
        return error_response(request, 500, f"internal error ({type(e).__name__}); see the Studio's log")

    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(web.router)
    return app


def start_studio(cfg: StudioConfig) -> str:
    """Serve the Studio from a background thread and return its URL: the quickstart keeps the main thread for the
    API server (uvicorn installs signal handlers only in the main thread, so Ctrl-C stops both)."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_studio(cfg), host=cfg.host, port=cfg.port, log_level="warning"))
    threading.Thread(target=server.run, name="kollm-studio", daemon=True).start()
    return f"http://{cfg.host}:{cfg.port}/"


def run_studio(cfg: StudioConfig) -> None:
    import uvicorn

    app = create_studio(cfg)
    print(f"kollm: Studio at http://{cfg.host}:{cfg.port}/  (model: {cfg.model_url}; Ctrl-C to stop)")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")

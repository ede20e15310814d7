"""The Studio's FastAPI application: the UI (`web.py`), the app endpoint (`api.py`), sessions, limits and errors.

Every error a user can cause is answered in one line: an HTML page in the UI, an OpenAI-shaped JSON object
(`{"error": {"message", "type", "param", "code"}}`) under /v1 and for the UI's fetch calls; never a traceback."""

from __future__ import annotations

import json
import logging
import re
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

from kollm.errors import KollmError
from kollm.studio import accounts, api, jobs, web, web_admin, web_files, web_jobs
from kollm.studio.client import ModelClient, ModelError
from kollm.studio.config import StudioConfig
from kollm.studio.db import open_db
from kollm.studio.messages import msg
from kollm.studio.security import ServerSessions, Throttle, csrf_token, new_setup_token
from kollm.studio.state import Forbidden, Redirect, State
from kollm.studio.store import NotFound, set_setting

log = logging.getLogger("kollm.studio")
PACKAGE = Path(str(resources.files("kollm.studio")))


def wants_json(request: Request) -> bool:
    p = request.url.path
    return (p.startswith("/v1/") or p.endswith(("/playground", "/extract"))
            or "application/json" in request.headers.get("accept", ""))


def error_response(request: Request, status: int, message: str, kind: str | None = None,
                   param: str | None = None) -> Response:
    if wants_json(request):
        kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)
    st: State = request.app.state.studio
    user = _user(request)  # a CSRF token (a session row) only for a logged-in user's page: bots make no rows
    html = st.env.get_template("error.html").render(message=message, status=status, user=user,
                                                   csrf=csrf_token(request) if user else "")
    return HTMLResponse(html, status)


def _user(request: Request) -> str | None:
    return request.session.get("user") if "session" in request.scope else None


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, by Content-Length or while streaming them in
    (a chunked upload has no Content-Length to check up front). The routes that take a file variable's image or
    recording (#26: the playground's picker, the app endpoint's data URLs) may send up to `file_limit`."""

    class TooLarge(Exception):
        pass

    FILE_PATHS = re.compile(r"^/(apps/[^/]+/extract|v1/apps/[^/]+/run)$")

    def __init__(self, app: object, limit: int, file_limit: int = 0) -> None:
        self.app, self.limit, self.file_limit = app, limit, file_limit

    async def _413(self, send: object) -> None:
        body = json.dumps({"error": {"message": msg("body.too_large"), "type": "invalid_request_error",
                                     "param": None, "code": None}}, ensure_ascii=False).encode("utf-8")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = max(self.limit, self.file_limit) if self.FILE_PATHS.match(scope["path"]) else self.limit
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await self._413(send)
        seen = 0
        started = False

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
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
    setup_token = None
    with db() as s:
        if cfg.admin_password:
            accounts.first_admin(s, cfg.admin_password)  # first start only: later, /password changes it
        if not accounts.any_user(s):
            # no admin yet: /setup asks for this token, printed here only (whoever reads the console started the
            # Studio); a restart makes a new one
            setup_token, digest = new_setup_token()
            set_setting(s, accounts.SETUP_TOKEN, digest)
    env = Environment(loader=FileSystemLoader(str(PACKAGE / "templates")), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(float(t or 0)))
    app = FastAPI(title="kollm studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = State(cfg, db, ModelClient(cfg.model_url, cfg.model, cfg.model_api_key, cfg.timeout_s,
                                                  transport), env)

    app.state.setup_token = setup_token
    app.state.login_throttle = Throttle(max(1, cfg.login_attempts))  # per client address
    app.state.key_limit = Throttle(cfg.rate_limit_per_minute) if cfg.rate_limit_per_minute > 0 else None
    if setup_token:
        print(f"kollm: Studio setup token: {setup_token}\n"
              f"kollm: open http://{cfg.host}:{cfg.port}/setup?token={setup_token} to set the admin password",
              flush=True)

    app.middleware("http")(security_headers)
    app.add_middleware(ServerSessions, db=db)
    # the file plus the other form fields; a file variable's image or recording may come as a data URL (base64:
    # 4/3 its size)
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes + 64_000, file_limit=cfg.max_file_bytes * 4 // 3 + 64_000)

    @app.exception_handler(Redirect)
    async def _redirect(request: Request, e: Redirect) -> Response:
        if wants_json(request):
            return error_response(request, 401, msg("login.required"), "authentication_error")
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
        text = {404: msg("not_found.page"), 405: msg("method")}.get(e.status_code, str(e.detail))
        return error_response(request, e.status_code, text)

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> Response:
        log.exception("studio: unexpected error on %s", request.url.path)  # the trace goes to the log only
        return error_response(request, 500, msg("internal", kind=type(e).__name__))

    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(web_admin.router)  # before web: its paths are new, none shadows web's
    app.include_router(web_jobs.router)  # jobs, feedback, training data, tuning (#25): new paths only
    app.include_router(web_files.router)  # the playground's file picker (#26): a new path only
    app.include_router(web.router)
    # background jobs (test-set runs, tuning): worker threads of this process; a job cut off by a stop resumes
    # (tuning) or is marked interrupted (a test run) at the next start
    app.state.jobs = jobs.Worker(db, cfg, app.state.studio.client, data).start()
    app.router.on_shutdown.append(app.state.jobs.stop)
    return app


def warm_spelling() -> None:
    """Load Kiwi and kollm's typo model in a background thread (~5 s on 2 cores), so the first app run that
    undoes typos (AppSpec.fix_typos, kollm/spelling.py) does not wait for them."""
    import threading

    from kollm.spelling import spelling_candidates

    threading.Thread(target=spelling_candidates, args=("검색어",), name="kollm-kiwi", daemon=True).start()


def start_studio(cfg: StudioConfig) -> str:
    """Serve the Studio from a background thread and return its URL: the quickstart keeps the main thread for the
    API server (uvicorn installs signal handlers only in the main thread, so Ctrl-C stops both)."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_studio(cfg), host=cfg.host, port=cfg.port, log_level="warning"))
    warm_spelling()
    threading.Thread(target=server.run, name="kollm-studio", daemon=True).start()
    return f"http://{cfg.host}:{cfg.port}/"


def run_studio(cfg: StudioConfig) -> None:
    import uvicorn

    app = create_studio(cfg)
    warm_spelling()
    print(f"kollm: Studio at http://{cfg.host}:{cfg.port}/  (model: {cfg.model_url}; Ctrl-C to stop)")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")

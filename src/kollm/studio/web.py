"""The Studio's pages: setup, login and the password change, apps, the editor with its playground, versions and
diffs, labels, side by side, keys, usage logs, test sets and runs. Server-rendered (Jinja2, autoescaped);
`static/studio.js` only streams the playground and runs the side-by-side panes.

Every POST checks the session's CSRF token. Handlers are async because they read forms and call the model; their
database calls are short and run inline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from kollm.errors import KollmError
from kollm.sse import sse_event
from kollm.studio import store
from kollm.studio.apps import LABELS, MODES, AppSpec, Params, check_slug, diff
from kollm.studio.builtin import TEMPLATES, builtin_items, template
from kollm.studio.runner import Outcome, run_stream
from kollm.studio.security import check_new_password, check_password, csrf_ok, csrf_token, hash_password, password_mark
from kollm.studio.state import Forbidden, Redirect, State
from kollm.studio.testsets import METRICS, compare, export, parse_upload, run_items, summarize

router = APIRouter()
LOGIN_ATTEMPTS = 10  # wrong passwords per minute before /login and /password refuse for the rest of it


def _state(request: Request) -> State:
    return request.app.state.studio


def db(request: Request) -> Iterator[Session]:
    with _state(request).db() as s:
        yield s


def login(request: Request, s: Session = Depends(db)) -> str:
    """The logged-in user; redirects to /setup (no admin password yet) or /login (also a session that logged in
    with a password changed since)."""
    stored = store.get_setting(s, "admin_password")
    if stored is None:
        raise Redirect("/setup")
    user = request.session.get("user")
    if not user or request.session.get("password") != password_mark(stored):
        raise Redirect("/login")
    return user


def _start_session(request: Request, stored: str) -> None:
    request.session.clear()  # a new session (and CSRF token) at every login: no session fixation
    request.session.update(user="admin", password=password_mark(stored))


def _guessing(st: State) -> list[float]:
    """The recent wrong passwords (at login or as the current password on /password), refusing when there are
    too many. One admin account: a global limit slows guessing without per-IP state."""
    now = time.monotonic()
    fails = st.failed_logins = [t for t in st.failed_logins if now - t < 60]
    if len(fails) >= LOGIN_ATTEMPTS:
        raise Forbidden("too many wrong passwords; wait a minute and try again", 429)
    return fails


async def posted(request: Request) -> FormData:
    """The form of a POST, after its CSRF token (form field or X-CSRF-Token header) is checked."""
    try:
        form = await request.form(max_files=1, max_fields=2000)
    except Exception as e:  # malformed multipart: a 400, not a crash
        raise KollmError(f"the form could not be read ({type(e).__name__})") from None
    if not csrf_ok(request, request.headers.get("x-csrf-token") or form.get("csrf_token")):
        raise Forbidden("the form's security token is missing or stale; reload the page and try again")
    return form


def page(request: Request, name: str, status: int = 200, **ctx: object) -> HTMLResponse:
    st = _state(request)
    html = st.env.get_template(name).render(request=request, csrf=csrf_token(request), user=request.session.get(
        "user"), model_url=st.cfg.model_url, labels_all=LABELS, modes=MODES, metrics=METRICS, **ctx)
    return HTMLResponse(html, status)


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303)


def _int(value: object, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise KollmError(f"{what} must be a whole number, got {value!r}") from None


def _optional(form: FormData, name: str) -> float | None:
    """A number field; None when left empty."""
    v = str(form.get(name, "") or "").strip()
    try:
        return float(v) if v else None
    except ValueError:
        raise KollmError(f"{name.replace('_', ' ')} must be a number, got {v!r}") from None


def _float(form: FormData, name: str, default: float) -> float:
    v = _optional(form, name)
    return default if v is None else v


def _unescape(line: str) -> str:
    # stop sequences are typed one per line, so a newline stop is written as \n (and a tab as \t)
    return line.replace("\\n", "\n").replace("\\t", "\t")


def _escape(stop: str) -> str:
    return stop.replace("\t", "\\t").replace("\n", "\\n")


def spec_from_form(form: FormData) -> AppSpec:
    """The editor form as an AppSpec: text fields, parameters, and the examples table (`ex-<row>-<column>`)."""
    d = Params()
    # temperature and top-p left empty: the model's default (not sent); see Params
    params = Params(temperature=_optional(form, "temperature"), top_p=_optional(form, "top_p"),
                    top_k=int(_float(form, "top_k", d.top_k)),
                    repetition_penalty=_float(form, "repetition_penalty", d.repetition_penalty),
                    max_tokens=int(_float(form, "max_tokens", d.max_tokens)),
                    stop=[_unescape(x) for x in str(form.get("stop", "")).splitlines() if x.strip()])
    spec = AppSpec(template=str(form.get("template", "")).replace("\r\n", "\n"),
                   instruction=str(form.get("instruction", "")).replace("\r\n", "\n"), params=params,
                   mode=str(form.get("mode", "completion")), json_schema=str(form.get("json_schema", "")),
                   pii_mask=form.get("pii_mask") in ("on", "1", "true"))
    rows: dict[int, dict] = {}
    for key, value in form.multi_items():
        if key.startswith("ex-") and isinstance(value, str):
            _, row, col = key.split("-", 2)
            if row.isdigit():
                rows.setdefault(int(row), {})[col] = value.replace("\r\n", "\n")
    for _, cols in sorted(rows.items()):
        if any(v.strip() for v in cols.values()):  # an all-empty row is a spare row, not an example
            out = cols.pop("output", "")
            spec.examples.append({"inputs": cols, "output": out})
    return spec.check()


# --- setup, login -----------------------------------------------------------------------------------------------
@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, s: Session = Depends(db)) -> Response:
    if store.get_setting(s, "admin_password") is not None:
        return _see("/login")
    return page(request, "setup.html")


@router.post("/setup")
async def setup(request: Request, s: Session = Depends(db)) -> Response:
    form = await posted(request)
    if store.get_setting(s, "admin_password") is not None:  # set once; a second setup is an attack, not a change
        raise Forbidden("the admin password is already set; log in")
    _set_password(request, s, form)
    return _see("/")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, s: Session = Depends(db)) -> Response:
    if store.get_setting(s, "admin_password") is None:
        return _see("/setup")
    return page(request, "login.html")


@router.post("/login")
async def login_post(request: Request, s: Session = Depends(db)) -> Response:
    form = await posted(request)
    stored = store.get_setting(s, "admin_password")
    if stored is None:
        return _see("/setup")
    fails = _guessing(_state(request))
    if not check_password(str(form.get("password", "")), stored):
        fails.append(time.monotonic())
        return page(request, "login.html", 401, error="wrong password")
    _start_session(request, stored)
    return _see("/")  # always home: a ?next= parameter would be an open redirect


@router.get("/password", response_class=HTMLResponse)
def password_page(request: Request, changed: bool = False, user: str = Depends(login)) -> Response:
    return page(request, "password.html", changed=changed)


@router.post("/password")
async def change_password(request: Request, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    """A new admin password, given the current one (a session left open is not enough to take the account).
    Every other session ends; this one continues in a new session."""
    form = await posted(request)
    fails = _guessing(_state(request))
    if not check_password(str(form.get("current", "")), store.get_setting(s, "admin_password") or ""):
        fails.append(time.monotonic())
        return page(request, "password.html", 400, error="the current password is wrong")
    _set_password(request, s, form)
    return _see("/password?changed=1")


def _set_password(request: Request, s: Session, form: object) -> None:
    """The form's new admin password (typed twice), stored hashed; this browser goes on in a new session."""
    password = str(form.get("password", ""))
    check_new_password(password, str(form.get("confirm", "")))
    stored = hash_password(password)
    store.set_setting(s, "admin_password", stored)
    _start_session(request, stored)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await posted(request)
    request.session.clear()
    return _see("/login")


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


# --- apps -------------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(request: Request, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    apps = [(a, store.latest(s, a).number, store.labels(s, a)) for a in store.list_apps(s)]
    return page(request, "index.html", apps=apps, templates=[(t, template(t)) for t in TEMPLATES])


@router.post("/apps")
async def new_app(request: Request, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    form = await posted(request)
    slug, name = str(form.get("slug", "")).strip(), str(form.get("name", "")).strip()
    base = str(form.get("template", ""))
    check_slug(slug)
    if base:
        t = template(base)
        app = store.create_app(s, slug, name or t["name"], t["spec"])
        store.add_test_set(s, app, f"{t['name']} (built in)", builtin_items(base))
    else:
        app = store.create_app(s, slug, name, AppSpec())
    return _see(f"/apps/{app.slug}")


@router.get("/apps/{slug}", response_class=HTMLResponse)
def app_page(request: Request, slug: str, version: int | None = None, user: str = Depends(login),
             s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    v = store.get_version(s, app, version) if version is not None else store.latest(s, app)
    spec = AppSpec.from_dict(v.spec)
    base = str(request.base_url).rstrip("/")
    return page(request, "app.html", app=app, v=v, spec=spec, variables=spec.variables(),
                versions=store.versions(s, app), labels=store.labels(s, app),
                stop_text="\n".join(_escape(x) for x in spec.params.stop), base=base,
                code_inputs=json.dumps({k: "..." for k in spec.variables()}, ensure_ascii=False))


@router.post("/apps/{slug}/versions")
async def save(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    v = store.save_version(s, app, spec_from_form(form), str(form.get("note", "")))
    return _see(f"/apps/{app.slug}/versions/{v.number}")


@router.get("/apps/{slug}/versions/{number}", response_class=HTMLResponse)
def version_page(request: Request, slug: str, number: int, against: int | None = None, user: str = Depends(login),
                 s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    v = store.get_version(s, app, number)
    other_n = against if against is not None else number - 1
    other = store.get_version(s, app, other_n) if other_n >= 1 else None
    lines = diff(AppSpec.from_dict(other.spec) if other else None, AppSpec.from_dict(v.spec),
                 f"version {other_n}" if other else "(nothing)", f"version {number}")
    return page(request, "version.html", app=app, v=v, other=other, diff_lines=lines,
                versions=store.versions(s, app), labels=store.labels(s, app))


@router.post("/apps/{slug}/labels")
async def set_label(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    store.move_label(s, app, str(form.get("label", "")), _int(form.get("version", ""), "version"))
    return _see(f"/apps/{app.slug}")


# --- playground and side by side ----------------------------------------------------------------------------------
@router.post("/apps/{slug}/playground")
async def playground(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    """Runs the editor's unsaved draft (or a saved `version`) on the `in-<variable>` inputs; an SSE stream of
    runner events (prompt with its token count, deltas, done/error with latency, tokens and characters)."""
    form = await posted(request)
    app = store.get_app(s, slug)
    if form.get("version"):
        v = store.get_version(s, app, _int(form.get("version"), "version"))
        spec, number = AppSpec.from_dict(v.spec), v.number
    else:
        spec, number = spec_from_form(form), _int(form.get("base_version", "0") or 0, "base_version")
    inputs = {k[3:]: str(v) for k, v in form.multi_items() if k.startswith("in-")}
    model = str(form.get("model", "")).strip()
    st = _state(request)
    events = run_stream(st.client, spec, inputs, model, count_prompt=True)
    first = await anext(events)  # renders the prompt: a missing input is a 400 here, before the stream starts

    async def body() -> object:
        yield sse_event(first)
        async for ev in events:
            if ev["type"] in ("done", "error"):
                with st.db() as s2:
                    store.log_usage(s2, store.get_app(s2, slug), number, "playground",
                                    Outcome(**{k: v for k, v in ev.items() if k in Outcome.__dataclass_fields__}))
            yield sse_event(ev)
        yield sse_event("[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/apps/{slug}/compare", response_class=HTMLResponse)
def side_by_side(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    vs = store.versions(s, app)
    variables = list(dict.fromkeys(x for v in vs for x in AppSpec.from_dict(v.spec).variables()))
    return page(request, "compare.html", app=app, versions=vs, variables=variables, labels=store.labels(s, app))


# --- keys and logs ------------------------------------------------------------------------------------------------
@router.get("/apps/{slug}/keys", response_class=HTMLResponse)
def keys_page(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    return page(request, "keys.html", app=app, keys=store.app_keys(s, app), new_key=None,
                base=str(request.base_url).rstrip("/"))


@router.post("/apps/{slug}/keys")
async def new_key(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    row, key = store.create_key(s, app, str(form.get("name", "")))
    # The key is in this one response only (no redirect that could show it again); no-store keeps it out of caches.
    resp = page(request, "keys.html", app=app, keys=store.app_keys(s, app), new_key=key, new_row=row,
                base=str(request.base_url).rstrip("/"))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@router.post("/apps/{slug}/keys/{key_id}/revoke")
async def revoke(request: Request, slug: str, key_id: int, user: str = Depends(login),
                 s: Session = Depends(db)) -> Response:
    await posted(request)
    store.revoke_key(s, store.get_app(s, slug), key_id)
    return _see(f"/apps/{slug}/keys")


@router.get("/apps/{slug}/logs", response_class=HTMLResponse)
def logs_page(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    agg, recent = store.usage(s, app)
    return page(request, "logs.html", app=app, agg=agg, recent=recent, time=time)


# --- test sets and runs -------------------------------------------------------------------------------------------
@router.get("/apps/{slug}/tests", response_class=HTMLResponse)
def tests_page(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    sets = store.test_sets(s, app)
    return page(request, "tests.html", app=app, sets=sets, names={t.id: t.name for t in sets},
                versions=store.versions(s, app), runs=store.runs(s, app), labels=store.labels(s, app))


@router.post("/apps/{slug}/tests")
async def upload(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    f = form.get("file")
    if not isinstance(f, UploadFile) or not f.filename:
        raise KollmError("choose a .csv or .jsonl file to upload")
    cfg = _state(request).cfg
    data = await f.read(cfg.max_upload_bytes + 1)
    items = parse_upload(f.filename, data, cfg.max_upload_bytes, cfg.max_items)
    # the file name is only a label (never a path): its last path component, trimmed
    name = str(form.get("name", "")).strip() or f.filename.replace("\\", "/").rsplit("/", 1)[-1]
    store.add_test_set(s, app, name, items)
    return _see(f"/apps/{app.slug}/tests")


@router.post("/apps/{slug}/tests/{ts_id}/run")
async def run_tests(request: Request, slug: str, ts_id: int, user: str = Depends(login),
                    s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    ts = store.get_test_set(s, app, ts_id)
    v = store.get_version(s, app, _int(form.get("version", ""), "version"))
    st = _state(request)
    model = str(form.get("model", "")).strip()
    results = await run_items(st.client, AppSpec.from_dict(v.spec), ts.items, model)
    for r in results:
        store.log_usage(s, app, v.number, "test", Outcome(
            output=r["output"], prompt_tokens=r["prompt_tokens"], completion_tokens=r["completion_tokens"],
            output_chars=len(r["output"]), latency_ms=r["latency_ms"], error=r["error"]))
    run = store.add_run(s, app, ts, v.number, model or st.cfg.model, summarize(results), results)
    return _see(f"/apps/{app.slug}/runs/{run.id}")


@router.get("/apps/{slug}/runs/compare", response_class=HTMLResponse)
def compare_runs(request: Request, slug: str, a: int, b: int, user: str = Depends(login),
                 s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    ra, rb = store.get_run(s, app, a), store.get_run(s, app, b)
    rows = compare(ra.results, rb.results)
    return page(request, "run_compare.html", app=app, ra=ra, rb=rb, rows=rows,
                regressions=sum(r["regressed"] for r in rows))


@router.get("/apps/{slug}/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, slug: str, run_id: int, user: str = Depends(login),
             s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    run = store.get_run(s, app, run_id)
    return page(request, "run.html", app=app, run=run)


@router.get("/apps/{slug}/runs/{run_id}/export")
def export_run(request: Request, slug: str, run_id: int, format: str = "csv", user: str = Depends(login),
               s: Session = Depends(db)) -> Response:
    if format not in ("csv", "jsonl"):
        raise KollmError("format must be csv or jsonl")
    app = store.get_app(s, slug)
    run = store.get_run(s, app, run_id)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return Response(export(run.results, format), media_type=f"{media}; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{app.slug}-run{run.id}.{format}"'})

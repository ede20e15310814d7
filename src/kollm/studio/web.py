"""The Studio's pages: setup, login and the password change, apps, the editor with its playground, versions and
diffs, labels, side by side, keys, usage logs, test sets and runs. Server-rendered (Jinja2, autoescaped);
`static/studio.js` only streams the playground and runs the side-by-side panes.

Every POST checks the session's CSRF token and the user's role (`posted`). Handlers are plain `def` (FastAPI runs
them in worker threads) with the form read by `Depends(posted)`, so database calls and password hashing never stall
the event loop; the ones that stream a model's output are async and put their database calls in a thread."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from kollm.errors import KollmError
from kollm.sse import sse_event
from kollm.studio import accounts, jobs, store
from kollm.studio.apps import LABELS, MODES, AppSpec, Params, check_slug, diff, file_kinds
from kollm.studio.builtin import TEMPLATES, builtin_items, template
from kollm.studio.compare import baseline, pair_runs
from kollm.studio.db import Feedback
from kollm.studio.messages import msg
from kollm.studio.runner import Outcome, render, run_stream
from kollm.studio.security import check_password, client_address, csrf_ok, csrf_token, role_allows, setup_token_ok
from kollm.studio.state import Forbidden, Redirect, State
from kollm.studio.testsets import METRICS, export, parse_mapping, parse_upload

router = APIRouter()
LOGIN_ATTEMPTS = 10  # wrong passwords per client address per minute (the default of [studio] login_attempts)
VIEWER_POSTS = ("/logout", "/password")  # what a viewer may post; every other POST changes an app


def _state(request: Request) -> State:
    return request.app.state.studio


def db(request: Request) -> Iterator[Session]:
    with _state(request).db() as s:
        yield s


def login(request: Request, s: Session = Depends(db)) -> str:
    """The logged-in user's name; redirects to /setup (no user yet) or /login. A session whose row was deleted
    (logout, password or role changed, user removed) arrives here empty: logged out."""
    user = accounts.get_user(s, request.session.get("uid"))
    if user is None:
        raise Redirect("/login" if accounts.any_user(s) else "/setup")
    request.state.user = user
    return user.name


def admin(request: Request, user: str = Depends(login)) -> str:
    """A route for admins only (users)."""
    role = request.state.user.role
    if not role_allows(role, "admin"):
        raise Forbidden(msg("role.forbidden", role="admin", have=role))
    return user


def _start_session(request: Request, user: object) -> None:
    request.session.clear()  # a new session (token and CSRF token) at every login: no session fixation
    request.session.update(uid=user.id, user=user.name, role=user.role)
    request.session.rotate()


def _throttled(request: Request) -> str:
    """The client's address, refused (429) while it has too many recent wrong passwords or setup tokens. Per
    address: one guessing client cannot lock the admin out from another."""
    addr = client_address(request)
    wait = request.app.state.login_throttle.wait(addr)
    if wait > 0:
        raise Forbidden(msg("login.throttled", seconds=math.ceil(wait)), 429)
    return addr


async def posted(request: Request) -> FormData:
    """The form of a POST, after its CSRF token (form field or X-CSRF-Token header) is checked, and the user's
    role: a viewer posts nothing but logout and a password change. Also a dependency (`Depends(posted)`), so a
    route can be a plain `def` that FastAPI runs in a worker thread, off the event loop."""
    try:
        form = await request.form(max_files=1, max_fields=2000)
    except Exception as e:  # malformed multipart: a 400, not a crash
        raise KollmError(msg("form.unreadable", what=type(e).__name__)) from None
    if not csrf_ok(request, request.headers.get("x-csrf-token") or form.get("csrf_token")):
        raise Forbidden(msg("csrf"))
    role = request.session.get("role")
    if request.session.get("uid") and request.url.path not in VIEWER_POSTS and not role_allows(role, "editor"):
        raise Forbidden(msg("role.forbidden", role="editor", have=role))
    return form


def page(request: Request, name: str, status: int = 200, **ctx: object) -> HTMLResponse:
    st = _state(request)
    html = st.env.get_template(name).render(request=request, csrf=csrf_token(request), user=request.session.get(
        "user"), role=request.session.get("role"), model_url=st.cfg.model_url, labels_all=LABELS, modes=MODES,
        metrics=METRICS, **ctx)
    return HTMLResponse(html, status)


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303)


def _int(value: object, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise KollmError(msg("number", what=what, value=value)) from None


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
                   pii_mask=form.get("pii_mask") in ("on", "1", "true"),
                   fix_typos=form.get("fix_typos") in ("on", "1", "true"),
                   keep_close=form.get("keep_close") in ("on", "1", "true"),
                   model=str(form.get("spec_model", "") or "").strip(),  # a tuned version's adapter (kept on edit)
                   files=file_kinds(form.multi_items(), str(form.get("template", ""))))  # file-<var>: image|audio
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


# --- setup, login ---------------------------------------------------------------------------------------------
# Plain `def` routes: FastAPI runs them in worker threads, so scrypt and the database never stall the event loop.
@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, token: str = "", s: Session = Depends(db)) -> Response:
    if accounts.any_user(s):
        return _see("/login")
    return page(request, "setup.html", token=token)


@router.post("/setup")
def setup(request: Request, form: FormData = Depends(posted), s: Session = Depends(db)) -> Response:
    """The first admin, given the setup token printed on the console (so not whoever opens the page first)."""
    if accounts.any_user(s):  # made once; a second setup is an attack, not a change
        raise Forbidden(msg("setup.done"))
    addr = _throttled(request)
    if not setup_token_ok(form.get("token"), accounts.setup_token_hash(s)):
        request.app.state.login_throttle.add(addr)
        return page(request, "setup.html", 403, error=msg("setup.token"), token="")
    user = accounts.create_user(s, "admin", str(form.get("password", "")), str(form.get("confirm", "")), "admin")
    store.set_setting(s, accounts.SETUP_TOKEN, "")  # used up
    _start_session(request, user)
    return _see("/")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, s: Session = Depends(db)) -> Response:
    if not accounts.any_user(s):
        return _see("/setup")
    return page(request, "login.html")


@router.post("/login")
def login_post(request: Request, form: FormData = Depends(posted), s: Session = Depends(db)) -> Response:
    if not accounts.any_user(s):
        return _see("/setup")
    addr = _throttled(request)
    name = str(form.get("name", "") or "admin")  # the name field may be left empty for the first admin
    user = accounts.authenticate(s, name, str(form.get("password", "")))
    if user is None:
        request.app.state.login_throttle.add(addr)
        return page(request, "login.html", 401, error=msg("login.wrong"), login_name=name)
    _start_session(request, user)
    return _see("/")  # always home: a ?next= parameter would be an open redirect


@router.get("/password", response_class=HTMLResponse)
def password_page(request: Request, changed: bool = False, user: str = Depends(login)) -> Response:
    return page(request, "password.html", changed=changed)


@router.post("/password")
def change_password(request: Request, user: str = Depends(login), form: FormData = Depends(posted),
                    s: Session = Depends(db)) -> Response:
    """A new password, given the current one (a session left open is not enough to take the account). Every
    session of the user ends (their rows are deleted); this browser goes on in a new one."""
    addr = _throttled(request)
    me = accounts.get_user(s, request.state.user.id)
    if not check_password(str(form.get("current", "")), me.password):
        request.app.state.login_throttle.add(addr)
        return page(request, "password.html", 400, error=msg("password.current"))
    accounts.set_password(s, me, str(form.get("password", "")), str(form.get("confirm", "")))
    _start_session(request, me)
    return _see("/password?changed=1")


@router.post("/logout")
def logout(request: Request, form: FormData = Depends(posted)) -> Response:
    request.session.clear()  # the session's row is deleted: this cookie is nothing any more
    return _see("/login")


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


# --- apps -------------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(request: Request, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    apps = [(a, store.latest(s, a).number, store.labels(s, a)) for a in store.list_apps(s)]
    return page(request, "index.html", apps=apps, templates=[(t, template(t)) for t in TEMPLATES],
                archived=store.archived_apps(s))


@router.post("/apps")
def new_app(request: Request, user: str = Depends(login), form: FormData = Depends(posted),
            s: Session = Depends(db)) -> Response:
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
def save(request: Request, slug: str, user: str = Depends(login), form: FormData = Depends(posted),
         s: Session = Depends(db)) -> Response:
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
def set_label(request: Request, slug: str, user: str = Depends(login), form: FormData = Depends(posted),
              s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    store.move_label(s, app, str(form.get("label", "")), _int(form.get("version", ""), "version"))
    return _see(f"/apps/{app.slug}")


# --- playground and side by side ----------------------------------------------------------------------------------
def _playground_version(st: State, slug: str, form: FormData) -> tuple[AppSpec, int]:
    with st.db() as s:
        app = store.get_app(s, slug)
        if form.get("version"):
            v = store.get_version(s, app, _int(form.get("version"), "version"))
            return AppSpec.from_dict(v.spec), v.number
    return spec_from_form(form), _int(form.get("base_version", "0") or 0, "base_version")


@router.post("/apps/{slug}/playground")
async def playground(request: Request, slug: str, user: str = Depends(login),
                     form: FormData = Depends(posted)) -> Response:
    """Runs the editor's unsaved draft (or a saved `version`) on the `in-<variable>` inputs; an SSE stream of
    runner events (prompt with its token count, deltas, done/error with latency, tokens and characters). The run
    is logged with its trace and the user (the playground's history); a stopped stream is not logged."""
    st = _state(request)
    spec, number = await run_in_threadpool(_playground_version, st, slug, form)
    inputs = {k[3:]: str(v) for k, v in form.multi_items() if k.startswith("in-")}
    model = str(form.get("model", "")).strip()
    events = run_stream(st.client, spec, inputs, model, count_prompt=True)
    first = await anext(events)  # renders the prompt: a missing input is a 400 here, before the stream starts
    trace = {"inputs": inputs, "prompt": render(spec, inputs), "model": spec.model or model or st.cfg.model,
             "user_id": request.state.user.id} if st.cfg.log_content else None  # the trace is the history too

    def log(out: Outcome) -> None:
        with st.db() as s2:
            store.log_usage(s2, store.get_app(s2, slug), number, "playground", out, trace)

    async def body() -> object:
        yield sse_event(first)
        async for ev in events:
            if ev["type"] in ("done", "error"):
                await run_in_threadpool(log, Outcome(**{k: v for k, v in ev.items()
                                                        if k in Outcome.__dataclass_fields__}))
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
    # a key just made is in the session once (post/redirect/get): shown on this page, then gone; a reload of
    # this page neither shows it again nor makes a second key
    flash = request.session.pop("new_key", None)
    new = flash if isinstance(flash, dict) and flash.get("app") == app.slug else None
    resp = page(request, "keys.html", app=app, keys=store.app_keys(s, app), new_key=new and new["key"],
                new_name=new and new["name"], base=str(request.base_url).rstrip("/"))
    resp.headers["Cache-Control"] = "no-store"  # keeps the key out of caches
    return resp


@router.post("/apps/{slug}/keys")
def new_key(request: Request, slug: str, user: str = Depends(login), form: FormData = Depends(posted),
            s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    row, key = store.create_key(s, app, str(form.get("name", "")))
    request.session["new_key"] = {"app": app.slug, "key": key, "name": row.name}
    return _see(f"/apps/{app.slug}/keys")


@router.post("/apps/{slug}/keys/{key_id}/revoke")
def revoke(request: Request, slug: str, key_id: int, user: str = Depends(login), form: FormData = Depends(posted),
           s: Session = Depends(db)) -> Response:
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
def upload(request: Request, slug: str, user: str = Depends(login), form: FormData = Depends(posted),
           s: Session = Depends(db)) -> Response:
    """A test set, checked against the production (else newest) version's template: every variable has a column
    and there is something to score by; `mapping` renames the file's columns (검색어 = query). A refused file
    comes back to the page with the message and the file's columns to map."""
    app = store.get_app(s, slug)
    f = form.get("file")
    if not isinstance(f, UploadFile) or not f.filename:
        raise KollmError(msg("upload.file"))
    cfg = _state(request).cfg
    data = f.file.read(cfg.max_upload_bytes + 1)
    labels = store.labels(s, app)
    v = store.get_version(s, app, labels["production"]) if "production" in labels else store.latest(s, app)
    mapping_text = str(form.get("mapping", ""))
    try:
        items = parse_upload(f.filename, data, cfg.max_upload_bytes, cfg.max_items,
                             variables=AppSpec.from_dict(v.spec).variables(), mapping=parse_mapping(mapping_text))
    except KollmError as e:
        sets = store.test_sets(s, app)
        return page(request, "tests.html", 400, app=app, sets=sets, names={t.id: t.name for t in sets},
                    versions=store.versions(s, app), runs=store.runs(s, app), labels=labels, upload_error=str(e),
                    columns=getattr(e, "columns", None), mapping=mapping_text)
    # the file name is only a label (never a path): its last path component, trimmed
    name = str(form.get("name", "")).strip() or f.filename.replace("\\", "/").rsplit("/", 1)[-1]
    store.add_test_set(s, app, name, items)
    return _see(f"/apps/{app.slug}/tests")


@router.post("/apps/{slug}/tests/{ts_id}/run")
async def run_tests(request: Request, slug: str, ts_id: int, user: str = Depends(login),
                    s: Session = Depends(db)) -> Response:
    """Queues the run as a background job (or finds the one already queued or running for the same version, test
    set and model) and shows its page; the worker (jobs.py) runs the items and logs them."""
    form = await posted(request)
    app = store.get_app(s, slug)
    job, _ = jobs.submit_test_run(s, app, _int(form.get("version", ""), "version"), ts_id,
                                  str(form.get("model", "")).strip())
    request.app.state.jobs.wake()
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(jobs.view(job), 202)
    return _see(f"/jobs/{job.id}?follow=1")


@router.get("/apps/{slug}/runs/compare", response_class=HTMLResponse)
def compare_runs(request: Request, slug: str, a: int, b: int, user: str = Depends(login),
                 s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    ra, rb = store.get_run(s, app, a), store.get_run(s, app, b)
    both = pair_runs(ra.results, rb.results)  # per metric and item, held-out items and the copy baseline
    return page(request, "run_compare.html", app=app, ra=ra, rb=rb, rows=both["rows"], tables=both["tables"],
                regressions=both["regressions"], same_set=ra.test_set_id == rb.test_set_id)


@router.get("/apps/{slug}/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, slug: str, run_id: int, user: str = Depends(login),
             s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    run = store.get_run(s, app, run_id)
    marks = {f.item_id: f for f in s.scalars(select(Feedback).where(Feedback.run_id == run.id))}
    return page(request, "run.html", app=app, run=run, copy=baseline(run.results), feedback=marks)


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

"""The Studio's housekeeping pages (#25): archive, restore and delete apps, delete test sets, users and their
roles, a call's trace on the logs page, the playground's history, and the model server's status on the home page.

Plain `def` routes (FastAPI runs them in worker threads), the form read and CSRF-checked by `web.posted` as a
dependency, roles by `web.posted` (editor for every POST) and `web.admin` (users, deleting an app)."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from kollm.errors import KollmError
from kollm.studio import accounts, store
from kollm.studio.client import ModelError
from kollm.studio.messages import msg
from kollm.studio.security import ROLES
from kollm.studio.web import _see, admin, db, login, page, posted

router = APIRouter()


# --- apps and test sets -----------------------------------------------------------------------------------------
@router.post("/apps/{slug}/archive")
def archive(request: Request, slug: str, user: str = Depends(login), form: FormData = Depends(posted),
            s: Session = Depends(db)) -> Response:
    store.archive_app(s, store.get_app(s, slug))
    return _see("/")


@router.post("/apps/{slug}/restore")
def restore(request: Request, slug: str, user: str = Depends(login), form: FormData = Depends(posted),
            s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    store.restore_app(s, app)
    return _see(f"/apps/{app.slug}")


@router.post("/apps/{slug}/delete")
def delete_app(request: Request, slug: str, user: str = Depends(admin), form: FormData = Depends(posted),
               s: Session = Depends(db)) -> Response:
    """For good: the app with its versions, keys, logs, test sets and runs. The app id typed again confirms it."""
    app = store.get_app(s, slug)
    if str(form.get("confirm", "")).strip() != app.slug:
        raise KollmError(msg("app.confirm", slug=app.slug))
    store.delete_app(s, app)
    return _see("/")


@router.post("/apps/{slug}/tests/{ts_id}/delete")
def delete_test_set(request: Request, slug: str, ts_id: int, user: str = Depends(login),
                    form: FormData = Depends(posted), s: Session = Depends(db)) -> Response:
    store.delete_test_set(s, store.get_app(s, slug), ts_id)
    return _see(f"/apps/{slug}/tests")


# --- traces and history -------------------------------------------------------------------------------------------
@router.get("/apps/{slug}/logs/{log_id}", response_class=HTMLResponse)
def log_page(request: Request, slug: str, log_id: int, user: str = Depends(login),
             s: Session = Depends(db)) -> Response:
    """One call as it happened: the inputs, the prompt as sent, the output, tokens, characters and latency."""
    app = store.get_app(s, slug)
    row = store.get_log(s, app, log_id)
    prompt = row.prompt
    if prompt and prompt.startswith("["):  # chat messages were stored as JSON: shown one message a block
        try:
            prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in json.loads(prompt))
        except (ValueError, KeyError, TypeError):
            pass
    return page(request, "log.html", app=app, row=row, prompt=prompt)


@router.get("/apps/{slug}/playground/history")
def playground_history(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> dict:
    """This user's last playground runs of the app (newest first), for the playground to reload."""
    app = store.get_app(s, slug)
    rows = store.history(s, app, request.state.user.id)
    return {"data": [{"id": r.id, "version": r.version, "created": r.created, "inputs": r.inputs or {},
                      "output": r.output or "", "error": r.error, "latency_ms": round(r.latency_ms, 1),
                      "model": r.model} for r in rows]}


@router.get("/model-status")
async def model_status(request: Request, user: str = Depends(login)) -> dict:
    """Whether the model server answers, its model names and how long /v1/models took (the home page asks)."""
    client = request.app.state.studio.client
    t = time.perf_counter()
    try:
        models = await client.models()
    except ModelError as e:
        return {"reachable": False, "error": e.message, "url": client.root}
    return {"reachable": True, "models": models, "latency_ms": round((time.perf_counter() - t) * 1000, 1),
            "url": client.root}


# --- users --------------------------------------------------------------------------------------------------------
@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, user: str = Depends(admin), s: Session = Depends(db)) -> Response:
    return page(request, "users.html", users=accounts.users(s), roles=ROLES)


@router.post("/users")
def add_user(request: Request, user: str = Depends(admin), form: FormData = Depends(posted),
             s: Session = Depends(db)) -> Response:
    accounts.create_user(s, str(form.get("name", "")), str(form.get("password", "")), str(form.get("confirm", "")),
                         str(form.get("role", "")))
    return _see("/users")


@router.post("/users/{name}/role")
def set_role(request: Request, name: str, user: str = Depends(admin), form: FormData = Depends(posted),
             s: Session = Depends(db)) -> Response:
    accounts.set_role(s, name, str(form.get("role", "")))
    return _see("/users")


@router.post("/users/{name}/delete")
def delete_user(request: Request, name: str, user: str = Depends(admin), form: FormData = Depends(posted),
                s: Session = Depends(db)) -> Response:
    accounts.delete_user(s, name)
    return _see("/users")

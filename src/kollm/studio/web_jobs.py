"""The Studio's pages for long work and what it learns from: background jobs (list, page, JSON status, cancel),
feedback on outputs (good / corrected), an app's training data (counted, split, exported) and "Tune this app".

Every POST checks the session's CSRF token (web.posted). A POST that starts work only queues a job and redirects
to its page; the worker (jobs.py) does the work, and studio.js polls the job's JSON for progress."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from kollm.data.normalize import nfc
from kollm.errors import KollmError
from kollm.studio import jobs, store
from kollm.studio.apps import AppSpec
from kollm.studio.db import App, Feedback, UsageLog
from kollm.studio.messages import msg
from kollm.studio.training import HELD_OUT, SOURCES, export_rows, gather, jsonl, tune_template
from kollm.studio.web import _int, db, login, page, posted

router = APIRouter()
TUNE_DEFAULTS = {"method": "lora", "steps": 60, "lr": 4e-4, "rank": 16}


def _worker(request: Request) -> jobs.Worker:
    return request.app.state.jobs


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303)


def _json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


# --- jobs ---------------------------------------------------------------------------------------------------------
@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, app: str = "", user: str = Depends(login), s: Session = Depends(db)) -> Response:
    the_app = store.get_app(s, app) if app else None
    rows = jobs.list_jobs(s, the_app)
    slugs = {a.id: a.slug for a in s.scalars(select(App))}
    return page(request, "jobs.html", app=the_app, jobs=[(j, jobs.view(j), slugs.get(j.app_id, "")) for j in rows])


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int, follow: bool = False, user: str = Depends(login),
             s: Session = Depends(db)) -> Response:
    """The job's page; `follow` (where a run button lands): a test run that has finished goes on to its results."""
    job = jobs.get_job(s, job_id)
    if follow and job.kind == "test_run" and job.status == "done" and (job.result or {}).get("url"):
        return _see(job.result["url"])
    app = s.get(App, job.app_id)
    return page(request, "job.html", app=app, job=job, v=jobs.view(job))


@router.get("/jobs/{job_id}/status")
def job_status(request: Request, job_id: int, user: str = Depends(login), s: Session = Depends(db)) -> dict:
    """The job as JSON: status, done/total, rate (per second), eta_s, error, note, result (studio.js polls it)."""
    return jobs.view(jobs.get_job(s, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: int, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    await posted(request)
    job = jobs.cancel(s, jobs.get_job(s, job_id))
    if _json(request):
        return JSONResponse(jobs.view(job))
    return _see(f"/jobs/{job.id}")


# --- feedback -----------------------------------------------------------------------------------------------------
def _verdict(form: object) -> tuple[str, str]:
    verdict = str(form.get("verdict", ""))
    corrected = nfc(str(form.get("corrected", "") or "")).strip()
    if verdict not in ("good", "corrected"):
        raise KollmError(msg("feedback.verdict"))
    if verdict == "corrected" and not corrected:
        raise KollmError(msg("feedback.empty"))
    if len(corrected) > 20_000:
        raise KollmError(msg("feedback.long"))
    return verdict, corrected if verdict == "corrected" else ""


@router.post("/apps/{slug}/runs/{run_id}/feedback")
async def run_feedback(request: Request, slug: str, run_id: int, user: str = Depends(login),
                       s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    run = store.get_run(s, app, run_id)
    item_id = str(form.get("item", ""))
    item = next((r for r in run.results if str(r["id"]) == item_id), None)
    if item is None:
        raise store.NotFound(f"run {run_id} has no item {item_id!r}")
    verdict, corrected = _verdict(form)
    row = s.scalar(select(Feedback).where(Feedback.app_id == app.id, Feedback.run_id == run.id,
                                          Feedback.item_id == item_id))
    if row is None:
        row = Feedback(app_id=app.id, source="run", run_id=run.id, item_id=item_id, version=run.version,
                       inputs=dict(item["inputs"]), output=item.get("output", ""), verdict=verdict)
        s.add(row)
    row.verdict, row.corrected = verdict, corrected
    s.commit()
    if _json(request):
        return JSONResponse({"id": row.id, "verdict": row.verdict, "corrected": row.corrected})
    return _see(f"/apps/{slug}/runs/{run_id}#item-{item_id}")


@router.post("/apps/{slug}/logs/{log_id}/feedback")
async def log_feedback(request: Request, slug: str, log_id: int, user: str = Depends(login),
                       s: Session = Depends(db)) -> Response:
    """Feedback on one logged call: its inputs and output come from the log (traced calls only)."""
    form = await posted(request)
    app = store.get_app(s, slug)
    entry = s.get(UsageLog, log_id)
    if entry is None or entry.app_id != app.id:
        raise store.NotFound(f"app {slug!r} has no logged call {log_id}")
    inputs = getattr(entry, "inputs", None)
    if not isinstance(inputs, dict) or not inputs:
        raise KollmError(msg("feedback.no_inputs"))
    verdict, corrected = _verdict(form)
    row = s.scalar(select(Feedback).where(Feedback.app_id == app.id, Feedback.log_id == log_id))
    if row is None:
        row = Feedback(app_id=app.id, source="log", log_id=log_id, version=entry.version, inputs=dict(inputs),
                       output=str(getattr(entry, "output", "") or ""), verdict=verdict)
        s.add(row)
    row.verdict, row.corrected = verdict, corrected
    s.commit()
    return _see(f"/apps/{slug}/logs")


@router.post("/apps/{slug}/feedback/{fid}/delete")
async def delete_feedback(request: Request, slug: str, fid: int, user: str = Depends(login),
                          s: Session = Depends(db)) -> Response:
    await posted(request)
    app = store.get_app(s, slug)
    row = s.get(Feedback, fid)
    if row is None or row.app_id != app.id:
        raise store.NotFound(msg("feedback.missing", id=fid))
    s.delete(row)
    s.commit()
    return _see(f"/apps/{slug}/training")


# --- training data and tuning ---------------------------------------------------------------------------------------
def _sources(values: list[str]) -> tuple[str, ...]:
    bad = [x for x in values if x not in SOURCES]
    if bad:
        raise KollmError(msg("training.source", source=bad[0], choices=", ".join(SOURCES)))
    return tuple(dict.fromkeys(values))


@router.get("/apps/{slug}/training", response_class=HTMLResponse)
def training_page(request: Request, slug: str, version: int | None = None, user: str = Depends(login),
                  s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    v = store.get_version(s, app, version) if version is not None else store.latest(s, app)
    spec = AppSpec.from_dict(v.spec)
    data = gather(s, app, spec, ("examples", "tests", "feedback"))
    feedback = list(s.scalars(select(Feedback).where(Feedback.app_id == app.id).order_by(Feedback.id.desc())))
    return page(request, "training.html", app=app, v=v, spec=spec, data=data, counts=data.counts(),
                feedback=feedback, held_pct=round(HELD_OUT * 100),
                template=tune_template(spec) if spec.mode == "completion" else "")


@router.get("/apps/{slug}/training/export")
def export_training(request: Request, slug: str, split: str = "train", version: int | None = None,
                    sources: str = "examples,tests,feedback", user: str = Depends(login),
                    s: Session = Depends(db)) -> Response:
    if split not in ("train", "held-out"):
        raise KollmError(msg("training.split"))
    app = store.get_app(s, slug)
    v = store.get_version(s, app, version) if version is not None else store.latest(s, app)
    spec = AppSpec.from_dict(v.spec)
    data = gather(s, app, spec, _sources([x for x in sources.split(",") if x]))
    return Response(jsonl(export_rows(data.of(split), spec)), media_type="application/x-ndjson; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{app.slug}-{split}.jsonl"'})


@router.get("/apps/{slug}/tune", response_class=HTMLResponse)
def tune_page(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    app = store.get_app(s, slug)
    v = store.latest(s, app)
    cfg = request.app.state.studio.cfg
    return page(request, "tune.html", app=app, versions=store.versions(s, app), latest=v.number,
                sets=store.test_sets(s, app), defaults=TUNE_DEFAULTS, sources=SOURCES,
                one_variable=len(AppSpec.from_dict(v.spec).variables()) == 1, tune_model=cfg.tune_model,
                held_pct=round(HELD_OUT * 100))


def _number(form: object, name: str, lo: float, hi: float) -> float:
    raw = str(form.get(name, "") or "").strip()
    bad = KollmError(msg("tune.number", name=name, lo=f"{lo:g}", hi=f"{hi:g}", value=raw))
    try:
        x = float(raw) if raw else float(TUNE_DEFAULTS[name])
    except ValueError:
        raise bad from None
    if not (lo <= x <= hi) or math.isnan(x):
        raise bad
    return x


@router.post("/apps/{slug}/tune")
async def tune(request: Request, slug: str, user: str = Depends(login), s: Session = Depends(db)) -> Response:
    form = await posted(request)
    app = store.get_app(s, slug)
    cfg = request.app.state.studio.cfg
    base = str(form.get("base_model", "") or cfg.tune_model).strip()
    if not base:
        raise KollmError(msg("tune.no_model"))
    if not (Path(base).expanduser() / "config.json").is_file():
        raise KollmError(msg("tune.not_model", path=base))
    v = store.get_version(s, app, _int(form.get("version", ""), "version"))
    if AppSpec.from_dict(v.spec).model:
        raise KollmError(msg("tune.tuned_base", n=v.number))
    method = str(form.get("method", "lora"))
    if method != "lora":  # the model server loads adapters, not whole models
        raise KollmError(msg("tune.method"))
    sources = _sources([str(x) for x in form.getlist("sources")])
    if not sources:
        raise KollmError(msg("tune.sources"))
    ts = form.get("test_set")
    test_set = store.get_test_set(s, app, _int(ts, "test set")).id if ts else None
    params = {"version": v.number, "method": method, "steps": int(_number(form, "steps", 1, 5000)),
              "lr": _number(form, "lr", 1e-6, 1e-1), "rank": int(_number(form, "rank", 1, 256)),
              "sources": list(sources), "test_set": test_set, "base_model": base}
    key = "tune:" + ":".join(f"{k}={params[k]}" for k in ("version", "method", "steps", "lr", "rank", "sources"))
    job, _ = jobs.submit(s, app, "tune", key, params, total=params["steps"])
    _worker(request).wake()
    return _see(f"/jobs/{job.id}")

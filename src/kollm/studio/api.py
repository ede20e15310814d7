"""The published API of each app: `POST /v1/apps/{app}/run` and `GET /v1/apps/{app}`, guarded by the app's own
keys (`Authorization: Bearer kst-...`). Errors are OpenAI-shaped JSON objects; a model server that cannot be
reached or refuses is a 502."""

from __future__ import annotations

import math
import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from kollm.apikeys import hash_key
from kollm.errors import KollmError
from kollm.special_tokens import PII_LABELS
from kollm.sse import sse_event
from kollm.studio import store
from kollm.studio.apps import SLUG, AppSpec
from kollm.studio.db import App
from kollm.studio.extract import fill_files
from kollm.studio.messages import msg
from kollm.studio.runner import Outcome, render, run_once, run_stream
from kollm.studio.security import app_key
from kollm.studio.state import Forbidden, State
from kollm.studio.store import NotFound

router = APIRouter(prefix="/v1/apps")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    label: Literal["production", "staging", "latest"] | None = None  # None: production
    version: int | None = Field(None, ge=1)
    stream: bool = False
    # accepted only as the version's own model (a check, for callers that always send one): a key for one app
    # must not buy calls to every model the server has
    model: str | None = Field(None, max_length=200)


def _guard(request: Request, s: Session, slug: str) -> App:
    """The app, if the request carries one of its active keys. Unknown apps and wrong keys look the same (401),
    so the API does not tell a caller without a key which apps exist."""
    app = None
    if SLUG.match(slug):
        try:
            app = store.get_app(s, slug)
        except NotFound:
            app = None
    if app is None or app.archived is not None or not store.key_ok(s, app, app_key(request)):
        raise Forbidden(msg("api.key"), 401)
    return app


def _usage(out: Outcome) -> dict:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens, "input_characters": out.input_chars,
            "output_characters": out.output_chars}


def for_people(text: str) -> str:
    """What an end user reads: PII placeholders a model wrote (`<|phone|>`) as their labels ([전화번호]), the
    same words `kollm serve --mask-pii` uses."""
    for placeholder, label in PII_LABELS.items():
        text = text.replace(placeholder, label)
    return text


class Presenter:
    """A stream's text for people, delta by delta: the leading whitespace a completion model starts with
    (" 답") dropped, and placeholders labelled; a `<|` not yet closed is held back until it is (a placeholder
    split over two deltas is still one label)."""

    def __init__(self) -> None:
        self.started, self.held = False, ""

    def feed(self, text: str) -> str:
        text = self.held + text
        self.held = ""
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        cut = text.rfind("<|")
        if cut >= 0 and "|>" not in text[cut:] and len(text) - cut <= 16:
            text, self.held = text[:cut], text[cut:]
        return for_people(text)

    def flush(self) -> str:
        held, self.held = self.held, ""
        return for_people(held)


def _present(out: Outcome) -> Outcome:
    out.output = for_people(out.output.lstrip())
    out.output_chars = len(out.output)
    return out


def _limited(request: Request) -> Response | None:
    """429 (OpenAI's shape, with Retry-After) when this key has used its calls for the minute."""
    limit = request.app.state.key_limit
    if limit is None:
        return None
    wait = limit.take(hash_key(app_key(request) or ""))
    if wait <= 0:
        return None
    seconds = max(1, math.ceil(wait))
    return JSONResponse({"error": {"message": msg("api.rate", n=limit.limit, seconds=seconds),
                                   "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}},
                        429, headers={"Retry-After": str(seconds)})


def _resolve(st: State, request: Request, slug: str, req: RunRequest) -> tuple[AppSpec, int, int]:
    with st.db() as s:
        app = _guard(request, s, slug)
        v = store.resolve(s, app, req.label, req.version)
        return AppSpec.from_dict(v.spec), v.number, app.id


@router.post("/{slug}/run", response_model=None)
async def run(request: Request, slug: str, req: RunRequest) -> Response:
    st: State = request.app.state.studio
    spec, number, app_id = await run_in_threadpool(_resolve, st, request, slug, req)
    limited = _limited(request)
    if limited is not None:
        return limited
    model = spec.model or st.cfg.model  # the version's model: what this app is
    if req.model and req.model != model:
        raise KollmError(msg("api.model", model=model or ""))
    # a file variable's data URL becomes its OCR'd or transcribed text first (extract.py); text passes through
    inputs, extracted = await fill_files(st.client, st.cfg, spec, {k: str(x) for k, x in req.inputs.items()})
    rid = f"apprun-{uuid.uuid4().hex}"
    head = {"id": rid, "app": slug, "version": number}
    trace = {"inputs": inputs, "prompt": render(spec, inputs), "model": model} if st.cfg.log_content else None

    def log(out: Outcome) -> None:
        with st.db() as s:
            store.log_usage(s, s.get(App, app_id), number, "api", out, trace)

    if req.stream:
        events = run_stream(st.client, spec, inputs)
        first = await anext(events)  # the prompt renders here: a missing input is a 400, not a broken stream
        shown = Presenter()

        async def chained() -> object:
            yield first
            async for ev in events:
                yield ev

        async def body() -> object:
            async for ev in chained():
                if ev["type"] == "delta":
                    text = shown.feed(ev["text"])
                    if not text:
                        continue
                    ev = {**ev, "text": text}
                elif ev["type"] in ("done", "error"):
                    rest = shown.flush()
                    if rest:
                        yield sse_event({**head, "type": "delta", "text": rest})
                    out = _present(Outcome(**{k: x for k, x in ev.items() if k in Outcome.__dataclass_fields__}))
                    await run_in_threadpool(log, out)
                    ev = {**ev, "output": out.output, "output_chars": out.output_chars}
                yield sse_event({**head, **ev})
            yield sse_event("[DONE]")

        return StreamingResponse(body(), media_type="text/event-stream")
    out = _present(await run_once(st.client, spec, inputs))
    await run_in_threadpool(log, out)
    if out.error:
        return JSONResponse({"error": {"message": out.error, "type": "model_error", "param": None, "code": None},
                             **head}, 502)
    body = {**head, "output": out.output, "latency_ms": round(out.latency_ms, 1), "usage": _usage(out)}
    if extracted:  # what each file said, so a caller can check what the app read
        body["extracted"] = {k: x.to_dict() for k, x in extracted.items()}
    if out.json_valid is not None:
        body["json_valid"], body["json_error"] = out.json_valid, out.json_error or None
    return JSONResponse(body)


@router.get("/{slug}")
def describe(request: Request, slug: str) -> dict:
    """What a caller needs: the variables to send, the versions and where the labels point."""
    st: State = request.app.state.studio
    with st.db() as s:
        app = _guard(request, s, slug)
        vs = store.versions(s, app)
        spec = AppSpec.from_dict(vs[0].spec)
        return {"app": app.slug, "name": app.name, "variables": spec.variables(), "files": spec.files,
                "labels": store.labels(s, app), "versions": [{"version": v.number, "created": v.created,
                                                               "note": v.note} for v in vs]}

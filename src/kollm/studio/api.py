"""The published API of each app: `POST /v1/apps/{app}/run` and `GET /v1/apps/{app}`, guarded by the app's own
keys (`Authorization: Bearer kst-...`). Errors are OpenAI-shaped JSON objects; a model server that cannot be
reached or refuses is a 502."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from kollm.sse import sse_event
from kollm.studio import store
from kollm.studio.apps import SLUG, AppSpec
from kollm.studio.db import App
from kollm.studio.runner import Outcome, run_once, run_stream
from kollm.studio.security import app_key
from kollm.studio.state import Forbidden, State
from kollm.studio.store import NotFound

router = APIRouter(prefix="/v1/apps")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    label: Literal["production", "staging", "latest"] | None = None
    version: int | None = Field(None, ge=1)
    stream: bool = False
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
    if app is None or not store.key_ok(s, app, app_key(request)):
        raise Forbidden("a valid key for this app is required: send Authorization: Bearer <app key>", 401)
    return app


def _usage(out: Outcome) -> dict:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens, "input_characters": out.input_chars,
            "output_characters": out.output_chars}


@router.post("/{slug}/run", response_model=None)
async def run(request: Request, slug: str, req: RunRequest) -> Response:
    st: State = request.app.state.studio
    with st.db() as s:
        app = _guard(request, s, slug)
        v = store.resolve(s, app, req.label, req.version)
        spec, number, app_id = AppSpec.from_dict(v.spec), v.number, app.id
    inputs = {k: str(x) for k, x in req.inputs.items()}
    rid = f"apprun-{uuid.uuid4().hex}"
    head = {"id": rid, "app": slug, "version": number}

    def log(out: Outcome) -> None:
        with st.db() as s:
            store.log_usage(s, s.get(App, app_id), number, "api", out)

    if req.stream:
        events = run_stream(st.client, spec, inputs, req.model or "")
        first = await anext(events)  # the prompt renders here: a missing input is a 400, not a broken stream

        async def chained() -> object:
            yield first
            async for ev in events:
                yield ev

        async def body() -> object:
            async for ev in chained():
                if ev["type"] in ("done", "error"):
                    log(Outcome(**{k: x for k, x in ev.items() if k in Outcome.__dataclass_fields__}))
                yield sse_event({**head, **ev})
            yield sse_event("[DONE]")

        return StreamingResponse(body(), media_type="text/event-stream")
    out = await run_once(st.client, spec, inputs, req.model or "")
    log(out)
    if out.error:
        return JSONResponse({"error": {"message": out.error, "type": "model_error", "param": None, "code": None},
                             **head}, 502)
    body = {**head, "output": out.output, "latency_ms": round(out.latency_ms, 1), "usage": _usage(out)}
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
        return {"app": app.slug, "name": app.name, "variables": AppSpec.from_dict(vs[0].spec).variables(),
                "labels": store.labels(s, app), "versions": [{"version": v.number, "created": v.created,
                                                               "note": v.note} for v in vs]}

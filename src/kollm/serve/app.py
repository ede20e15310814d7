"""OpenAI-compatible HTTP API (the completions API of GPT-3): the official `openai` client works
against it with `base_url="http://127.0.0.1:8000/v1"`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kollm.serve.engine import Engine


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[str] = ""
    max_tokens: int = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    echo: bool = False
    stream: bool = False
    user: str | None = None


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}})


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="kollm", description="OpenAI-compatible completions for Korean LMs")
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return _error(400, f"{'.'.join(str(p) for p in first['loc'][1:])}: {first['msg']}",
                      str(first["loc"][-1]))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": engine.name}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list",
                "data": [{"id": engine.name, "object": "model", "created": created, "owned_by": "kollm"}]}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> JSONResponse:
        if req.stream:
            return _error(400, "stream=true is not supported yet; send stream=false", "stream")
        if req.model and req.model != engine.name:
            return _error(404, f"model {req.model!r} is not served here; GET /v1/models lists {engine.name!r}",
                          "model")
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for prompt in prompts:
            for i in range(req.n):
                seed = None if req.seed is None else req.seed + i
                c = await run_in_threadpool(engine.complete, prompt, req.max_tokens, req.temperature,
                                            req.top_p, stop, seed)
                choices.append({"text": (prompt if req.echo else "") + c.text, "index": len(choices),
                                "logprobs": None, "finish_reason": c.finish_reason})
                completion_tokens += c.completion_tokens
            prompt_tokens += c.prompt_tokens
        return JSONResponse({
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": engine.name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    return app


def run_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    engine = Engine.load(model_dir)
    print(f"kollm: serving {engine.name} at http://{host}:{port}/v1  (Ctrl-C to stop)")
    print(f"  try: curl http://{host}:{port}/v1/completions -H 'Content-Type: application/json' "
          f"-d '{{\"prompt\": \"대한민국의 수도는\", \"max_tokens\": 32}}'")
    uvicorn.run(create_app(engine), host=host, port=port, log_level="info")

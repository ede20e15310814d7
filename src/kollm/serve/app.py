"""OpenAI-compatible HTTP API (GPT-3's completions, and chat completions): the official `openai` client works
against it with `base_url="http://127.0.0.1:8000/v1"`, and so does lm-evaluation-harness's `local-completions`
(token-id prompts, `echo` + `logprobs` for log-likelihood).

Requests go to an engine through its written contract (serve/client.py: the batching engine of serve/engine.py,
or another), and their tokens come back to this event loop once per step; a client that goes away (a closed
stream, or a dropped connection while a non-streaming request runs) cancels its request, which frees its slot at
the next step. Nothing slow runs on the event loop: tokenising and chat templates run in one worker thread, and a
body is counted while it arrives, so an oversized one (chunked bodies have no Content-Length to trust) is refused
before anything reads it whole.

LoRA adapters are served as vLLM serves them: a request's `model` names an adapter (or the base), /v1/models lists
adapters with their `parent`, and with `allow_runtime_lora` adapters are loaded and unloaded at
/v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING; without it those
routes do not exist: 404).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kollm.apikeys import bearer
from kollm.errors import KollmError
from kollm.runtime import release_memory
from kollm.serve import audio, images
from kollm.serve.audio import Transcriber
from kollm.serve.client import EngineClient
from kollm.serve.config import ServeConfig
from kollm.serve.draft import check_speculative
from kollm.serve.engine import Engine
from kollm.serve.keys import Guard, KeyStore, RateLimit
from kollm.serve.lora import parse_modules, read_config
from kollm.serve.metrics import Metrics
from kollm.serve.protocol import (
    NOT_TEXT,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    LoadLoraRequest,
    Sampling,
    TokenizeRequest,
    UnloadLoraRequest,
)
from kollm.serve.sampling import SamplingParams
from kollm.serve.sequence import Finish, Token
from kollm.sse import sse_event


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def _error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=_error_body(status, message, param, code))


def _busy(waiting: int) -> BadRequest:
    return BadRequest(f"the server is busy ({waiting} requests waiting); retry shortly", None, 503,
                      "server_overloaded")


def _params(engine: EngineClient, req: Sampling, max_tokens: int, logprobs: int | None) -> SamplingParams:
    bias = {}
    for k, v in (req.logit_bias or {}).items():
        if not (k.isascii() and k.lstrip("-").isdigit() and len(k) < 12) or not 0 <= int(k) < engine.vocab:
            raise BadRequest(f"logit_bias key {k[:20]!r} is not a token id of this model (0..{engine.vocab - 1})",
                             "logit_bias")
        if not -100 <= v <= 100:
            raise BadRequest(f"logit_bias value {v} for token {k} must be between -100 and 100", "logit_bias")
        bias[int(k)] = v
    if any(not 0 <= t < engine.vocab for t in req.stop_token_ids or ()):
        raise BadRequest(f"stop_token_ids must be token ids of this model (0..{engine.vocab - 1})", "stop_token_ids")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return SamplingParams(
        max_tokens=max_tokens, temperature=engine.default_temperature if req.temperature is None else req.temperature,
        top_p=engine.default_top_p if req.top_p is None else req.top_p, top_k=max(req.top_k, 0), min_p=req.min_p,
        repetition_penalty=req.repetition_penalty, presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, logit_bias=bias, stop=stop,
        stop_token_ids=list(req.stop_token_ids or []), ignore_eos=req.ignore_eos, seed=req.seed, logprobs=logprobs,
        speculative=req.speculative,
    )


def _too_long(engine: EngineClient, n: int, max_tokens: int, at_least: bool = False) -> BadRequest:
    has = f"at least {n:,}" if at_least else f"{n}"
    return BadRequest(f"this model's maximum context length is {engine.max_len} tokens; the prompt has {has} tokens "
                      f"and max_tokens asks for {max_tokens} more: shorten the prompt or lower max_tokens",
                      "prompt" if n >= engine.max_len else "max_tokens", code="context_length_exceeded")


def _check_context(engine: EngineClient, ids: list[int], max_tokens: int) -> None:
    if not ids:
        raise BadRequest("the prompt is empty; send at least one token", "prompt")
    if any(not 0 <= t < engine.vocab for t in ids):
        raise BadRequest(f"prompt token ids must be between 0 and {engine.vocab - 1}", "prompt")
    if len(ids) + max_tokens > engine.max_len:
        raise _too_long(engine, len(ids), max_tokens)


class Runner:
    """The app's side of the engine: runs requests through `agenerate` (the engine hands each step's tokens to
    this event loop at once), runs tokenising and other blocking engine calls in one worker thread, counts what
    /metrics reports, and refuses work (503) when too many requests already wait."""

    def __init__(self, engine: EngineClient | None, max_waiting: int) -> None:
        self.engine, self.max_waiting = engine, max_waiting
        self.metrics = Metrics(lambda: self.engine)
        self.waiting = 0
        self._lock = threading.Lock()
        # one thread: fast tokenizers are not safe to call from several threads at once, and one is plenty
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kollm-tokenize")

    async def off_loop(self, fn: Callable, *args: object, big: bool = False) -> object:
        """fn(*args) in the tokenizer thread: a long prompt never stalls the event loop (and /health with it);
        after a `big` input, the memory its tokens took goes back to the OS."""
        def call() -> object:
            try:
                return fn(*args)
            finally:
                if big:
                    release_memory()

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def check_fits(self, text_bytes: int, max_tokens: int) -> None:
        """Refuse, before tokenising it, text that cannot fit the context."""
        engine = self.engine
        at_least = engine.min_tokens(text_bytes)
        if at_least + max_tokens > engine.max_len:
            raise _too_long(engine, at_least, max_tokens, at_least=True)

    def check_capacity(self) -> None:
        if self.waiting >= self.max_waiting:  # before a stream starts: a 503 cannot follow a 200
            raise _busy(self.waiting)

    def admit(self) -> None:
        with self._lock:
            if self.waiting >= self.max_waiting:
                raise _busy(self.waiting)
            self.waiting += 1
        self.metrics.waiting.inc()

    def _started(self) -> None:
        with self._lock:
            self.waiting -= 1
        self.metrics.waiting.dec()
        self.metrics.running.inc()

    async def steps(self, ids: list[int], p: SamplingParams, lora: str | None = None,
                    ) -> AsyncIterator[Token | Finish]:
        """The steps of one generation (under LoRA adapter `lora`); closing this iterator (a client gone) frees its
        slot at the next step."""
        self.admit()
        m, t0, started, last = self.metrics, time.perf_counter(), False, None
        m.prompt_tokens.inc(len(ids))
        if lora is not None:
            m.lora_requests.labels(lora).inc()
        try:
            async for step in self.engine.agenerate(ids, p, lora):
                now = time.perf_counter()
                if not started:
                    started = True
                    self._started()
                    m.ttft.observe(now - t0)
                elif last is not None:
                    m.itl.observe(now - last)
                last = now
                if isinstance(step, Token):
                    m.generation_tokens.inc()
                else:
                    m.requests.labels(step.reason).inc()
                yield step
        finally:
            if not started:  # ended before its first step: it still left the queue
                self._started()
            m.running.dec()
            m.e2e.observe(time.perf_counter() - t0)


Job = tuple[list[int], SamplingParams, str | None]  # a prompt's ids, one choice's sampling, its LoRA adapter
_BIG = 1 << 16  # characters of input after which the tokenizer's memory is handed back


async def _merged(runner: Runner, jobs: list[Job]) -> AsyncIterator[tuple[int, Token | Finish]]:
    """The steps of several generations at once (n choices, several prompts), tagged with their job's index:
    they run side by side in the engine's batch (identical prompts share one prefill), not one after another."""
    q: asyncio.Queue = asyncio.Queue()

    async def run(i: int, ids: list[int], p: SamplingParams, lora: str | None) -> None:
        try:
            async for step in runner.steps(ids, p, lora):
                await q.put((i, step))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            await q.put((i, e))
        finally:
            await q.put((i, None))

    tasks = [asyncio.create_task(run(i, *job)) for i, job in enumerate(jobs)]
    try:
        left = len(tasks)
        while left:
            i, step = await q.get()
            if step is None:
                left -= 1
            elif isinstance(step, BaseException):
                raise step
            else:
                yield i, step
    finally:
        for t in tasks:
            t.cancel()


async def _collect(request: Request, runner: Runner, jobs: list[Job], choices: list[_Choice]) -> bool:
    """Run the jobs into `choices`; False when the client went away first, which cancels them (freeing their
    slots) as a closed stream does. The disconnect is the server's `http.disconnect` message, awaited beside the
    work (polling `is_disconnected` behind a middleware never sees it)."""

    async def run() -> None:
        async for k, step in _merged(runner, jobs):
            choices[k].add(step)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.create_task(run()), asyncio.create_task(gone())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            return False
        await work  # its error, if it failed
        return True
    finally:
        work.cancel()
        watch.cancel()


class _Choice:
    """One choice being built: its tokens (with their text and logprobs) and finish reason."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []
        self.finish: str | None = None

    def add(self, step: Token | Finish) -> None:
        if isinstance(step, Finish):
            self.finish = step.reason
        else:
            self.tokens.append(step)

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)


def _alternatives(engine: EngineClient, t: Token) -> list[tuple[str, bytes, float]]:
    """A token's top alternatives as (token, bytes, logprob); inside a masked span every one shows the label."""
    if t.top is None:
        return []
    if t.label is not None:
        return [(t.label, t.label.encode("utf-8"), v) for v in t.top.values()]
    return [(*engine.token_piece(k), v) for k, v in t.top.items()]


def _legacy_logprobs(engine: EngineClient, toks: list[Token], offset0: int = 0) -> dict:
    """The completions API's logprobs object: tokens, token_logprobs, top_logprobs, text_offset (where each
    token's text starts in the returned text: special tokens of an echoed prompt are zero-width)."""
    offsets, at = [], offset0
    for t in toks:
        offsets.append(at)
        at += len(t.text)
    tops = []
    for t in toks:
        alts: dict[str, float] = {}
        for s, _, v in _alternatives(engine, t):
            alts[s] = max(v, alts.get(s, v))
        tops.append(None if t.top is None else alts)
    return {"tokens": [t.token for t in toks], "token_logprobs": [t.logprob for t in toks], "text_offset": offsets,
            "top_logprobs": tops}


def _chat_logprobs(engine: EngineClient, toks: list[Token]) -> dict:
    """Chat's logprobs: each token with its real bytes (joined, they are the content's UTF-8)."""
    return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes),
                         "top_logprobs": [{"token": s, "logprob": v, "bytes": list(b)}
                                          for s, b, v in _alternatives(engine, t)]} for t in toks]}


def _sse_error(e: BaseException) -> str:
    """A stream that fails after its 200 ends with OpenAI's error object as its last event (then [DONE])."""
    return sse_event(_error_body(500, f"generation failed ({type(e).__name__}); the stream was not completed"))


def _usage(prompt_tokens: int, completion_tokens: int, prompt_chars: int, completion_chars: int) -> dict:
    # characters too: a Korean user sees characters per token, the measure a tokenizer is judged by
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_characters": prompt_chars, "completion_characters": completion_chars}


class _Gate:
    """The front door, before any route: the body's size (counted as it arrives; a chunked body has no
    Content-Length to trust), the API key, the model's loading state and the rate limit. Plain ASGI: a
    BaseHTTPMiddleware would hide the client's disconnect from the routes."""

    def __init__(self, app: ASGIApp, runner: Runner, loading: dict, guard: Guard | None, limiter: RateLimit,
                 max_body_bytes: int, path_limits: dict[str, int] | None = None) -> None:
        self.app, self.runner, self.loading, self.guard = app, runner, loading, guard
        self.limiter, self.max_body = limiter, max_body_bytes
        self.path_limits = path_limits or {}  # routes with their own body limit (audio uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_body)
        refused = self._refuse(scope, limit)
        if refused is not None:
            await refused(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:  # the route's body read raises: answered 413 by the handler below
                    raise StarletteHTTPException(413, self._too_big(limit))
            return msg

        await self.app(scope, counted, send)

    def _too_big(self, limit: int) -> str:
        return f"the request body is over the {limit:,}-byte limit; send a smaller request"

    def _refuse(self, scope: Scope, limit: int) -> Response | None:
        headers, path = Headers(scope=scope), scope["path"]
        size = headers.get("content-length", "")
        if size.isdigit() and int(size) > limit:
            return _error(413, self._too_big(limit), code="request_too_large")
        who = scope["client"][0] if scope.get("client") else "?"
        if self.guard is not None and path != "/health" and self.guard.enabled:
            who = self.guard.check(bearer(headers.get("authorization")))
            if who is None:
                return _error(401, "missing or invalid API key; send Authorization: Bearer <key>",
                              code="invalid_api_key")
        if self.runner.engine is None and path not in ("/metrics", "/openapi.json", "/docs"):
            why = self.loading["error"]
            resp = _error(503, f"the model failed to load ({why}); fix it and restart the server" if why else
                          "the model is still loading; retry shortly")
            resp.headers["Retry-After"] = "5"
            return resp
        wait = self.limiter.take(who) if path.startswith("/v1/") else 0.0
        if wait:
            resp = _error(429, f"rate limit reached; retry in {wait:.1f} s", code="rate_limit_exceeded")
            resp.headers["Retry-After"] = str(max(1, round(wait)))
            return resp
        return None


def _openapi(app: FastAPI) -> Callable[[], dict]:
    """FastAPI documents a 422 for every body it validates; this server answers 400 with OpenAI's error object."""

    def schema() -> dict:
        if app.openapi_schema is None:
            s = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            parts = s.setdefault("components", {}).setdefault("schemas", {})
            parts.pop("HTTPValidationError", None)
            parts.pop("ValidationError", None)
            text = {"type": ["string", "null"]}
            parts["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["message", "type"],
                "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": text,
                               "code": text}}}}
            error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for ops in s.get("paths", {}).values():
                for op in ops.values():
                    responses = op.setdefault("responses", {})
                    if responses.pop("422", None) is not None or "requestBody" in op:
                        responses["400"] = {"description": "Bad request: OpenAI's error object", **error}
            app.openapi_schema = s
        return app.openapi_schema

    return schema


def create_app(engine: EngineClient | Callable[[], EngineClient], guard: Guard | None = None, rate_limit: float = 0.0,
               max_waiting: int = 64, max_body_bytes: int = 1 << 20, names: Sequence[str] = (),
               aliases: Sequence[str] = (), root: str | None = None, allow_runtime_lora: bool = False,
               transcriber: Transcriber | None = None, max_audio_bytes: int = 25 << 20) -> FastAPI:
    """`engine`: an Engine, or a function that loads one (the port opens at once: /health answers 503 until the
    model is loaded, then 200); `guard`: API keys (off when None or empty); `rate_limit`: requests per second
    per key (0: off); `max_waiting`: requests queued for the engine before new ones get 503; `max_body_bytes`:
    request size; `names`: the model names served (the first is reported; default: the model folder's name);
    `aliases`: names also accepted (vLLM clients send the model's path); `root`: the model's folder, as
    /v1/models shows it; `allow_runtime_lora`: the routes that load and unload LoRA adapters exist;
    `transcriber`: whisper for /v1/audio/transcriptions (serve/audio.py), with uploads up to `max_audio_bytes`."""
    created = int(time.time())
    runner = Runner(engine if isinstance(engine, EngineClient) else None, max_waiting)
    loading: dict = {"error": None}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if runner.engine is None:
            def load() -> None:
                try:
                    runner.engine = engine()
                except Exception as e:  # noqa: BLE001 - shown by /health and every route, one line
                    loading["error"] = f"{type(e).__name__}: {e}"
            threading.Thread(target=load, daemon=True).start()
        yield

    app = FastAPI(title="kollm", description="OpenAI-compatible completions and chat for Korean LMs",
                  lifespan=lifespan)
    app.add_middleware(_Gate, runner=runner, loading=loading, guard=guard, limiter=RateLimit(rate_limit),
                       max_body_bytes=max_body_bytes,  # an upload's form fields and multipart framing on top
                       path_limits={audio.PATH: max_audio_bytes + (64 << 10),
                                    "/v1/chat/completions": max_body_bytes + images.BODY_ROOM})
    app.openapi = _openapi(app)

    def served() -> list[str]:
        return list(names) or [runner.engine.name]

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(runner.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # ours name the fix (pydantic catches some surrogates itself, as string_unicode)
        first = next((e for e in errors if e["type"] in ("value_error", "string_unicode")), errors[0])
        where = ".".join(str(p) for p in first["loc"][1:] if isinstance(p, int) or str(p).isidentifier()) or "body"
        if first["type"] == "extra_forbidden":
            return _error(400, f"unsupported parameter {where!r}: kollm does not implement it; remove it", where)
        if first["type"] == "json_invalid" or first["loc"] == ("body",):
            return _error(400, f"the request body is not valid JSON ({first['msg']}); send a JSON object")
        msg = NOT_TEXT if first["type"] == "string_unicode" else first["msg"].removeprefix("Value error, ")
        return _error(400, f"{where}: {msg}", where.rsplit(".", 1)[-1] if where != "body" else None)

    @app.exception_handler(BadRequest)
    async def bad(_: Request, exc: BadRequest) -> JSONResponse:
        resp = _error(exc.status, exc.message, exc.param, exc.code)
        if exc.status == 503:  # vLLM's choice: a full queue says when to come back
            resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), code="request_too_large" if exc.status_code == 413 else None)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}); the request was not completed")

    def check_model(name: str | None) -> tuple[EngineClient, str | None]:
        """The engine and the LoRA adapter a request's `model` names (None: the base model)."""
        engine = runner.engine
        if not name or name in served() or name in aliases:
            return engine, None
        if name in engine.list_loras():
            return engine, name
        raise BadRequest(f"model {name!r} is not served here; GET /v1/models lists "
                         f"{served() + list(engine.list_loras())}", "model", 404, "model_not_found")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": served()[0]}

    @app.get("/v1/models")
    async def models() -> dict:
        engine = runner.engine

        def card(name: str, path: str, parent: str | None) -> dict:  # vLLM's ModelCard: adapters name a parent
            return {"id": name, "object": "model", "created": created, "owned_by": "kollm", "root": path,
                    "parent": parent, "max_model_len": engine.max_len}

        return {"object": "list", "data": [card(name, root or name, None) for name in served()] + [
            card(name, path, served()[0]) for name, path in engine.list_loras().items()] + (
            [transcriber.card(created)] if transcriber is not None else [])}  # listed last: data[0] is the LM

    audio.register(app, transcriber, BadRequest, max_audio_bytes)

    if allow_runtime_lora:
        lora_lock = asyncio.Lock()  # one load or unload at a time: a name is checked and taken atomically

        @app.post("/v1/load_lora_adapter", response_model=None)
        async def load_lora_adapter(req: LoadLoraRequest) -> Response:
            engine, name = runner.engine, req.lora_name
            if name in served() or name in aliases:
                raise BadRequest(f"{name!r} is the base model's name; give the adapter another lora_name",
                                 "lora_name")
            async with lora_lock:
                if name in engine.list_loras():  # vLLM's words
                    raise BadRequest(f"The lora adapter '{name}' has already been loaded; unload it first or pick "
                                     "another lora_name", "lora_name")
                try:  # reading weights takes a while: a worker thread, not the tokenizer's
                    await asyncio.to_thread(engine.add_lora, name, req.lora_path)
                except (KollmError, ValueError, OSError) as e:
                    raise BadRequest(str(e), "lora_path") from None
            return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

        @app.post("/v1/unload_lora_adapter", response_model=None)
        async def unload_lora_adapter(req: UnloadLoraRequest) -> Response:
            engine, name = runner.engine, req.lora_name
            async with lora_lock:
                if not await asyncio.to_thread(engine.remove_lora, name):
                    raise BadRequest(f"The lora adapter '{name}' cannot be found; GET /v1/models lists the loaded "
                                     "ones", "lora_name", 404, "model_not_found")
            return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict:
        engine, _ = check_model(req.model)
        ids = await runner.off_loop(engine.encode, req.prompt, req.add_special_tokens, big=len(req.prompt) > _BIG)
        return {"tokens": ids, "count": len(ids), "max_model_len": engine.max_len}

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict:
        engine, _ = check_model(req.model)
        if any(not 0 <= t < engine.vocab for t in req.tokens):
            raise BadRequest(f"token ids must be between 0 and {engine.vocab - 1}", "tokens")
        return {"prompt": await runner.off_loop(engine.decode, req.tokens)}

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict:
        return runner.engine.tokenizer_info()

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> Response:
        engine, lora = check_model(req.model)
        model = lora or served()[0]  # the name answered: the adapter's, as vLLM answers
        if req.max_tokens == 0 and not req.echo:
            raise BadRequest("max_tokens = 0 is only allowed with echo = true (scoring the prompt)", "max_tokens")
        if req.stream and req.echo:
            raise BadRequest("echo is not supported with stream = true; send stream = false", "echo")
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt if isinstance(req.prompt[0], str) else []
        count = 1 if isinstance(req.prompt, str) or isinstance(req.prompt[0], int) else len(req.prompt)
        runner.check_capacity()
        if count * req.n > runner.max_waiting:
            raise BadRequest(f"{count} prompts x n = {req.n} is more than the {runner.max_waiting} requests "
                             "this server queues; send fewer at once", "n")
        for t in texts:
            runner.check_fits(len(t.encode("utf-8")), req.max_tokens)
        if texts:
            prompts = await runner.off_loop(lambda: [engine.encode(t) for t in texts], big=sum(map(len, texts)) > _BIG)
        else:  # token ids are used verbatim: no BOS added
            prompts = [list(req.prompt)] if isinstance(req.prompt[0], int) else [list(x) for x in req.prompt]
        for ids in prompts:
            _check_context(engine, ids, req.max_tokens)
        chars_in = sum(map(len, texts)) if texts else sum(
            len(s) for s in await runner.off_loop(lambda: [engine.decode(ids, skip_special=True) for ids in prompts]))
        p = _params(engine, req, req.max_tokens, req.logprobs)
        runner.check_capacity()
        rid = f"cmpl-{uuid.uuid4().hex}"
        jobs = [(ids, p.for_choice(i), lora) for ids in prompts for i in range(req.n)]  # choice k: prompt k//n, seed i
        if req.stream:
            return StreamingResponse(_stream_completion(runner, rid, prompts, jobs, req, chars_in, model),
                                     media_type="text/event-stream")
        choices = [_Choice() for _ in jobs]
        if req.max_tokens and not await _collect(request, runner, jobs, choices):
            return Response(status_code=499)  # the client is gone: nobody reads this
        out, n_out, chars_out, scored = [], 0, 0, {}
        for k, c in enumerate(choices):
            ids, toks, finish = jobs[k][0], c.tokens, c.finish
            n_out += len(toks)
            if req.echo:
                toks = await runner.off_loop(engine.echo, ids, jobs[k][1], c.tokens, finish == "length")
                if req.logprobs is not None:  # the prompt's scores: once per prompt, not per choice
                    if k // req.n not in scored:  # a forward under the engine's lock: not the tokenizer thread
                        scored[k // req.n] = await asyncio.to_thread(engine.prompt_logprobs, ids, req.logprobs,
                                                                     lora)
                    for t, sc in zip(toks, scored[k // req.n], strict=False):  # the first len(ids) are the prompt's
                        t.logprob, t.top = (None, None) if sc is None else sc
                finish = finish or "length"  # max_tokens 0: scored, nothing generated
            text = "".join(t.text for t in toks)
            chars_out += len(c.text)
            logprobs = None if req.logprobs is None else _legacy_logprobs(engine, toks)
            out.append({"text": text, "index": k, "logprobs": logprobs, "finish_reason": finish})
        return JSONResponse({"id": rid, "object": "text_completion", "created": int(time.time()),
                             "model": model, "choices": out,
                             "usage": _usage(sum(map(len, prompts)), n_out, chars_in, chars_out)})

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> Response:
        engine, lora = check_model(req.model)
        model = lora or served()[0]
        grammar, rf = None, req.response_format
        if rf is not None and rf.type != "text":
            try:  # the first one prepares the tokenizer for the grammar engine: seconds, off the event loop
                grammar = await runner.off_loop(engine.grammar, rf.type, (rf.json_schema or {}).get("schema"))
            except ValueError as e:
                raise BadRequest(str(e), "response_format") from None
        try:  # image parts: their OCR text goes where they were (serve/images.py), in threads off the event loop
            read = await images.read_images(req.messages)
        except images.ImageError as bad_image:  # (not `e`: tests/serve/test_serve_contract.py reads `e.` as the engine)
            raise BadRequest(bad_image.message, "messages", bad_image.status, bad_image.code) from None
        messages = [m.for_template() for m in read]
        chars_in = sum(len(m["content"]) for m in messages)
        runner.check_capacity()
        runner.check_fits(sum(len(m["content"].encode("utf-8")) for m in messages), 0)
        try:
            ids = await runner.off_loop(engine.chat_prompt, messages, big=chars_in > _BIG)
        except ValueError as e:
            raise BadRequest(str(e), "messages") from None
        max_tokens = req.max_completion_tokens or req.max_tokens or max(1, engine.max_len - len(ids))
        _check_context(engine, ids, max_tokens)
        top = req.top_logprobs if req.top_logprobs is not None else 0
        p = _params(engine, req, max_tokens, top if req.logprobs else None)
        p.grammar = grammar
        p.stop_token_ids += engine.turn_end_ids()  # kollm's ChatML turn ends with <|im_end|>, not EOS
        runner.check_capacity()
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        jobs = [(ids, p.for_choice(i), lora) for i in range(req.n)]
        if req.stream:
            return StreamingResponse(_stream_chat(runner, rid, ids, jobs, req, chars_in, model),
                                     media_type="text/event-stream")
        choices = [_Choice() for _ in jobs]
        if not await _collect(request, runner, jobs, choices):
            return Response(status_code=499)
        out = [{"index": i, "message": {"role": "assistant", "content": c.text},
                "logprobs": _chat_logprobs(engine, c.tokens) if req.logprobs else None,
                "finish_reason": c.finish} for i, c in enumerate(choices)]
        return JSONResponse({"id": rid, "object": "chat.completion", "created": int(time.time()),
                             "model": model, "choices": out,
                             "usage": _usage(len(ids), sum(len(c.tokens) for c in choices), chars_in,
                                             sum(len(c.text) for c in choices))})

    return app


async def _stream_completion(runner: Runner, rid: str, prompts: list[list[int]], jobs: list[Job],
                             req: CompletionRequest, chars_in: int, name: str) -> AsyncIterator[str]:
    engine = runner.engine
    n_out, chars_out = 0, [0] * len(jobs)

    def chunk(c: dict) -> str:
        return sse_event({"id": rid, "object": "text_completion", "created": int(time.time()), "model": name,
                          "choices": [c]})

    try:
        async for k, step in _merged(runner, jobs):
            if isinstance(step, Finish):
                yield chunk({"text": "", "index": k, "logprobs": None, "finish_reason": step.reason})
                continue
            n_out += 1
            lp = None if req.logprobs is None else _legacy_logprobs(engine, [step], chars_out[k])
            chars_out[k] += len(step.text)
            if step.text or lp:
                yield chunk({"text": step.text, "index": k, "logprobs": lp, "finish_reason": None})
    except Exception as e:  # noqa: BLE001 - the 200 is sent: say so in the stream
        yield _sse_error(e)
    if req.stream_options and req.stream_options.include_usage:
        yield sse_event({"id": rid, "object": "text_completion", "created": int(time.time()), "model": name,
                         "choices": [], "usage": _usage(sum(map(len, prompts)), n_out, chars_in, sum(chars_out))})
    yield sse_event("[DONE]")


async def _stream_chat(runner: Runner, rid: str, ids: list[int], jobs: list[Job], req: ChatRequest,
                       chars_in: int, name: str) -> AsyncIterator[str]:
    engine = runner.engine

    def chunk(choices: list, **extra: object) -> str:
        return sse_event({"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                          "model": name, "choices": choices, **extra})

    for i in range(len(jobs)):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}])
    n_out, chars_out = 0, 0
    try:
        async for i, step in _merged(runner, jobs):
            if isinstance(step, Finish):
                yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": step.reason}])
                continue
            n_out += 1
            chars_out += len(step.text)
            lp = _chat_logprobs(engine, [step]) if req.logprobs else None
            if step.text or lp:
                yield chunk([{"index": i, "delta": {"content": step.text} if step.text else {}, "logprobs": lp,
                              "finish_reason": None}])
    except Exception as e:  # noqa: BLE001 - the 200 is sent: say so in the stream
        yield _sse_error(e)
    if req.stream_options and req.stream_options.include_usage:
        yield chunk([], usage=_usage(len(ids), n_out, chars_in, chars_out))
    yield sse_event("[DONE]")


def run_server(cfg: ServeConfig) -> None:
    """Open the port at once (/health: 503 while the model loads), serve until SIGTERM or Ctrl-C, then drain:
    uvicorn stops taking connections and lets running requests and streams finish."""
    import uvicorn

    if cfg.chat_template and not Path(cfg.chat_template).is_file():
        raise KollmError(f"chat template {cfg.chat_template} does not exist; pass a Jinja file to --chat-template")
    if not (Path(cfg.model) / "config.json").is_file():
        raise KollmError(f"{cfg.model} is not a Hugging Face model folder (no config.json); pass --model DIR")
    names = list(cfg.served_model_name) or [Path(cfg.model).name]
    # vLLM's clients name a model by the path it was served from
    aliases = [] if cfg.served_model_name else [cfg.model, str(Path(cfg.model).resolve())]
    check_speculative(cfg.speculative, cfg.draft_model, cfg.model)  # a draft model that cannot work: now, not later
    loras = parse_modules(cfg.lora)
    for name, path in loras:  # what can be checked without the model, before the port opens
        if name in names or name in aliases:
            raise KollmError(f"--lora {name}={path}: {name!r} is the base model's name; give the adapter another name")
        read_config(path)

    # whisper (serve/audio.py): the folder checked before the port opens, the model loaded with the LM below
    transcriber = Transcriber(cfg.whisper, cfg.whisper_concurrency, cfg.whisper_compute_type,
                              cfg.max_waiting) if cfg.whisper else None

    def load() -> Engine:
        if transcriber is not None:
            print(f"kollm: whisper {transcriber.name} loaded ({transcriber.model.threads} threads x "
                  f"{transcriber.concurrency}); POST /v1/audio/transcriptions", flush=True)
        engine = Engine.load(cfg.model, cfg.chat_template or None, cfg.engine(), cfg.mask_pii)
        for name, path in loras:
            try:
                engine.add_lora(name, path)
            except KollmError as e:  # the port is open: /health shows it too, but say it where the user looks
                print(f"kollm: error: {e}", file=sys.stderr, flush=True)
                raise
        adapters = "".join(f"; LoRA adapter {n} from {p}" for n, p in loras)
        print(f"kollm: {names[0]} loaded ({engine.summary()}{adapters}); serving at http://{host}:{port}/v1",
              flush=True)
        return engine

    guard = Guard(cfg.api_key or None, KeyStore(Path(cfg.keys_db).expanduser()) if cfg.keys_db else None)
    app = create_app(load, guard, cfg.rate_limit, cfg.max_waiting, names=names, aliases=aliases, root=cfg.model,
                     allow_runtime_lora=cfg.allow_runtime_lora, transcriber=transcriber,
                     max_audio_bytes=int(cfg.max_audio_mb * (1 << 20)))
    if cfg.allow_runtime_lora:  # vLLM warns the same: any caller with a key can make the server read a folder
        print("kollm: warning: runtime LoRA loading is on (/v1/load_lora_adapter): callers can make the server read "
              "any adapter folder on this machine; use it where you trust the callers", file=sys.stderr, flush=True)
    host, port = cfg.host, cfg.port
    print(f"kollm: loading {cfg.model}; http://{host}:{port}/health answers 200 once it is ready "
          f"(Ctrl-C to stop; API keys {'required' if guard.enabled else 'off'}"
          f"{'; outputs PII-masked' if cfg.mask_pii else ''})", flush=True)
    print(f"  try: curl http://{host}:{port}/v1/completions -H 'Content-Type: application/json' "
          f"-d '{{\"prompt\": \"대한민국의 수도는\", \"max_tokens\": 32}}'", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=cfg.drain_timeout)

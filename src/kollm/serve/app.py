"""OpenAI-compatible HTTP API (GPT-3's completions, and chat completions): the official `openai` client works
against it with `base_url="http://127.0.0.1:8000/v1"`, and so does lm-evaluation-harness's `local-completions`
(token-id prompts, `echo` + `logprobs` for log-likelihood).

Requests go to the engine's step loop (serve/engine.py, continuous batching) and their tokens come back to this
event loop once per step; a client that goes away cancels its request, which frees its slot at the next step.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from kollm.errors import KollmError
from kollm.serve.config import ServeConfig
from kollm.serve.engine import Engine, Finish, Token
from kollm.serve.keys import Guard, KeyStore, RateLimit
from kollm.serve.metrics import Metrics
from kollm.serve.protocol import ChatRequest, CompletionRequest, DetokenizeRequest, Sampling, TokenizeRequest
from kollm.serve.sampling import SamplingParams
from kollm.serve.structured import Grammars


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(status_code=status, content={
        "error": {"message": message, "type": kind, "param": param, "code": None}})


def _params(engine: Engine, req: Sampling, max_tokens: int, logprobs: int | None) -> SamplingParams:
    bias = {}
    for k, v in (req.logit_bias or {}).items():
        if not k.lstrip("-").isdigit() or not 0 <= int(k) < engine.vocab:
            raise BadRequest(f"logit_bias key {k!r} is not a token id of this model (0..{engine.vocab - 1})",
                             "logit_bias")
        if not -100 <= v <= 100:
            raise BadRequest(f"logit_bias value {v} for token {k} must be between -100 and 100", "logit_bias")
        bias[int(k)] = v
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return SamplingParams(
        max_tokens=max_tokens, temperature=engine.default_temperature if req.temperature is None else req.temperature,
        top_p=engine.default_top_p if req.top_p is None else req.top_p, top_k=max(req.top_k, 0), min_p=req.min_p,
        repetition_penalty=req.repetition_penalty, presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, logit_bias=bias, stop=stop,
        stop_token_ids=list(req.stop_token_ids or []), ignore_eos=req.ignore_eos, seed=req.seed, logprobs=logprobs,
    )


def _check_context(engine: Engine, ids: list[int], max_tokens: int) -> None:
    if not ids:
        raise BadRequest("the prompt is empty; send at least one token", "prompt")
    if any(not 0 <= t < engine.vocab for t in ids):
        raise BadRequest(f"prompt token ids must be between 0 and {engine.vocab - 1}", "prompt")
    if len(ids) + max_tokens > engine.max_len:
        raise BadRequest(f"this model's maximum context length is {engine.max_len} tokens; the prompt has "
                         f"{len(ids)} tokens and max_tokens asks for {max_tokens} more: shorten the prompt or lower "
                         "max_tokens", "prompt" if len(ids) >= engine.max_len else "max_tokens")


class Runner:
    """Runs requests on the engine, each in a worker thread whose steps reach the event loop through a queue;
    counts what /metrics reports, and refuses work (503) when too many requests already wait."""

    def __init__(self, engine: Engine | None, max_waiting: int) -> None:
        self.engine, self.max_waiting = engine, max_waiting
        self.metrics = Metrics(lambda: self.engine)
        self.waiting = 0
        self._lock = threading.Lock()

    def check_capacity(self) -> None:
        if self.waiting >= self.max_waiting:  # before a stream starts: a 503 cannot follow a 200
            raise BadRequest(f"the server is busy ({self.waiting} requests waiting); retry shortly", None, 503)

    def admit(self) -> None:
        with self._lock:
            if self.waiting >= self.max_waiting:
                raise BadRequest(f"the server is busy ({self.waiting} requests waiting); retry shortly", None, 503)
            self.waiting += 1
        self.metrics.waiting.inc()

    def _started(self) -> None:
        with self._lock:
            self.waiting -= 1
        self.metrics.waiting.dec()
        self.metrics.running.inc()

    async def steps(self, ids: list[int], p: SamplingParams) -> AsyncIterator[Token | Finish]:
        """The steps of one generation; closing this iterator (a client gone) frees its slot at the next step."""
        self.admit()
        m, t0, started, last = self.metrics, time.perf_counter(), False, None
        m.prompt_tokens.inc(len(ids))
        try:
            async for step in self.engine.agenerate(ids, p):
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


Job = tuple[list[int], SamplingParams]  # a prompt's ids and one choice's sampling


async def _merged(runner: Runner, jobs: list[Job]) -> AsyncIterator[tuple[int, Token | Finish]]:
    """The steps of several generations at once (n choices, several prompts), tagged with their job's index:
    they run side by side in the engine's batch (identical prompts share one prefill), not one after another."""
    q: asyncio.Queue = asyncio.Queue()

    async def run(i: int, ids: list[int], p: SamplingParams) -> None:
        try:
            async for step in runner.steps(ids, p):
                await q.put((i, step))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            await q.put((i, e))
        finally:
            await q.put((i, None))

    tasks = [asyncio.create_task(run(i, ids, p)) for i, (ids, p) in enumerate(jobs)]
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


async def _collect(request: Request, runner: Runner, jobs: list[Job], choices: list) -> None:
    """Run the jobs into `choices`; a client that disconnects before the answer cancels them (freeing their
    slots), as a closed stream does."""

    async def run() -> None:
        async for k, step in _merged(runner, jobs):
            choices[k].add(step)

    task = asyncio.create_task(run())
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if not task.done() and await request.is_disconnected():
            task.cancel()
    await task


class _Choice:
    """One choice being built: text, tokens with their logprobs, finish reason."""

    def __init__(self) -> None:
        self.text, self.ids, self.lps, self.tops, self.finish = "", [], [], [], None

    def add(self, step: Token | Finish) -> str:
        if isinstance(step, Finish):
            self.finish = step.reason
        else:
            self.ids.append(step.id)
            self.lps.append(step.logprob)
            self.tops.append(step.top)
        self.text += step.text
        return step.text


def _legacy_logprobs(engine: Engine, ids: list[int], lps: list, tops: list, offset0: int = 0) -> dict:
    """The completions API's logprobs object: tokens, token_logprobs, top_logprobs, text_offset."""
    tokens = [engine.token_text(t) for t in ids]
    offsets, at = [], offset0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets,
            "top_logprobs": [None if top is None else {engine.token_text(k): v for k, v in top.items()}
                             for top in tops]}


# JSON leaves these raw, and line readers that split like str.splitlines (httpx's iter_lines) would cut the event
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _sse(obj: dict | str) -> str:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS)
    return f"data: {data}\n\n"


def _usage(prompt_tokens: int, completion_tokens: int, prompt_chars: int, completion_chars: int) -> dict:
    # characters too: a Korean user sees characters per token, the measure a tokenizer is judged by
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_characters": prompt_chars, "completion_characters": completion_chars}


def create_app(engine: Engine | Callable[[], Engine], guard: Guard | None = None, rate_limit: float = 0.0,
               max_waiting: int = 64, max_body_bytes: int = 1 << 20) -> FastAPI:
    """`engine`: an Engine, or a function that loads one (the port opens at once: /health answers 503 until the
    model is loaded, then 200); `guard`: API keys (off when None or empty); `rate_limit`: requests per second
    per key (0: off); `max_waiting`: requests queued for the engine before new ones get 503; `max_body_bytes`:
    request size."""
    created = int(time.time())
    runner = Runner(engine if isinstance(engine, Engine) else None, max_waiting)
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
    limiter = RateLimit(rate_limit)

    @app.middleware("http")
    async def gate(request: Request, call_next: object) -> Response:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > max_body_bytes:
            return _error(413, f"the request body is {int(size):,} bytes; the limit is {max_body_bytes:,}")
        who = request.client.host if request.client else "?"
        if guard is not None and request.url.path != "/health" and guard.enabled:
            auth = request.headers.get("authorization", "")
            who = guard.check(auth[7:].strip() if auth.lower().startswith("bearer ") else None)
            if who is None:
                return JSONResponse(status_code=401, content={"error": {
                    "message": "missing or invalid API key; send Authorization: Bearer <key>",
                    "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
        if runner.engine is None and request.url.path not in ("/metrics", "/openapi.json", "/docs"):
            why = loading["error"]
            resp = _error(503, f"the model failed to load ({why}); fix it and restart the server" if why else
                          "the model is still loading; retry shortly")
            resp.headers["Retry-After"] = "5"
            return resp
        wait = limiter.take(who) if request.url.path.startswith("/v1/") else 0.0
        if wait:
            resp = _error(429, f"rate limit reached; retry in {wait:.1f} s")
            resp.headers["Retry-After"] = str(max(1, round(wait)))
            return resp
        return await call_next(request)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(runner.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        if first["type"] == "extra_forbidden":
            return _error(400, f"unsupported parameter {where!r}: kollm does not implement it; remove it", where)
        if first["type"] == "json_invalid" or first["loc"] == ("body",):
            return _error(400, f"the request body is not valid JSON ({first['msg']}); send a JSON object")
        return _error(400, f"{where}: {first['msg']}", str(first["loc"][-1]))

    @app.exception_handler(BadRequest)
    async def bad(_: Request, exc: BadRequest) -> JSONResponse:
        resp = _error(exc.status, exc.message, exc.param)
        if exc.status == 503:  # vLLM's choice: a full queue says when to come back
            resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}); the request was not completed")

    def check_model(name: str | None) -> Engine:
        engine = runner.engine
        if name and name != engine.name:
            raise BadRequest(f"model {name!r} is not served here; GET /v1/models lists {engine.name!r}", "model",
                             404)
        return engine

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": runner.engine.name}

    @app.get("/v1/models")
    async def models() -> dict:
        engine = runner.engine
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": created,
                                            "owned_by": "kollm", "max_model_len": engine.max_len}]}

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict:
        engine = check_model(req.model)
        ids = engine.encode(req.prompt) if req.add_special_tokens else engine.tokenizer.encode(
            req.prompt, add_special_tokens=False)
        return {"tokens": ids, "count": len(ids), "max_model_len": engine.max_len}

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict:
        engine = check_model(req.model)
        if any(not 0 <= t < engine.vocab for t in req.tokens):
            raise BadRequest(f"token ids must be between 0 and {engine.vocab - 1}", "tokens")
        return {"prompt": engine.tokenizer.decode(req.tokens, skip_special_tokens=False)}

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict:
        engine = runner.engine
        tok = engine.tokenizer
        return {"tokenizer_class": type(tok).__name__, "bos_token": tok.bos_token, "eos_token": tok.eos_token,
                "pad_token": tok.pad_token, "add_bos_token": tok.bos_token is not None,
                "chat_template": tok.chat_template, "model_max_length": engine.max_len}

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
        engine = check_model(req.model)
        if isinstance(req.prompt, str):
            prompts = [engine.encode(req.prompt)]
        elif req.prompt and all(isinstance(x, int) for x in req.prompt):
            prompts = [list(req.prompt)]  # token ids are used verbatim: no BOS added
        elif req.prompt and all(isinstance(x, str) for x in req.prompt):
            prompts = [engine.encode(x) for x in req.prompt]
        elif req.prompt:
            prompts = [list(x) for x in req.prompt]
        else:
            raise BadRequest("prompt is empty; send a string, a list of strings or token ids", "prompt")
        if req.max_tokens == 0 and not req.echo:
            raise BadRequest("max_tokens = 0 is only allowed with echo = true (scoring the prompt)", "max_tokens")
        if req.stream and req.echo:
            raise BadRequest("echo is not supported with stream = true; send stream = false", "echo")
        runner.check_capacity()
        if len(prompts) * req.n > runner.max_waiting:
            raise BadRequest(f"{len(prompts)} prompts x n = {req.n} is more than the {runner.max_waiting} requests "
                             "this server queues; send fewer at once", "n")
        for ids in prompts:
            _check_context(engine, ids, req.max_tokens)
        p = _params(engine, req, req.max_tokens, req.logprobs)
        runner.check_capacity()
        rid = f"cmpl-{uuid.uuid4().hex}"
        jobs = [(ids, p.for_choice(i)) for ids in prompts for i in range(req.n)]  # choice k = prompt k//n, seed i
        if req.stream:
            return StreamingResponse(_stream_completion(runner, rid, prompts, jobs, req),
                                     media_type="text/event-stream")
        choices = [_Choice() for _ in jobs]
        if req.max_tokens:
            await _collect(request, runner, jobs, choices)
        out, n_out, chars_out = [], 0, 0
        for k, c in enumerate(choices):
            ids = jobs[k][0]
            if req.max_tokens == 0:
                c.finish = "length"
            logprobs = None
            if req.logprobs is not None:
                lps, tops, toks = c.lps, c.tops, c.ids
                if req.echo:
                    scored = await asyncio.to_thread(engine.prompt_logprobs, ids, req.logprobs or 0)
                    lps = [None if s is None else s[0] for s in scored] + lps
                    tops = [None if s is None else s[1] for s in scored] + tops
                    toks = ids + toks
                logprobs = _legacy_logprobs(engine, toks, lps, tops)
            prompt_text = engine.tokenizer.decode(ids, skip_special_tokens=True) if req.echo else ""
            out.append({"text": prompt_text + c.text, "index": k, "logprobs": logprobs, "finish_reason": c.finish})
            n_out, chars_out = n_out + len(c.ids), chars_out + len(c.text)
        n_in = sum(len(ids) for ids in prompts)
        chars_in = sum(len(engine.tokenizer.decode(ids, skip_special_tokens=True)) for ids in prompts)
        return JSONResponse({"id": rid, "object": "text_completion", "created": int(time.time()),
                             "model": engine.name, "choices": out, "usage": _usage(n_in, n_out, chars_in, chars_out)})

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest, request: Request) -> JSONResponse | StreamingResponse:
        engine = check_model(req.model)
        grammar, rf = None, req.response_format
        if rf is not None and rf.type != "text":
            try:
                grammar = Grammars.grammar(rf.type, (rf.json_schema or {}).get("schema"))
            except ValueError as e:
                raise BadRequest(str(e), "response_format") from None
            await asyncio.to_thread(engine.grammars.prepare)  # once per server, off the event loop
        try:
            ids = engine.chat_prompt([m.model_dump(exclude_none=True) for m in req.messages])
        except ValueError as e:
            raise BadRequest(str(e), "messages") from None
        max_tokens = req.max_completion_tokens or req.max_tokens or max(1, engine.max_len - len(ids))
        _check_context(engine, ids, max_tokens)
        top = req.top_logprobs if req.top_logprobs is not None else 0
        p = _params(engine, req, max_tokens, top if req.logprobs else None)
        p.grammar = grammar
        turn_end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(turn_end, int) and turn_end != engine.tokenizer.unk_token_id:
            p.stop_token_ids.append(turn_end)  # kollm's ChatML turn ends with <|im_end|>, not EOS
        runner.check_capacity()
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        jobs = [(ids, p.for_choice(i)) for i in range(req.n)]
        if req.stream:
            return StreamingResponse(_stream_chat(runner, rid, ids, jobs, req), media_type="text/event-stream")
        choices = [_Choice() for _ in jobs]
        await _collect(request, runner, jobs, choices)
        out = [{"index": i, "message": {"role": "assistant", "content": c.text},
                "logprobs": _chat_logprobs(engine, c.ids, c.lps, c.tops) if req.logprobs else None,
                "finish_reason": c.finish} for i, c in enumerate(choices)]
        chars_in = sum(len(m.content) for m in req.messages)
        return JSONResponse({"id": rid, "object": "chat.completion", "created": int(time.time()),
                             "model": engine.name, "choices": out,
                             "usage": _usage(len(ids), sum(len(c.ids) for c in choices), chars_in,
                                             sum(len(c.text) for c in choices))})

    return app


def _chat_logprobs(engine: Engine, ids: list[int], lps: list, tops: list) -> dict:
    def entry(tok: int, lp: float) -> dict:
        text = engine.token_text(tok)
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(t, lp), "top_logprobs": [entry(k, v) for k, v in (top or {}).items()]}
                        for t, lp, top in zip(ids, lps, tops, strict=True)]}


async def _stream_completion(runner: Runner, rid: str, prompts: list[list[int]], jobs: list[Job],
                             req: CompletionRequest) -> AsyncIterator[str]:
    engine = runner.engine
    n_out, chars_out = 0, [0] * len(jobs)
    async for k, step in _merged(runner, jobs):
        c = {"text": step.text, "index": k, "logprobs": None, "finish_reason": None}
        if isinstance(step, Finish):
            c["finish_reason"] = step.reason
        else:
            n_out += 1
            if req.logprobs is not None:
                c["logprobs"] = _legacy_logprobs(engine, [step.id], [step.logprob], [step.top], chars_out[k])
        chars_out[k] += len(step.text)
        if c["text"] or c["finish_reason"] or c["logprobs"]:
            yield _sse({"id": rid, "object": "text_completion", "created": int(time.time()),
                        "model": engine.name, "choices": [c]})
    if req.stream_options and req.stream_options.include_usage:
        chars_in = sum(len(engine.tokenizer.decode(ids, skip_special_tokens=True)) for ids in prompts)
        yield _sse({"id": rid, "object": "text_completion", "created": int(time.time()), "model": engine.name,
                    "choices": [], "usage": _usage(sum(map(len, prompts)), n_out, chars_in, sum(chars_out))})
    yield _sse("[DONE]")


async def _stream_chat(runner: Runner, rid: str, ids: list[int], jobs: list[Job],
                       req: ChatRequest) -> AsyncIterator[str]:
    engine = runner.engine

    def chunk(choices: list, **extra: object) -> str:
        return _sse({"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": engine.name, "choices": choices, **extra})

    for i in range(len(jobs)):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}])
    n_out, chars_out = 0, 0
    async for i, step in _merged(runner, jobs):
        c = {"index": i, "delta": {"content": step.text} if step.text else {}, "logprobs": None,
             "finish_reason": None}
        if isinstance(step, Finish):
            c["finish_reason"] = step.reason
        else:
            n_out += 1
            if req.logprobs:
                c["logprobs"] = _chat_logprobs(engine, [step.id], [step.logprob], [step.top])
        chars_out += len(step.text)
        if step.text or c["finish_reason"] or c["logprobs"]:
            yield chunk([c])
    if req.stream_options and req.stream_options.include_usage:
        yield chunk([], usage=_usage(len(ids), n_out, sum(len(m.content) for m in req.messages), chars_out))
    yield _sse("[DONE]")


def run_server(cfg: ServeConfig) -> None:
    """Open the port at once (/health: 503 while the model loads), serve until SIGTERM or Ctrl-C, then drain:
    uvicorn stops taking connections and lets running requests and streams finish."""
    import uvicorn

    if cfg.chat_template and not Path(cfg.chat_template).is_file():
        raise KollmError(f"chat template {cfg.chat_template} does not exist; pass a Jinja file to --chat-template")
    if not (Path(cfg.model) / "config.json").is_file():
        raise KollmError(f"{cfg.model} is not a Hugging Face model folder (no config.json); pass --model DIR")

    def load() -> Engine:
        engine = Engine.load(cfg.model, cfg.chat_template or None, cfg.engine(), cfg.mask_pii)
        print(f"kollm: {engine.name} loaded ({engine.summary()}); serving at http://{host}:{port}/v1", flush=True)
        return engine

    guard = Guard(cfg.api_key or None, KeyStore(Path(cfg.keys_db).expanduser()) if cfg.keys_db else None)
    app = create_app(load, guard, cfg.rate_limit, cfg.max_waiting)
    host, port = cfg.host, cfg.port
    print(f"kollm: loading {cfg.model}; http://{host}:{port}/health answers 200 once it is ready "
          f"(Ctrl-C to stop; API keys {'required' if guard.enabled else 'off'}"
          f"{'; outputs PII-masked' if cfg.mask_pii else ''})", flush=True)
    print(f"  try: curl http://{host}:{port}/v1/completions -H 'Content-Type: application/json' "
          f"-d '{{\"prompt\": \"대한민국의 수도는\", \"max_tokens\": 32}}'", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=cfg.drain_timeout)

"""Calls to any OpenAI-compatible server (kollm serve, vLLM, ...): `/v1/completions`, `/v1/chat/completions`
(streaming or not), `/v1/models`, and kollm's/vLLM's `/tokenize` for the token counter. Nothing here knows
which server it is talking to beyond those shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from kollm.studio.apps import AppSpec


class ModelError(Exception):
    """The model server could not be reached or refused the request; `message` is one line for the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)


def root_url(model_url: str) -> str:
    """`http://h:p/v1` and `http://h:p` both name the same server; paths are built from the root."""
    u = model_url.rstrip("/")
    return u[: -len("/v1")] if u.endswith("/v1") else u


def request_body(spec: AppSpec, prompt: str | list[dict], model: str, stream: bool) -> dict:
    """The OpenAI request for a rendered prompt (str: completions; messages: chat), with the version's parameters.
    Only parameters that differ from "off" are sent: servers disagree on what top_k=0 means. Temperature and top-p
    are sent only when the version sets them; left out, the server uses the model's own defaults."""
    p = spec.params
    body: dict = {"max_tokens": p.max_tokens, "stream": stream}
    if model:
        body["model"] = model
    if p.temperature is not None:
        body["temperature"] = p.temperature
    if p.top_p is not None:
        body["top_p"] = p.top_p
    if p.top_k > 0:
        body["top_k"] = p.top_k
    if p.repetition_penalty != 1.0:
        body["repetition_penalty"] = p.repetition_penalty
    if p.stop:
        body["stop"] = list(p.stop)
    if stream:
        body["stream_options"] = {"include_usage": True}
    if isinstance(prompt, str):
        body["prompt"] = prompt
    else:
        body["messages"] = prompt
        schema = spec.schema()
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return body


class ModelClient:
    def __init__(self, model_url: str, model: str = "", api_key: str = "", timeout: float = 300.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.root, self.model, self.timeout = root_url(model_url), model, timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.root, headers=self.headers, transport=self.transport,
                                 timeout=httpx.Timeout(self.timeout, connect=10.0))

    async def models(self) -> list[str]:
        try:
            async with self._client() as c:
                r = await c.get("/v1/models")
        except httpx.HTTPError as e:
            raise ModelError(self._unreachable(e)) from None
        if r.status_code != 200:
            raise ModelError(_upstream_message(r.status_code, r.text), r.status_code)
        return [m.get("id", "") for m in r.json().get("data", [])]

    async def count_tokens(self, text: str) -> int | None:
        """Tokens in `text` by the server's own tokenizer (`/tokenize`), or None where the server has none."""
        try:
            async with self._client() as c:
                r = await c.post("/tokenize", json={"prompt": text, **({"model": self.model} if self.model else {})})
            return int(r.json()["count"]) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _unreachable(self, e: Exception) -> str:
        return f"the model server at {self.root} cannot be reached ({type(e).__name__}); is it running?"

    async def stream(self, spec: AppSpec, prompt: str | list[dict], model: str = "") -> AsyncIterator[str | Usage]:
        """Text deltas as they arrive, then one `Usage`. Raises ModelError before or during the stream."""
        path = "/v1/completions" if isinstance(prompt, str) else "/v1/chat/completions"
        body = request_body(spec, prompt, model or self.model, stream=True)
        usage = Usage()
        try:
            async with self._client() as c, c.stream("POST", path, json=body) as r:
                if r.status_code != 200:
                    raise ModelError(_upstream_message(r.status_code, (await r.aread()).decode("utf-8", "replace")),
                                     r.status_code)
                async for line in _lines(r):
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue
                    if chunk.get("error"):
                        raise ModelError(_error_text(chunk["error"]))
                    if chunk.get("usage"):
                        u = chunk["usage"]
                        usage = Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0), u)
                    for ch in chunk.get("choices") or []:
                        text = ch.get("text") if "text" in ch else (ch.get("delta") or {}).get("content")
                        if text:
                            yield text
        except httpx.HTTPError as e:
            raise ModelError(self._unreachable(e)) from None
        yield usage

    async def complete(self, spec: AppSpec, prompt: str | list[dict], model: str = "") -> tuple[str, Usage]:
        """The whole output at once (non-streaming request)."""
        path = "/v1/completions" if isinstance(prompt, str) else "/v1/chat/completions"
        body = request_body(spec, prompt, model or self.model, stream=False)
        try:
            async with self._client() as c:
                r = await c.post(path, json=body)
        except httpx.HTTPError as e:
            raise ModelError(self._unreachable(e)) from None
        if r.status_code != 200:
            raise ModelError(_upstream_message(r.status_code, r.text), r.status_code)
        try:
            out = r.json()
            ch = out["choices"][0]
            text = ch["text"] if "text" in ch else ch["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError(f"the model server at {self.root} answered something that is not an OpenAI "
                             "completion") from None
        u = out.get("usage") or {}
        return text or "", Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0), u)

    async def text_logprobs(self, texts: list[str], model: str = "") -> list[float]:
        """Each text's log-probability (nats) by the model, from its echoed prompt logprobs: lm-eval's
        loglikelihood request (`echo`, `logprobs`, `max_tokens` 1), which kollm serve and vLLM both answer. Only
        the prompt's tokens count (text_offset inside the text); the first token has no logprob."""
        body = {"model": model or self.model, "prompt": texts, "max_tokens": 1, "echo": True, "logprobs": 1,
                "temperature": 0}
        try:
            async with self._client() as c:
                r = await c.post("/v1/completions", json=body)
        except httpx.HTTPError as e:
            raise ModelError(self._unreachable(e)) from None
        if r.status_code != 200:
            raise ModelError(_upstream_message(r.status_code, r.text), r.status_code)
        try:
            choices = sorted(r.json()["choices"], key=lambda ch: ch["index"])
            out = []
            for text, ch in zip(texts, choices, strict=True):
                lp = ch["logprobs"]
                out.append(sum(v for v, at in zip(lp["token_logprobs"], lp["text_offset"], strict=True)
                               if v is not None and at < len(text)))
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError(f"the model server at {self.root} did not score the text (echo with logprobs); "
                             "turn the app's typo fixing (fix_typos) off or use kollm serve or vLLM") from None
        return out

    async def transcribe(self, data: bytes, filename: str, model: str = "whisper-1", language: str = "") -> dict:
        """Speech to text by the server's OpenAI-shaped `/v1/audio/transcriptions` (multipart, as OpenAI's
        clients send it), as verbose_json: {"text", "language", "duration", "segments", ...}. A refusal is a
        ModelError with the server's status (404: the server does not transcribe)."""
        import mimetypes

        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        fields = {"model": model, "response_format": "verbose_json", **({"language": language} if language else {})}
        try:
            async with self._client() as c:
                r = await c.post("/v1/audio/transcriptions", data=fields, files={"file": (filename, data, mime)})
        except httpx.HTTPError as e:
            raise ModelError(self._unreachable(e)) from None
        if r.status_code != 200:
            raise ModelError(_upstream_message(r.status_code, r.text), r.status_code)
        try:
            out = r.json()
            str(out["text"])
        except (ValueError, KeyError, TypeError):
            raise ModelError(f"the model server at {self.root} answered something that is not a "
                             "transcription") from None
        return out


async def _lines(r: httpx.Response) -> AsyncIterator[str]:
    """An event stream's lines, split only at line feeds (an optional CR before one dropped). Not aiter_lines: it
    also splits at U+0085, U+2028 and U+2029, which a server writing JSON as raw UTF-8 leaves inside an event, and
    the two halves of that event would be dropped as unreadable."""
    rest = ""
    async for text in r.aiter_text():
        *lines, rest = (rest + text).split("\n")
        for line in lines:
            yield line.removesuffix("\r")
    if rest:
        yield rest.removesuffix("\r")


def _error_text(err: object) -> str:
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)


def _upstream_message(status: int, body: str) -> str:
    try:
        msg = _error_text(json.loads(body).get("error") or json.loads(body).get("detail") or body)
    except (ValueError, AttributeError):
        msg = body.strip()[:300] or "no message"
    return f"the model server answered {status}: {msg}"

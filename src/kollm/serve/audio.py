"""POST /v1/audio/transcriptions in OpenAI's shape (`kollm serve --whisper DIR`): the official client's
`audio.transcriptions.create` works against it, for every response_format.

The request is multipart (`file`, `model`, `language`, `prompt`, `response_format` json|text|srt|vtt|verbose_json,
`timestamp_granularities[]` segment|word, `temperature`). Transcription is the data stage's (data/speech.py:
faster-whisper with voice-activity detection, the same code `kollm data run` reads audio with). It runs in worker
threads, never on the event loop: at most `concurrency` at once (CTranslate2 runs that many in parallel, the
cores split between them), others wait their turn, and past `max_waiting` a request gets 503. A client that goes
away stops its transcription at the next segment.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from kollm.data.speech import (
    COMPUTE_TYPES,
    AudioError,
    Segment,
    Whisper,
    check_folder,
    cores,
    decode,
    join,
    load_whisper,
)
from kollm.errors import KollmError

PATH = "/v1/audio/transcriptions"
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
FIELDS = {"file", "model", "language", "prompt", "response_format", "timestamp_granularities[]",
          "timestamp_granularities", "temperature", "stream"}
ALIAS = "whisper-1"  # the name OpenAI's clients send
ENABLE = "start the server with --whisper DIR (a CTranslate2 whisper folder: `kollm import whisper --out DIR`)"


class Cancelled(Exception):
    pass


class Transcriber:
    """The server's whisper model: loaded once (by the server's loader thread, or on first use), run in
    `concurrency` worker threads."""

    def __init__(self, folder: str | Path, concurrency: int = 1, compute_type: str = "int8",
                 max_waiting: int = 64) -> None:
        self.folder = check_folder(folder)
        if compute_type not in COMPUTE_TYPES:  # before the port opens, like the folder
            raise KollmError(f"[serve] whisper_compute_type {compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}")
        self.names = {ALIAS, self.folder.name, str(folder), str(self.folder.resolve())}
        self.name = self.folder.name
        self.concurrency, self.compute_type, self.max_waiting = max(1, concurrency), compute_type, max_waiting
        self._model: Whisper | None = None
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self.pending = 0  # requests admitted and not finished (waiting or running)

    @property
    def model(self) -> Whisper:
        with self._lock:
            if self._model is None:  # the data stage's cache: one copy per process, whoever loads it first
                self._model = load_whisper(self.folder, self.compute_type, threads=max(1, cores() // self.concurrency),
                                           workers=self.concurrency)
            return self._model

    def card(self, created: int) -> dict:
        """The model in /v1/models (as vLLM lists a served whisper): by its folder's name; `whisper-1` is
        accepted too."""
        return {"id": self.name, "object": "model", "created": created, "owned_by": "kollm",
                "root": str(self.folder), "parent": None, "max_model_len": 448}

    def run(self, data: bytes, stop: threading.Event, language: str | None, prompt: str | None,
            temperature: float | None, words: bool) -> dict:
        """Decode and transcribe (in a worker thread); stops between segments once `stop` is set."""
        model = self.model
        samples = decode(data)
        segs, lang, _ = model.segments(samples, language, prompt, temperature, words)
        got: list[Segment] = []
        for s in segs:
            if stop.is_set():
                raise Cancelled
            got.append(s)
        return {"text": join(got), "language": lang, "duration": round(len(samples) / 16_000, 3), "segments": got}

    async def transcribe(self, request: Request, data: bytes, **kw: Any) -> dict | None:
        """The transcript, or None when the client went away first (its transcription stops)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        stop = threading.Event()
        self.pending += 1
        try:
            async with self._slots:
                work = asyncio.create_task(asyncio.to_thread(self.run, data, stop, **kw))
                watch = asyncio.create_task(_gone(request))
                try:
                    await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
                    if not work.done():
                        stop.set()
                        await asyncio.wait({work})  # the slot is free only once the thread has stopped
                        work.exception()  # Cancelled (or whatever ended it): retrieved, nobody reads it
                        return None
                    return work.result()
                finally:
                    watch.cancel()
        finally:
            self.pending -= 1


async def _gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _stamp(t: float, sep: str) -> str:
    ms = round(t * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segments: list[Segment]) -> str:
    return "".join(f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n\n"
                   for i, s in enumerate(segments, 1))


def vtt(segments: list[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n\n"
                                  for s in segments)


def _language_name(code: str) -> str:
    """OpenAI's verbose_json names the language in English words ("korean"), as whisper's own table does."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)


def render(result: dict, fmt: str, granularities: list[str]) -> Response:
    segs: list[Segment] = result["segments"]
    usage = {"type": "duration", "seconds": math.ceil(result["duration"])}
    if fmt == "text":
        return PlainTextResponse(result["text"] + "\n")
    if fmt == "srt":
        return PlainTextResponse(srt(segs))
    if fmt == "vtt":
        return PlainTextResponse(vtt(segs), media_type="text/vtt")
    if fmt == "json":
        return JSONResponse({"text": result["text"], "usage": usage})
    body: dict[str, Any] = {"task": "transcribe", "language": _language_name(result["language"]),
                            "duration": result["duration"], "text": result["text"]}
    if "segment" in granularities or not granularities:
        body["segments"] = [{k: v for k, v in s.as_dict().items() if k != "words"} for s in segs]
    if "word" in granularities:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for s in segs for w in s.words or ()]
    body["usage"] = usage
    return JSONResponse(body)


async def _form(request: Request, bad: Callable[..., Exception], max_bytes: int) -> tuple[bytes, dict, list[str]]:
    """The upload's bytes, its one-valued fields and its timestamp granularities, each checked."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad("send the audio as multipart/form-data with a `file` field (as OpenAI's clients do)", "file")
    try:
        form = await request.form(max_files=1, max_fields=32)
    except HTTPException:  # the body went over the size limit while arriving (a chunked upload): 413 stays 413
        raise
    except Exception as e:  # noqa: BLE001 - starlette's parser errors: a malformed body is the caller's
        raise bad(f"the multipart body cannot be read ({getattr(e, 'detail', None) or e}); send a valid "
                  "multipart/form-data request", "file") from None
    try:
        extra = sorted(set(form.keys()) - FIELDS)
        if extra:
            raise bad(f"unsupported parameter {extra[0]!r}: kollm does not implement it; remove it", extra[0])
        fields: dict[str, str] = {}
        for k in FIELDS - {"file", "timestamp_granularities[]", "timestamp_granularities"}:
            vals = form.getlist(k)
            if len(vals) > 1 or any(not isinstance(v, str) for v in vals):
                raise bad(f"{k} must be given once, as text", k)
            if vals:
                fields[k] = vals[0]
        grans = [*form.getlist("timestamp_granularities[]"), *form.getlist("timestamp_granularities")]
        if any(g not in GRANULARITIES for g in grans):
            raise bad(f"timestamp_granularities must be among {', '.join(GRANULARITIES)}", "timestamp_granularities")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad("the request has no `file` (the audio: wav, mp3, m4a, flac, ogg, ...)", "file")
        if upload.size is not None and upload.size > max_bytes:
            raise bad(f"the audio file is over the {max_bytes:,}-byte limit; send a shorter or more compressed "
                      "file", "file", 413, "request_too_large")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise bad(f"the audio file is over the {max_bytes:,}-byte limit; send a shorter or more compressed "
                      "file", "file", 413, "request_too_large")
        return data, fields, list(dict.fromkeys(grans))
    finally:
        await form.close()


def _options(fields: dict, grans: list[str], bad: Callable[..., Exception], model: Whisper | None) -> dict:
    fmt = fields.get("response_format", "json")
    if fmt not in FORMATS:
        raise bad(f"response_format must be one of {', '.join(FORMATS)}", "response_format")
    if grans and fmt != "verbose_json":
        raise bad("timestamp_granularities needs response_format = verbose_json", "timestamp_granularities")
    if fields.get("stream", "false").lower() not in ("false", "0"):
        raise bad("stream = true is not supported for whisper transcription; leave it out", "stream")
    try:
        temperature = float(fields["temperature"]) if "temperature" in fields else None
    except ValueError:
        raise bad("temperature must be a number between 0 and 1", "temperature") from None
    if temperature is not None and not 0 <= temperature <= 1:
        raise bad("temperature must be a number between 0 and 1", "temperature")
    language = fields.get("language") or None
    if language is not None and model is not None:
        try:
            language = model.check_language(language)
        except KollmError as e:
            raise bad(str(e), "language") from None
    prompt = fields.get("prompt") or None
    if prompt is not None and len(prompt) > 4096:
        raise bad("prompt is over 4,096 characters; whisper reads only its last 224 tokens: shorten it", "prompt")
    return {"fmt": fmt, "language": language, "prompt": prompt, "temperature": temperature,
            "words": "word" in grans}


def register(app: FastAPI, transcriber: Transcriber | None, bad: Callable[..., Exception], max_bytes: int) -> None:
    """Add the transcription route. `bad(message, param, status=400, code=None)` makes the server's OpenAI-style
    error; without a transcriber the route answers 404 saying how to turn it on."""
    body = {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}, "model": {"type": "string"},
        "language": {"type": "string"}, "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(FORMATS)},
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": list(GRANULARITIES)}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1}}}}}

    @app.post(PATH, response_model=None, openapi_extra={"requestBody": {"required": True, "content": body}})
    async def transcriptions(request: Request) -> Response:
        """Speech to text with whisper (OpenAI's audio.transcriptions)."""
        if transcriber is None:
            raise bad(f"speech transcription is not enabled on this server; {ENABLE}", "model", 404,
                      "model_not_found")
        if transcriber.pending >= transcriber.max_waiting:
            raise bad(f"the server is busy ({transcriber.pending} transcriptions waiting); retry shortly", None,
                      503, "server_overloaded")
        data, fields, grans = await _form(request, bad, max_bytes)
        name = fields.get("model") or ALIAS
        if name not in transcriber.names:
            raise bad(f"model {name!r} is not a transcription model here; send model={ALIAS!r} (or "
                      f"{transcriber.name!r})", "model", 404, "model_not_found")
        model = await asyncio.to_thread(lambda: transcriber.model)
        opts = _options(fields, grans, bad, model)
        fmt = opts.pop("fmt")
        try:
            result = await transcriber.transcribe(request, data, **opts)
        except AudioError as e:
            raise bad(str(e), "file") from None
        except Cancelled:
            result = None
        if result is None:
            return Response(status_code=499)  # the client is gone: nobody reads this
        return render(result, fmt, grans)

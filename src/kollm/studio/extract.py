"""File variables: an image or a recording becomes the text a template is filled with.

An image is read here, by the data stage's OCR (`kollm.data.ocr`: tesseract kor+eng, in a worker thread, never on
the event loop); a recording is sent to the model server's OpenAI-shaped `/v1/audio/transcriptions` (the Studio
reaches the model server only over HTTP, and whisper lives there, next to the language model). The playground
posts one file at a time (`web_files.py`); the app endpoint takes data URLs (`fill_files`).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import threading
from dataclasses import asdict, dataclass

from kollm import dataurl
from kollm.data.normalize import nfc
from kollm.errors import KollmError
from kollm.studio.apps import FILE_KINDS, AppSpec
from kollm.studio.client import ModelClient, ModelError
from kollm.studio.config import StudioConfig
from kollm.studio.messages import msg

LOW_CONFIDENCE = 60.0  # OCR confidence (0-100) under which the playground asks the user to check the text
# tesseract runs one page per core (data/ocr.py sets OMP_THREAD_LIMIT=1): more at once only queue in the kernel
_OCR_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
# what a data URL may hold for each kind (recordings often come in video containers: webm, mp4)
MIME_OK = {"image": ("image/",), "audio": ("audio/", "video/", "application/ogg", "application/octet-stream")}


@dataclass
class Extracted:
    kind: str  # image | audio
    text: str  # NFC
    confidence: float | None = None  # OCR, 0-100
    language: str | None = None  # transcription: the language whisper heard
    duration: float | None = None  # transcription: seconds of audio

    def note(self) -> str:
        """How the text was made, for the playground's marker (Korean)."""
        if self.kind == "image":
            c = self.confidence or 0.0
            return msg("file.note_image", confidence=c) + (msg("file.note_low") if c < LOW_CONFIDENCE else "")
        return msg("file.note_audio", language=self.language or "?", duration=self.duration or 0.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "note": self.note()}


def _ocr(data: bytes) -> Extracted:
    from kollm.data.ocr import OcrUnavailable, check_available, load_image, ocr_image

    try:
        check_available()
    except OcrUnavailable as e:
        raise KollmError(msg("file.ocr_missing", detail=e)) from None
    try:
        img = load_image(data)
    except ValueError as e:  # not an image Pillow can decode, cut short, or over the pixel limit
        raise KollmError(msg("file.image_bad", error=e)) from None
    lo, hi = img.getextrema()
    if lo == hi:  # one flat colour: nothing to read (and nothing for the pre-processing's ink threshold)
        raise KollmError(msg("file.image_blank"))
    with _OCR_SLOTS:
        res = ocr_image(img)
    if not res.text.strip():
        raise KollmError(msg("file.image_blank"))
    return Extracted("image", nfc(res.text), confidence=round(res.confidence, 1))


async def _transcribe(client: ModelClient, data: bytes, filename: str, model: str) -> Extracted:
    try:
        out = await client.transcribe(data, filename, model)
    except ModelError as e:
        if e.status == 404:  # no such route (vLLM without a whisper model, kollm serve without --whisper)
            raise ModelError(f"{msg('file.no_transcription', url=client.root)} ({e.message})", 404) from None
        if e.status in (400, 413, 415, 422):  # the server read the file and refused it: the caller's input
            raise KollmError(msg("file.audio_bad", error=e.message)) from None
        raise
    text = nfc(str(out.get("text") or "").strip())
    if not text:
        raise KollmError(msg("file.audio_blank"))
    duration = out.get("duration")
    return Extracted("audio", text, language=out.get("language") or None,
                     duration=float(duration) if isinstance(duration, (int, float)) else None)


async def extract(client: ModelClient, cfg: StudioConfig, kind: str, data: bytes, filename: str = "") -> Extracted:
    """The text of one file: OCR for an image, the model server's transcription for audio. Bad input (not an
    image, unreadable audio, empty, too large) is a KollmError; a model server that cannot transcribe is a
    ModelError saying how to make it."""
    if kind not in FILE_KINDS:
        raise KollmError(msg("file.kind", kind=kind))
    if len(data) > cfg.max_file_bytes:
        raise KollmError(msg("file.too_large", limit=cfg.max_file_bytes))
    if not data:
        raise KollmError(msg("file.empty"))
    if kind == "image":
        return await asyncio.to_thread(_ocr, data)
    return await _transcribe(client, data, filename or "audio", cfg.transcribe_model)


def parse_data_url(var: str, kind: str, value: str, limit: int) -> tuple[bytes, str] | None:
    """A data URL's bytes and a file name for them (`receipt.png`), or None when `value` is not a data URL (plain
    text passes through). Only base64 data URLs carry a file; the type must suit the variable's kind."""
    try:
        d = dataurl.parse(value)
        if d is None:
            return None
        mime = d.mime or "application/octet-stream"
        if not mime.startswith(MIME_OK[kind]):
            raise KollmError(msg("file.mime", var=var, kind=kind, mime=mime))
        data = d.decode(limit)
    except dataurl.DataURLError as e:
        if e.reason == "too_large":
            raise KollmError(msg("file.too_large", limit=limit)) from None
        if e.reason == "empty":
            raise KollmError(msg("file.empty")) from None
        raise KollmError(msg("file.data_url", var=var, error=e.reason.replace("_", " "))) from None
    return data, var + (mimetypes.guess_extension(mime) or ".bin")


async def fill_files(client: ModelClient, cfg: StudioConfig, spec: AppSpec,
                     inputs: dict[str, str]) -> tuple[dict[str, str], dict[str, Extracted]]:
    """The inputs with each file variable's data URL replaced by its extracted text (what the template is filled
    with, and what the usage log keeps); text sent for a file variable is used as it is."""
    out, got = dict(inputs), {}
    for var, kind in spec.files.items():
        parsed = parse_data_url(var, kind, out.get(var, ""), cfg.max_file_bytes)
        if parsed is not None:
            got[var] = await extract(client, cfg, kind, *parsed)
            out[var] = got[var].text
    return out, got

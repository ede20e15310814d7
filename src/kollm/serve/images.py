"""Image parts of chat messages for a text-only model: each image is read by OCR (data/ocr.py, the corpus
pipeline's own) and its text goes where the image was, between markers, so the model (and whoever reads the
prompt) knows the text came from an image:

    [이미지 텍스트]
    영수증 ... 합계 23,400원
    [/이미지 텍스트]

Only data URLs are read (data:image/png;base64,...): the server fetches nothing, so a request cannot make it
reach into its own network. vLLM answers an image part sent to a text-only model with a 400; kollm reads it.
OCR runs in threads of its own (a page takes about half a second), never on the event loop and never in the
tokenizer's thread.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from kollm import dataurl
from kollm.data import ocr
from kollm.errors import KollmError
from kollm.serve.protocol import MAX_IMAGE_BYTES, ChatMessage, ImagePart, TextPart

OPEN, CLOSE = "[이미지 텍스트]", "[/이미지 텍스트]"
BODY_ROOM = (MAX_IMAGE_BYTES + 2) // 3 * 4 + (16 << 10)  # a chat body's room for one largest image, as base64
# tesseract is a subprocess: threads only wait on it, and one per core keeps pages from queueing behind each other
_POOL = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="kollm-ocr")


class ImageError(Exception):
    """A bad image part: the app answers it with OpenAI's error object (param `messages`)."""

    def __init__(self, message: str, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def decode_data_url(url: str, where: str) -> bytes:
    """The image bytes of a base64 data URL; anything else (a remote URL, not base64, not an image type, too
    large) is an ImageError naming the part and the fix."""
    if url[:16].lower().startswith(("http://", "https://")):
        raise ImageError(f"{where}: remote image URLs are not fetched by this server; send the image inline as a "
                         "data URL (data:image/png;base64,...)")
    try:
        d = dataurl.parse(url)
        if d is None:
            raise ImageError(f"{where}: the image_url must be a data URL (data:image/png;base64,...), "
                             f"not {url[:24]!r}")
        if not d.mime.startswith("image/"):
            raise ImageError(f"{where}: the data URL must hold a base64 image (data:image/png;base64,...), "
                             f"not {url[:48]!r}")
        return d.decode(MAX_IMAGE_BYTES)
    except dataurl.DataURLError as e:
        if e.reason == "too_large":
            raise _too_large(where, e.size) from None
        if e.reason == "empty":
            raise ImageError(f"{where}: the image_url data is empty; send the image file's bytes") from None
        if e.reason == "not_base64":
            raise ImageError(f"{where}: the data URL must hold a base64 image (data:image/png;base64,...), "
                             f"not {url[:48]!r}") from None
        raise ImageError(f"{where}: the image_url data is not valid base64; encode the file with base64 "
                         "(standard alphabet, padded)") from None


def _too_large(where: str, n: int) -> ImageError:
    return ImageError(f"{where}: the image is {n:,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit; send a smaller "
                      "image (a page at 300 dpi is enough to read)", 413, "request_too_large")


def marked(text: str) -> str:
    """The OCR text of one image as it goes into the prompt."""
    return f"{OPEN}\n{text}\n{CLOSE}" if text else f"{OPEN}\n{CLOSE}"


def _read(data: bytes, where: str) -> str:
    try:
        return ocr.ocr_image(data).text
    except ValueError as e:  # not an image Pillow can decode, or tesseract gave up on it
        raise ImageError(f"{where}: the image_url data is not a readable image ({e}); send PNG, JPEG, WebP, "
                         "TIFF or GIF") from None
    except KollmError as e:  # tesseract or its Korean data is missing: the server's problem, not the request's
        raise ImageError(f"this server cannot read images: {e}", 501, "ocr_unavailable") from None


async def read_images(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The messages with every image part replaced by a text part holding its marked OCR text; messages
    without images are returned as they are. Every data URL is checked before any OCR starts."""
    jobs: dict[tuple[int, int], bytes] = {}
    for i, m in enumerate(messages):
        for j, part in enumerate(m.content if isinstance(m.content, list) else ()):
            if isinstance(part, ImagePart):
                jobs[i, j] = decode_data_url(part.image_url.url, f"messages[{i}].content[{j}].image_url")
    if not jobs:
        return messages
    loop = asyncio.get_running_loop()
    texts = await asyncio.gather(*(loop.run_in_executor(_POOL, _read, data, f"messages[{i}].content[{j}].image_url")
                                   for (i, j), data in jobs.items()))
    got = dict(zip(jobs, texts, strict=True))
    out = []
    for i, m in enumerate(messages):
        if isinstance(m.content, list) and any((i, j) in got for j in range(len(m.content))):
            parts = [TextPart(type="text", text=marked(got[i, j])) if (i, j) in got else p
                     for j, p in enumerate(m.content)]
            m = m.model_copy(update={"content": parts})
        out.append(m)
    return out

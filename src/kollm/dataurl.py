"""Files sent inline as data URLs (RFC 2397: `data:image/png;base64,iVBOR...`): one parser, so the server's chat
image parts (`serve/images.py`) and the Studio's file variables (`studio/extract.py`) take the same strings. Each
caller words its own errors (OpenAI error objects there, the Studio's Korean messages here) from `DataURLError`'s
`reason`."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_HEAD = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*),", re.ASCII | re.IGNORECASE)


class DataURLError(ValueError):
    """`reason`: "not_base64" (a data URL without ;base64), "bad_base64", "too_large" (`size` bytes), "empty"."""

    def __init__(self, reason: str, size: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.size = reason, size


@dataclass
class DataURL:
    mime: str  # lower case; "" when the URL names none
    b64: str  # the base64 text, whitespace (line breaks some encoders add) removed

    def decode(self, limit: int) -> bytes:
        """The bytes, at most `limit` of them (checked on the text first: a huge body is never decoded)."""
        if len(self.b64) // 4 * 3 > limit + 3:
            raise DataURLError("too_large", len(self.b64) // 4 * 3)
        try:
            data = base64.b64decode(self.b64, validate=True)
        except (binascii.Error, ValueError):
            raise DataURLError("bad_base64") from None
        if len(data) > limit:
            raise DataURLError("too_large", len(data))
        if not data:
            raise DataURLError("empty")
        return data


def parse(value: str) -> DataURL | None:
    """The data URL in `value`, or None when `value` is not one; a data URL that is not base64 is an error."""
    m = _HEAD.match(value[:512])
    if m is None:
        return None
    if ";base64" not in m["params"].lower():
        raise DataURLError("not_base64")
    return DataURL(mime=(m["mime"] or "").lower(), b64="".join(value[m.end():].split()))

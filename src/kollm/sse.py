"""Server-sent events as kollm writes them: one `data: <json>` line per event, then a blank line.

JSON leaves U+0085, U+2028 and U+2029 raw (they are not control characters to it), but line readers that split
like str.splitlines (httpx's iter_lines, for one) end a line there and would cut the event in two; written as
\\u escapes they decode to the same text. JSON already escapes every other character such readers split on."""

from __future__ import annotations

import json

_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def sse_event(event: dict | str) -> str:
    """One event: a dict as JSON (UTF-8 text kept readable, the three line breaks escaped), or a literal string
    such as "[DONE]" as it is."""
    data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False).translate(_LINE_BREAKS)
    return f"data: {data}\n\n"

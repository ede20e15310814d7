"""kollm.sse: events that line readers splitting like str.splitlines (httpx's iter_lines) read back whole."""

from __future__ import annotations

import json

import httpx

from kollm.sse import sse_event


def test_line_breaks_json_leaves_raw_are_escaped_and_decode_to_the_same_text():
    text = "첫 줄\u2028둘째\u2029셋째\x85넷째\n다섯째\x1c"
    frame = sse_event({"text": text})
    assert frame.startswith("data: ") and frame.endswith("\n\n") and "첫 줄" in frame  # Korean stays readable
    lines = [line for line in httpx.Response(200, text=frame).iter_lines() if line]
    assert len(lines) == 1 and json.loads(lines[0][len("data: "):]) == {"text": text}
    assert sse_event("[DONE]") == "data: [DONE]\n\n"

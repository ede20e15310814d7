"""Numbers at and past their bounds and Unicode edge cases, in every field of every route, sent as raw JSON (huge
integers, NaN, Infinity, lone surrogates) while streams run beside them: never a 5xx, and every stream ends with
its finish reason and [DONE]."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from conftest import with_window
from live import running

from kollm.serve.app import create_app
from kollm.serve.engine import Engine

NUMBERS = ["0", "-0.0", "1", "-1", "0.5", "2", "21", "2147483648", "9223372036854775807", "9223372036854775808",
           "18446744073709551616", "-1180591620717411303424", "1e-320", "1e30", "1e308", "1e400", "-1e400", "NaN",
           "Infinity", "-Infinity", "true", "null", "\"7\"", "[]", "{}"]
COMPLETION_NUMBERS = ["max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                      "presence_penalty", "frequency_penalty", "seed", "n", "logprobs"]
CHAT_NUMBERS = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "n",
                "top_logprobs"]
STRINGS = ["\ud800", "\udfff", "\udbff\udfff", "\ufffe", "\uffff", "\U0010ffff", "\x00", "a\x00b", "\u200f\u202e",
           "\u1112\u1161\u11ab\u1100\u1173\u11af", "\ufeff", "e" + "\u0301" * 200, "👩‍👩‍👧", "\u3000", "\r\n",
           "\\", "\"", "<|bos|>", "<|im_end|>", "\U000e0001", "\u2028\u2029\x85"]


@pytest.fixture(scope="module")
def url(tiny_model_dir, tmp_path_factory):
    model = with_window(tiny_model_dir, tmp_path_factory.mktemp("fuzz") / "model", 512)
    with running(create_app(Engine.load(model, mask_pii=True))) as u:
        yield u


class Streams:
    """Streams back to back in a thread for as long as the fuzzing lasts; each must end properly."""

    def __init__(self, url: str) -> None:
        self.url, self.stop, self.results = url, threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"prompt": "옛날 옛적에", "max_tokens": 200, "stream": True, "ignore_eos": True, "temperature": 1.0}
        while not self.stop.is_set():
            with httpx.stream("POST", f"{self.url}/v1/completions", json=body, timeout=120) as r:
                lines = [line for line in r.iter_lines() if line]
            reasons = [c["finish_reason"] for line in lines[:-1] for c in json.loads(line[6:])["choices"]
                       if c["finish_reason"]]
            self.results.append(lines[-1:] == ["data: [DONE]"] and reasons == ["length"])

    def __enter__(self) -> Streams:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(120)


def raw(fields: dict[str, str]) -> bytes:
    """A JSON object from already-encoded values (json.dumps could not write 1e400 or a huge integer as sent)."""
    return ("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}").encode()


def bodies() -> list[tuple[str, bytes]]:
    out = []
    prompt, messages = json.dumps("안녕"), json.dumps([{"role": "user", "content": "안녕"}])
    for field in COMPLETION_NUMBERS:
        for n in NUMBERS:
            out.append(("/v1/completions", raw({"prompt": prompt, "max_tokens": "2", field: n})))
    for field in CHAT_NUMBERS:
        for n in NUMBERS:
            extra = {"logprobs": "true"} if field == "top_logprobs" else {}
            out.append(("/v1/chat/completions", raw({"messages": messages, "max_tokens": "2", **extra, field: n})))
    for n in NUMBERS:
        out += [("/v1/completions", raw({"prompt": f"[{n}]", "max_tokens": "2"})),
                ("/v1/completions", raw({"prompt": prompt, "max_tokens": "2", "stop_token_ids": f"[{n}]"})),
                ("/v1/completions", raw({"prompt": prompt, "max_tokens": "2", "logit_bias": f"{{\"5\": {n}}}"})),
                ("/detokenize", raw({"tokens": f"[{n}]"}))]
    for s in STRINGS:
        t = json.dumps(s)  # ensure_ascii: a lone surrogate goes as \ud800, as an attacker would send it
        out += [("/v1/completions", raw({"prompt": t, "max_tokens": "2"})),
                ("/v1/completions", raw({"prompt": f"[{t}, {prompt}]", "max_tokens": "2", "echo": "true",
                                         "logprobs": "2"})),
                ("/v1/completions", raw({"prompt": prompt, "max_tokens": "2", "stop": f"[{t}]"})),
                ("/v1/completions", raw({"prompt": prompt, "max_tokens": "2", "model": t, "user": t})),
                ("/v1/completions", raw({"prompt": prompt, "max_tokens": "2", "logit_bias": f"{{{t}: 1}}"})),
                ("/v1/chat/completions", raw({"messages": json.dumps([{"role": "user", "content": s}]),
                                              "max_tokens": "2", "logprobs": "true"})),
                ("/v1/chat/completions", raw({"messages": json.dumps([{"role": "user", "content": [
                    {"type": "text", "text": s}], "name": s}]), "max_tokens": "2"})),
                ("/tokenize", raw({"prompt": t})),
                ("/detokenize", raw({"tokens": "[0, 1, 2]", "model": t}))]
    return out


def test_no_input_makes_a_5xx_and_streams_beside_always_complete(url):
    cases = bodies()
    with Streams(url) as streams, httpx.Client(timeout=60) as client:
        for path, body in cases:
            r = client.post(f"{url}{path}", content=body, headers={"content-type": "application/json"})
            assert r.status_code < 500, (path, body, r.text)
            out = r.json()
            assert ("error" in out) == (r.status_code >= 400), (path, body, r.text)
            if r.status_code == 200 and "choices" in out:
                for c in out["choices"]:
                    text = c.get("text", c.get("message", {}).get("content"))
                    text.encode("utf-8")  # valid UTF-8: no lone surrogate made it into an answer
    assert len(cases) > 400 and streams.results and all(streams.results)

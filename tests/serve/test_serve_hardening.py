"""The API's safety, tested from outside as a user and an attacker would: each defect found that way (issue 21),
as its repro. One client's request never hurts another's; personal data never leaves a masked server; bad input is
a 400, never a 5xx or a hang."""

from __future__ import annotations

import json
import re
import threading

import httpx
import openai
import pytest
from conftest import with_window
from live import running, wait_for

from kollm.serve.app import create_app
from kollm.serve.engine import Engine, Finish, Token
from kollm.serve.sampling import SamplingParams


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    return with_window(tiny_model_dir, tmp_path_factory.mktemp("hardening") / "model", 512)


@pytest.fixture(scope="module")
def engine(model):
    return Engine.load(model)


@pytest.fixture(scope="module")
def url(engine):
    with running(create_app(engine, names=["kollm-tiny", "model"], aliases=["/srv/models/tiny"])) as u:
        yield u


@pytest.fixture(scope="module")
def masked(model):
    engine = Engine.load(model, mask_pii=True)
    with running(create_app(engine)) as u:
        yield u, engine


class Stream:
    """A long stream running in a thread while other requests come and go: it must always end properly."""

    def __init__(self, url: str, tokens: int = 300) -> None:
        self.url, self.tokens, self.lines = url, tokens, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: len(self.lines) >= 2, what="the stream running")  # before the test goes on

    def _run(self) -> None:
        body = {"prompt": "옛날 옛적에", "max_tokens": self.tokens, "stream": True, "ignore_eos": True,
                "temperature": 1.0, "seed": 1}
        with httpx.stream("POST", f"{self.url}/v1/completions", json=body, timeout=120) as r:
            self.lines.extend(line for line in r.iter_lines() if line)

    def completed(self) -> bool:
        self.thread.join(120)
        finishes = [c["finish_reason"] for line in self.lines[:-1] if line.startswith("data: {")
                    for c in json.loads(line[6:]).get("choices", []) if c.get("finish_reason")]
        return self.lines[-1:] == ["data: [DONE]"] and finishes == ["length"]


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


# ---- 1. one request's failure is its own ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [2**64, -(2**70), 2**63, -(2**63) - 1])
def test_a_huge_seed_is_a_400_and_the_stream_beside_it_completes(url, seed):
    stream = Stream(url)
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "안녕", "max_tokens": 2, "seed": seed}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed"
    assert stream.completed()
    assert metric(url, "kollm:num_requests_waiting") == 0


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), 0])
def test_seeds_at_the_bounds_work_and_n_choices_stay_in_range(url, seed):
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "안녕", "max_tokens": 2, "seed": seed, "n": 3,
                                                   "temperature": 1.0}, timeout=30)
    assert r.status_code == 200 and len(r.json()["choices"]) == 3


def test_a_request_that_fails_in_the_engine_fails_alone(engine):
    """Sampling raises for one request (a token id past the vocabulary: the API refuses it, the engine must
    survive it): that request gets the error; a stream beside it completes; nothing stays in a slot."""
    ids = engine.encode("옛날 옛적에")
    steps: list = []

    def stream() -> None:
        for step in engine.generate(ids, SamplingParams(max_tokens=200, temperature=1.0, seed=3, ignore_eos=True)):
            steps.append(step)

    t = threading.Thread(target=stream)
    t.start()
    wait_for(lambda: steps, what="the stream's first token")
    bad = SamplingParams(max_tokens=5, temperature=1.0, logit_bias={10**7: 1.0})
    with pytest.raises(RuntimeError, match="generation failed"):
        list(engine.generate(ids, bad))
    bad = SamplingParams(max_tokens=5, temperature=1.0, seed=1, grammar="this is not a grammar")
    with pytest.raises(RuntimeError, match="generation failed"):
        list(engine.generate(ids, bad))
    t.join(60)
    assert isinstance(steps[-1], Finish) and steps[-1].reason == "length"
    assert sum(isinstance(s, Token) for s in steps) == 200
    wait_for(lambda: engine.num_running() == 0, what="the slots emptying")


def test_an_engine_failure_is_a_500_or_a_stream_error_event_and_others_go_on(url, monkeypatch):
    import kollm.serve.sequence as seq

    real = seq.next_token

    def flaky(logits, seen, p, gen):
        if p.seed == 666:
            raise ValueError("boom")
        return real(logits, seen, p, gen)

    monkeypatch.setattr(seq, "next_token", flaky)
    stream = Stream(url)
    body = {"prompt": "안녕", "max_tokens": 4, "seed": 666, "temperature": 1.0}
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
    assert r.status_code == 500 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    lines = httpx.post(f"{url}/v1/completions", json={**body, "stream": True}, timeout=30).text.split("\n\n")
    assert "error" in json.loads(lines[-3][6:]) and lines[-2] == "data: [DONE]"
    assert stream.completed()
    assert metric(url, "kollm:num_requests_waiting") == 0


# ---- 2. PII masks cover everything that leaves ----------------------------------------------------------------
def _digit_bias(url: str) -> dict:
    ids = httpx.post(f"{url}/tokenize", json={"prompt": "0123456789", "add_special_tokens": False}).json()["tokens"]
    return {str(t): 100 for t in set(ids)}  # the test model knows no phone numbers: make it write digits


def _no_digits(*texts: str) -> bool:
    """No digit or @ in any text or token (a `bytes:\\xNN` token: in the bytes it stands for)."""
    def shown(t: str) -> str:
        if t.startswith("bytes:"):
            return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", t)).decode("latin-1")
        return t

    return not any(re.search(r"[0-9@]", shown(t)) for t in texts)


@pytest.mark.parametrize("prompt", ["동생 전화번호는 010-", "주민등록번호: 8", "연락처:"])
def test_masked_output_hides_numbers_in_text_logprobs_streams_and_chat(masked, prompt):
    url, engine = masked
    body = {"prompt": prompt, "max_tokens": 13, "temperature": 0, "logprobs": 3, "logit_bias": _digit_bias(url)}
    c = httpx.post(f"{url}/v1/completions", json=body, timeout=30).json()["choices"][0]
    lp = c["logprobs"]
    assert re.fullmatch(r" ?\[(전화번호|주민등록번호|개인정보)\]", c["text"]), c["text"]
    assert _no_digits(c["text"], *lp["tokens"], *(k for top in lp["top_logprobs"] for k in top))
    chunks = httpx.post(f"{url}/v1/completions", json={**body, "stream": True}, timeout=30).text.split("\n\n")
    events = [json.loads(x[6:]) for x in chunks if x.startswith("data: {")]
    streamed = "".join(ch["text"] for e in events for ch in e["choices"])
    assert streamed == c["text"]
    assert _no_digits(*(t for e in events for ch in e["choices"] if ch["logprobs"] for t in ch["logprobs"]["tokens"]))
    chat = httpx.post(f"{url}/v1/chat/completions", json={
        "messages": [{"role": "user", "content": prompt}], "max_tokens": 13, "temperature": 0, "logprobs": True,
        "top_logprobs": 2, "logit_bias": body["logit_bias"]}, timeout=30).json()["choices"][0]
    content = chat["message"]["content"]
    assert _no_digits(content) and "[" in content
    parts = chat["logprobs"]["content"]
    assert bytes(b for t in parts for b in t["bytes"]).decode("utf-8") == content
    assert _no_digits(*(t["token"] for t in parts), *(a["token"] for t in parts for a in t["top_logprobs"]))


def test_masked_echo_hides_the_prompts_numbers_too(masked):
    url, _ = masked
    prompt = "연락처: 010-9876-5432 / kim.minsu@example.co.kr 로 연락"
    c = httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 2, "echo": True, "logprobs": 1,
                                                   "temperature": 0}, timeout=30).json()["choices"][0]
    assert c["text"].startswith("연락처: [전화번호] / [이메일] 로 연락")
    assert _no_digits(c["text"], *c["logprobs"]["tokens"])


def test_unmasked_server_leaves_numbers_alone(url):
    c = httpx.post(f"{url}/v1/completions", json={"prompt": "연락처: 010-9876-5432", "max_tokens": 1, "echo": True},
                   timeout=30).json()["choices"][0]
    assert c["text"].startswith("연락처: 010-9876-5432")


# ---- 3. a client that gives up frees its work ---------------------------------------------------------------
def test_a_dropped_non_streaming_request_stops_generating(url, engine):
    body = {"prompt": "옛날 옛적에", "max_tokens": 480, "n": 8, "ignore_eos": True, "temperature": 1.0}
    before = metric(url, "kollm:generation_tokens_total")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/completions", json=body, timeout=0.5)
    wait_for(lambda: engine.num_running() == 0, what="the dropped request's slots freed")
    assert metric(url, "kollm:generation_tokens_total") - before < 8 * 480 / 2  # not 8 x 480 tokens for nobody


# ---- 5. big bodies never reach the tokenizer; tokenizing never blocks the loop ---------------------------------
def _chunks(n: int):
    yield b'{"prompt": "'
    piece = ("가나다라 " * 2000).encode()
    for _ in range(n // len(piece) + 1):
        yield piece
    yield b'", "max_tokens": 2}'


@pytest.mark.parametrize("size", [2 << 20, 10 << 20])
def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(url, size):
    tokens_before = metric(url, "kollm:prompt_tokens_total")
    r = httpx.post(f"{url}/v1/completions", content=_chunks(size), headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert metric(url, "kollm:prompt_tokens_total") == tokens_before
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "x" * (2 << 20)}, timeout=60)  # Content-Length
    assert r.status_code == 413


def test_a_prompt_that_cannot_fit_is_refused_before_tokenizing(url):
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "가나다라 " * 50_000, "max_tokens": 2}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "at least" in r.json()["error"]["message"]


@pytest.mark.parametrize(("path", "body", "method"), [
    ("/tokenize", {"prompt": "안녕"}, "encode"),
    ("/v1/completions", {"prompt": "안녕", "max_tokens": 1}, "encode"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "안녕"}], "max_tokens": 1}, "chat_prompt"),
])
def test_tokenizing_never_runs_on_the_event_loop(url, engine, monkeypatch, path, body, method):
    """Tokenizing (a 1 MB prompt takes seconds) is held up here until /health has answered: were it on the event
    loop, /health could not answer."""
    release, real = threading.Event(), getattr(engine, method)

    def slow(*args):
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(engine, method, slow)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=httpx.post(f"{url}{path}", json=body, timeout=60)))
    t.start()
    try:
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        release.set()
        t.join(60)
    assert result["r"].status_code == 200


# ---- 6. lone surrogates: a 400 on every route ------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", '{"prompt": "\\ud800", "max_tokens": 2}'),
    ("/v1/completions", '{"prompt": ["ok", "\\udfff"], "max_tokens": 2}'),
    ("/v1/completions", '{"prompt": "ok", "stop": ["\\ud83d"]}'),
    ("/v1/completions", '{"prompt": "ok", "model": "\\ud800"}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800"}]}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udc00"}]}]}'),
    ("/tokenize", '{"prompt": "\\ud800"}'),
])
def test_a_lone_surrogate_is_a_400_on_every_route(url, path, body):
    r = httpx.post(f"{url}{path}", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"], r.text


# ---- 7, 8. echo offsets and byte tokens ------------------------------------------------------------------------
def test_echo_offsets_point_into_the_returned_text(url):
    c = httpx.post(f"{url}/v1/completions", json={"prompt": "서울은 대한민국의 수도 🙂 KTX", "max_tokens": 6,
                                                   "echo": True, "logprobs": 1, "temperature": 0}).json()
    c = c["choices"][0]
    text, lp = c["text"], c["logprobs"]
    assert lp["tokens"][0] == "<|bos|>" and lp["text_offset"][:2] == [0, 0] and text.startswith("서울은")
    whole = [(tok, off) for tok, off in zip(lp["tokens"], lp["text_offset"], strict=True)
             if not tok.startswith("bytes:") and tok != "<|bos|>"]
    assert whole and all(text[off:off + len(tok)] == tok for tok, off in whole)
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][-1] <= len(text)


def test_byte_tokens_show_their_bytes_and_chat_bytes_rebuild_the_content(url):
    c = httpx.post(f"{url}/v1/completions", json={"prompt": "한", "max_tokens": 12, "logprobs": 2,
                                                   "temperature": 1.0, "seed": 5}).json()["choices"][0]
    toks = c["logprobs"]["tokens"] + [k for top in c["logprobs"]["top_logprobs"] for k in top]
    assert not any("\ufffd" in t for t in toks)
    assert any(t.startswith("bytes:\\x") for t in toks)  # the tiny model's 400-token vocabulary splits syllables
    for seed in range(3):
        chat = httpx.post(f"{url}/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "안녕하세요"}], "max_tokens": 12, "temperature": 1.0,
            "seed": seed, "logprobs": True, "top_logprobs": 2}).json()["choices"][0]
        parts, content = chat["logprobs"]["content"], chat["message"]["content"].encode("utf-8")
        joined = bytes(b for t in parts for b in t["bytes"])
        assert joined[:len(content)] == content  # the real bytes, not U+FFFD's
        tail = joined[len(content):]  # a character cut by max_tokens is dropped from the content, not from bytes
        assert not tail or chat["finish_reason"] == "length" and len(tail) < 4 and tail[0] >= 0xC0


# ---- 9. OpenAI compatibility -----------------------------------------------------------------------------------
def test_openai_message_shapes_are_accepted(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    r = client.chat.completions.create(model="kollm-tiny", max_tokens=4, temperature=0, messages=[
        {"role": "developer", "content": "너는 도우미야."},
        {"role": "user", "content": [{"type": "text", "text": "안녕"}, {"type": "text", "text": "반가워"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "서울은?"}])
    assert r.choices[0].message.role == "assistant" and r.model == "kollm-tiny"
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]})
    assert r.status_code == 400 and "image_url" in r.json()["error"]["message"]


@pytest.mark.parametrize(("path", "body", "needle", "code"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "안녕"}], "top_logprobs": 2},
     "top_logprobs needs logprobs", None),
    ("/v1/completions", {"prompt": "안녕", "stream_options": {"include_usage": True}}, "stream = true", None),
    ("/v1/completions", {"prompt": "안녕", "stop": [f"s{i}" for i in range(17)]}, "stop", None),
    ("/v1/completions", {"prompt": "안녕", "stop": "x" * 257}, "stop", None),
    ("/v1/completions", {"prompt": "안녕", "stop": [""]}, "stop", None),
    ("/v1/completions", {"prompt": "안녕", "stop_token_ids": [10**9]}, "stop_token_ids", None),
    ("/v1/completions", {"prompt": "안녕", "stop_token_ids": list(range(65))}, "stop_token_ids", None),
    ("/v1/completions", {"prompt": ""}, "empty", None),
    ("/v1/completions", {"prompt": []}, "empty", None),
    ("/v1/completions", {"prompt": ["안녕", ""]}, "empty", None),
    ("/v1/completions", {"prompt": "안녕", "model": "gpt-5"}, "not served here", "model_not_found"),
    ("/v1/completions", {"prompt": "안녕 " * 400, "max_tokens": 200}, "maximum context", "context_length_exceeded"),
    ("/v1/completions", {"prompt": "안녕", "logit_bias": {"²": 1}}, "logit_bias", None),
    ("/v1/completions", {"prompt": "안녕", "logit_bias": {"1" * 40: 1}}, "logit_bias", None),
])
def test_invalid_openai_requests_are_named_400s(url, path, body, needle, code):
    r = httpx.post(f"{url}{path}", json=body)
    assert r.status_code in (400, 404) and needle in r.json()["error"]["message"], r.text
    assert r.json()["error"]["code"] == code


def test_served_model_names_and_aliases(url):
    assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == ["kollm-tiny", "model"]
    for name in ("kollm-tiny", "model", "/srv/models/tiny"):  # vLLM clients send the model's path
        r = httpx.post(f"{url}/v1/completions", json={"model": name, "prompt": "안녕", "max_tokens": 1})
        assert r.status_code == 200 and r.json()["model"] == "kollm-tiny"


def test_rate_limit_answers_with_its_code(engine):
    with running(create_app(engine, rate_limit=0.01)) as u:
        codes = [httpx.post(f"{u}/v1/completions", json={"prompt": "안녕", "max_tokens": 1}) for _ in range(3)]
        assert codes[-1].status_code == 429 and codes[-1].json()["error"]["code"] == "rate_limit_exceeded"


def test_openapi_documents_400_not_422(url):
    schema = httpx.get(f"{url}/openapi.json").json()
    ops = [op for path in schema["paths"].values() for op in path.values()]
    assert not any("422" in op["responses"] for op in ops)
    posted = [op for op in ops if "requestBody" in op]
    assert posted and all(op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
                          == "#/components/schemas/Error" for op in posted)


# ---- 10. memory goes back when the engine is idle ---------------------------------------------------------------
def test_the_engine_hands_memory_back_when_it_goes_idle(engine, monkeypatch):
    import kollm.serve.engine as eng

    calls = []
    monkeypatch.setattr(eng, "release_memory", lambda: calls.append(1))
    list(engine.generate(engine.encode("안녕"), SamplingParams(max_tokens=3, temperature=0)))
    wait_for(lambda: calls, what="the idle engine releasing memory")

"""The API as its clients use it: the official `openai` client (sync, async, streaming, chat), the log-likelihood
contract of lm-eval's `local-completions` (token ids, echo, logprobs), bad input, cancellation, seeds, UTF-8."""

from __future__ import annotations

import asyncio
import json
import math
import re

import httpx
import openai
import pytest
import torch
from conftest import with_window
from live import running, wait_for
from reference import outside_strings

from kollm.serve.app import create_app
from kollm.serve.engine import Engine, Token


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine.load(tiny_model_dir)


@pytest.fixture(scope="module")
def server(engine):
    with running(create_app(engine)) as url:
        yield url, engine.name


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused")


def test_openai_client_completion(server, client):
    _, name = server
    assert [m.id for m in client.models.list().data] == [name]
    resp = client.completions.create(model=name, prompt="서울은 대한민국의", max_tokens=8, temperature=0.7, seed=1,
                                     extra_body={"top_k": 20, "min_p": 0.01})
    assert resp.object == "text_completion" and len(resp.choices) == 1
    choice = resp.choices[0]
    assert isinstance(choice.text, str) and choice.finish_reason in ("stop", "length")
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 8
    assert resp.usage.model_extra["completion_characters"] == len(choice.text)
    again = client.completions.create(model=name, prompt="서울은 대한민국의", max_tokens=8, temperature=0.7, seed=1,
                                      extra_body={"top_k": 20, "min_p": 0.01})
    assert again.choices[0].text == choice.text  # seeded sampling is reproducible
    many = client.completions.create(model=name, prompt=["한글은", "오늘"], max_tokens=4, n=2, temperature=0)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.choices[0].text == many.choices[1].text  # greedy: same prompt, same text


def test_streaming_gives_the_same_text_sync_and_async(server, client):
    _, name = server
    whole = client.completions.create(model=name, prompt="오늘 날씨가", max_tokens=12, temperature=0)
    chunks = list(client.completions.create(model=name, prompt="오늘 날씨가", max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason

    async def run() -> str:
        aclient = openai.AsyncOpenAI(base_url=client.base_url, api_key="unused")
        stream = await aclient.completions.create(model=name, prompt="오늘 날씨가", max_tokens=12, temperature=0,
                                                  stream=True)
        return "".join([c.choices[0].text async for c in stream])

    assert asyncio.run(run()) == whole.choices[0].text


def test_chat_with_the_tokenizers_template(server, client, engine):
    _, name = server
    messages = [{"role": "user", "content": "안녕?"}]  # the test model's context is 64 tokens
    resp = client.chat.completions.create(model=name, messages=messages, max_tokens=8, temperature=0,
                                          logprobs=True, top_logprobs=2)
    msg = resp.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str)
    lp = resp.choices[0].logprobs.content
    assert len(lp) == resp.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in lp)
    streamed = client.chat.completions.create(model=name, messages=messages, max_tokens=8, temperature=0,
                                              stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == msg.content
    prompt = engine.tokenizer.decode(engine.chat_prompt([{"role": "system", "content": "너는 도우미야."}, *messages]))
    assert prompt.startswith("<|bos|><|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_logprobs_contract_of_lm_eval_local_completions(server, engine):
    """Token-id prompts verbatim, echo + logprobs: prompt token logprobs equal in-process scoring."""
    url, name = server
    ids = engine.encode("서울은 대한민국의 수도이며 한강이 흐른다.")
    body = {"model": name, "prompt": [ids, ids[:5]], "temperature": 0, "max_tokens": 1, "logprobs": 1,
            "seed": 1234, "echo": True}
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    lps = choice["logprobs"]["token_logprobs"]
    assert lps[0] is None and len(lps) == len(ids) + 1
    with torch.no_grad():
        logits = engine.model(torch.tensor([ids])).logits[0].float()
    expected = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert torch.allclose(torch.tensor(lps[1:len(ids)]), expected, atol=1e-4)
    # lm-eval's greedy check: each token's logprob against the best of its top_logprobs
    tops = choice["logprobs"]["top_logprobs"]
    greedy = [lp == max(top.values()) for lp, top in zip(lps[1:], tops[1:], strict=True)]
    argmax = (logits.argmax(-1)[:-1] == torch.tensor(ids[1:])).tolist()
    assert greedy[:len(argmax)] == argmax
    r = httpx.post(f"{url}/v1/completions", json={**body, "prompt": ids, "max_tokens": 0}, timeout=60)
    assert r.status_code == 200 and len(r.json()["choices"][0]["logprobs"]["token_logprobs"]) == len(ids)


def test_lm_eval_local_completions_scores_like_in_process(server, engine):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    url, name = server
    del lm_eval
    # lm-eval tokenizes with the served folder's tokenizer and sends token ids, which the server scores verbatim.
    # (Its API backend adds BOS only through the tokenizer's post-processor, which kollm tokenizers do not have:
    # `kollm eval` prepends BOS itself; here both sides score the same ids without it.)
    lm = LocalCompletionsAPI(base_url=f"{url}/v1/completions", model=name, tokenizer=engine.model.name_or_path,
                             tokenizer_backend="huggingface", num_concurrent=1, max_retries=1)
    pairs = [("다음 리뷰는 긍정인가 부정인가? 배송이 빠르고 좋아요. 답:", " 긍정"),
             ("다음 리뷰는 긍정인가 부정인가? 배송이 빠르고 좋아요. 답:", " 부정"),
             ("한국의 수도는", " 서울이다")]
    reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    served = lm.loglikelihood(reqs)
    in_process = HFLM(pretrained=engine.model.name_or_path, add_bos_token=False, batch_size=1,
                      device="cpu").loglikelihood(reqs)
    for (lp, greedy), (ref, ref_greedy) in zip(served, in_process, strict=True):
        assert math.isclose(lp, ref, abs_tol=1e-4) and greedy == ref_greedy


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"prompt": "안녕", "max_tokens": -1}, 400, "max_tokens"),
    ({"prompt": "안녕", "max_tokens": "many"}, 400, "max_tokens"),
    ({"prompt": "안녕", "n": 100}, 400, "n"),
    ({"prompt": "안녕", "model": "gpt-5"}, 404, "not served here"),
    ({"prompt": "안녕", "best_of": 2}, 400, "unsupported parameter 'best_of'"),
    ({"prompt": "안녕", "max_tokens": 0}, 400, "echo"),
    ({"prompt": [10**9]}, 400, "token ids"),
    ({"prompt": "안녕 " * 400, "max_tokens": 16}, 400, "maximum context length"),
    ({"prompt": "안녕", "logit_bias": {"x": 1}}, 400, "logit_bias"),
    ({"prompt": "안녕", "temperature": 9}, 400, "temperature"),
    ({}, 400, "prompt"),
])
def test_bad_input_is_an_openai_error_never_a_5xx(server, body, status, needle):
    url, _ = server
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] and set(err) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text


def test_malformed_bodies_and_chat_without_template(server, engine):
    url, name = server
    for raw in (b"{not json", "{\"prompt\": \"\xff\"}".encode("latin-1"), b"[1, 2]"):
        r = httpx.post(f"{url}/v1/completions", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "error" in r.json(), raw
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "안녕"}],
                                                        "response_format": {"type": "json_schema",
                                                                            "json_schema": {"name": "x"}}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    saved, engine.tokenizer.chat_template = engine.tokenizer.chat_template, None
    try:
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "안녕"}]})
        assert r.status_code == 400 and "--chat-template" in r.json()["error"]["message"]
    finally:
        engine.tokenizer.chat_template = saved


def test_a_closed_stream_or_a_gone_client_frees_its_slot(server, engine):
    url, name = server
    body = {"model": name, "prompt": "옛날 옛적에", "max_tokens": 2000 - 10, "temperature": 1.0, "seed": 3,
            "stream": True, "ignore_eos": True}
    body["max_tokens"] = engine.max_len - len(engine.encode("옛날 옛적에"))
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 3:
                break
    wait_for(lambda: engine.num_running() == 0, what="the closed stream's slot freed")
    # a non-streaming request whose client goes away is cancelled too
    body = {**body, "stream": False, "n": 8}
    with engine.lock:  # the engine is busy: the client gives up before its answer
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", json=body, timeout=0.5)
        wait_for(lambda: "kollm:num_requests_waiting 0.0" in httpx.get(f"{url}/metrics").text,
                 what="the server noticing the disconnect")
    steps = engine.steps
    wait_for(lambda: engine.num_running() == 0, what="the cancelled requests leaving")
    assert engine.steps - steps < body["max_tokens"] // 2


def test_seeded_output_is_the_same_alone_and_under_load(server):
    url, name = server
    body = {"model": name, "prompt": "이 제품을 써 보니", "max_tokens": 16, "temperature": 1.0, "seed": 42}
    alone = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]

    async def load() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as c:
            others = [c.post(f"{url}/v1/completions", json={**body, "seed": s}) for s in range(4)]
            mine = c.post(f"{url}/v1/completions", json=body)
            res = await asyncio.gather(*others, mine)
        return [x.json()["choices"][0]["text"] for x in res]

    assert asyncio.run(load())[-1] == alone


def test_no_replacement_character_in_sampled_korean(engine):
    """Byte-level tokens that would break UTF-8 are masked; cut-off characters are dropped."""
    from kollm.serve.sampling import SamplingParams

    n = 0
    for seed in range(1000):
        p = SamplingParams(max_tokens=6, temperature=1.5, seed=seed)
        text = "".join(step.text for step in engine.generate(engine.encode("한"), p) if isinstance(step, Token))
        assert "\ufffd" not in text, (seed, text)
        text.encode("utf-8")
        n += 1
    assert n == 1000


def test_tokenize_and_detokenize_round_trip(server):
    url, _ = server
    ids = httpx.post(f"{url}/tokenize", json={"prompt": "한국어 토큰"}).json()["tokens"]
    assert httpx.post(f"{url}/detokenize", json={"tokens": ids}).json()["prompt"].endswith("한국어 토큰")
    info = httpx.get(f"{url}/tokenizer_info").json()
    assert info["bos_token"] == "<|bos|>" and info["chat_template"]
    assert json.loads(httpx.get(f"{url}/health").text)["status"] == "ok"


@pytest.mark.parametrize("fmt", [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "promo", "strict": True, "schema": {
        "type": "object", "properties": {"title": {"type": "string", "maxLength": 20},
                                         "discount": {"type": "integer", "minimum": 0, "maximum": 90}},
        "required": ["title", "discount"], "additionalProperties": False}}},
])
def test_response_format_gives_json_even_from_a_tiny_model(tiny_model_dir, tmp_path, fmt):
    """A model that has never seen JSON still answers with it: the grammar masks every other token."""
    long = with_window(tiny_model_dir, tmp_path / "model", 512)  # room for the JSON
    with running(create_app(Engine.load(long))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        stopped = 0
        for seed in range(4):
            r = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "기획전 문구"}],
                                               response_format=fmt, max_tokens=400, temperature=1.0, seed=seed)
            # laid out as json.dumps does: one space after , and : and no other whitespace to pad with
            assert not re.search(r"\s", re.sub(r"[,:] ", "", outside_strings(r.choices[0].message.content)))
            if r.choices[0].finish_reason != "stop":  # cut by max_tokens inside a long string: still a prefix
                continue
            stopped += 1
            out = json.loads(r.choices[0].message.content)
            assert isinstance(out, dict)
            if fmt["type"] == "json_schema":
                assert set(out) == {"title", "discount"} and 0 <= out["discount"] <= 90 and len(out["title"]) <= 20
        assert stopped >= 2


def test_health_is_503_while_the_model_loads(tiny_model_dir):
    import threading

    gate = threading.Event()

    def load() -> Engine:
        gate.wait(30)
        return Engine.load(tiny_model_dir)

    with running(create_app(load)) as url:
        r = httpx.get(f"{url}/health")
        assert r.status_code == 503 and "loading" in r.json()["error"]["message"] and r.headers["Retry-After"]
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "안녕"}).status_code == 503
        gate.set()
        wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, what="the model loading")
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.mark.slow
def test_sigterm_drains_running_streams_then_exits(tiny_model_dir, tmp_path):
    """`kollm serve` on SIGTERM stops taking connections, lets a running stream finish (up to `drain_timeout` in
    [serve], 30 s by default), then exits."""
    import signal
    import socket
    import subprocess
    import sys

    long = with_window(tiny_model_dir, tmp_path / "model", 512)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # drain_timeout well above the stream's length: on a busy 2-core machine 4 x 300 tokens took over the default
    # 30 s once, and the server rightly cut the stream (what is tested here is that it drains at all)
    recipe = tmp_path / "serve.toml"
    recipe.write_text("[serve]\ndrain_timeout = 300\n")
    proc = subprocess.Popen([sys.executable, "-m", "kollm.cli", "serve", "--model", str(long), "--port", str(port),
                             "--keys-db", str(tmp_path / "keys.db"), "--recipe", str(recipe)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def health() -> int:
            try:
                return httpx.get(f"{url}/health", timeout=5).status_code
            except httpx.TransportError:
                return 0  # not listening (yet, or any more)

        wait_for(lambda: health() == 200, timeout=180, what="kollm serve loading")
        body = {"prompt": "옛날 옛적에", "max_tokens": 300, "n": 4, "stream": True, "ignore_eos": True,
                "temperature": 1.0, "seed": 0}
        finished, done = set(), False
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: health() == 0, what="the server refusing new connections while it drains")
            for line in lines:
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    for c in json.loads(line[6:])["choices"]:
                        if c["finish_reason"]:
                            finished.add(c["index"])
        assert done and finished == set(range(4))
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    finally:
        if proc.poll() is None:
            proc.kill()
        print(proc.stdout.read())

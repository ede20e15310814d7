"""The engine contract (serve/client.py): both engines implement it, the HTTP app and /metrics use nothing else of an
engine, and the API gives the same answers on the batching engine and on transformers' own forward."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import openai
import pytest
from conftest import with_window
from live import running

import kollm.serve
from kollm.serve.app import create_app
from kollm.serve.client import EngineClient
from kollm.serve.engine import Engine
from kollm.serve.hf_engine import HFEngine

SERVE = Path(kollm.serve.__file__).parent
CONTRACT = {n for n in dir(EngineClient) if not n.startswith("_")} | set(EngineClient.__annotations__)


def engine_members_used(path: Path, skip: set[str] = frozenset()) -> set[str]:
    """Attributes read off anything the file calls an engine (`engine.x`, `e.x`, `self.engine.x`, `runner.engine.x`),
    outside the functions in `skip`."""
    used, tree = set(), ast.parse(path.read_text())
    skipped = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in skip
               for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in skipped:
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("engine", "e") or (
                    isinstance(base, ast.Attribute) and base.attr == "engine"):
                used.add(node.attr)
    return used


def test_the_app_and_metrics_use_the_contract_and_nothing_else():
    used = engine_members_used(SERVE / "app.py", skip={"run_server"}) | engine_members_used(SERVE / "metrics.py")
    assert used and used <= CONTRACT, used - CONTRACT
    assert {"agenerate", "encode", "prompt_logprobs", "stats"} <= used


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    return with_window(tiny_model_dir, tmp_path_factory.mktemp("contract") / "model", 256)


@pytest.fixture(scope="module", params=["Engine", "HFEngine"])
def url(request, model):
    engine = Engine.load(model) if request.param == "Engine" else HFEngine.load(model)
    assert isinstance(engine, EngineClient)
    with running(create_app(engine)) as u:
        yield u


@pytest.fixture(scope="module")
def answers():
    return {}  # the first engine's answers, which the second must repeat


def test_both_engines_give_the_same_answers(url, answers):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    got = {}
    for prompt in ("대한민국의 수도는", "오늘 날씨가 좋아서", "한국어"):
        got[prompt] = client.completions.create(model="model", prompt=prompt, max_tokens=12, temperature=0,
                                                logprobs=2).choices[0].text
        stream = client.completions.create(model="model", prompt=prompt, max_tokens=12, temperature=0, stream=True)
        assert "".join(c.choices[0].text for c in stream if c.choices) == got[prompt]
    got["seeded"] = client.completions.create(model="model", prompt="이 제품을", max_tokens=10, temperature=1.0,
                                              seed=7).choices[0].text
    got["chat"] = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "안녕?"}],
                                                 max_tokens=8, temperature=0).choices[0].message.content
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "서울은 대한민국의", "max_tokens": 3, "echo": True,
                                                   "logprobs": 1, "temperature": 0, "n": 2}).json()
    got["echo"] = [c["text"] for c in r["choices"]]
    got["echo_lp"] = [round(x, 3) for x in r["choices"][0]["logprobs"]["token_logprobs"][1:]]
    r = httpx.post(f"{url}/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "기획전"}], "max_tokens": 60, "temperature": 1.0, "seed": 3,
        "response_format": {"type": "json_object"}}).json()
    got["json"] = r["choices"][0]["message"]["content"]
    if r["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(got["json"]), dict)
    metrics = httpx.get(f"{url}/metrics").text
    assert "kollm:kv_cache_usage_perc" in metrics and "kollm:generation_tokens_total" in metrics
    if answers:
        assert got == answers  # the batching engine and transformers' forward agree, token for token
    answers.update(got)


def test_a_client_that_leaves_frees_the_engine(url):
    body = {"prompt": "옛날 옛적에", "max_tokens": 200, "stream": True, "ignore_eos": True, "temperature": 1.0}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 3:
                break
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "안녕", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200  # the next request runs: the left one did not hold the engine to its end

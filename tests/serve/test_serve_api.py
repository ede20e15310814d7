"""The completions endpoint answers the official `openai` client."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from kollm.serve.app import create_app
from kollm.serve.engine import Engine


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    engine = Engine.load(tiny_model_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", engine.name
    srv.should_exit = True
    thread.join(timeout=10)


def test_openai_client_completion(server):
    url, name = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == [name]
    resp = client.completions.create(model=name, prompt="서울은 대한민국의", max_tokens=8, temperature=0.7, seed=1)
    assert resp.object == "text_completion" and len(resp.choices) == 1
    choice = resp.choices[0]
    assert isinstance(choice.text, str) and choice.finish_reason in ("stop", "length")
    assert resp.usage.prompt_tokens > 0
    assert 0 < resp.usage.completion_tokens <= 8
    # seeded sampling is reproducible; n and list prompts give one choice each
    again = client.completions.create(model=name, prompt="서울은 대한민국의", max_tokens=8, temperature=0.7, seed=1)
    assert again.choices[0].text == choice.text
    many = client.completions.create(model=name, prompt=["한글은", "오늘"], max_tokens=4, n=2, temperature=0)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.choices[0].text == many.choices[1].text  # greedy: same prompt, same text


def test_errors_have_openai_shape(server):
    url, _ = server
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "안녕", "max_tokens": -1})
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "안녕", "model": "gpt-5"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="x", prompt="안녕", stream=True)

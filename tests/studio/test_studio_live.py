"""The Studio against a real kollm server (the tiny test model on a loopback port), and the `kollm studio` CLI."""

from __future__ import annotations

import json
import re

import httpx
from conftest import run_kollm
from fastapi.testclient import TestClient

from .helpers import log_in, make_key, make_studio, new_app, run_test_set, sse_events


def test_app_endpoint_and_test_run_on_a_real_server(model_server, tmp_path):
    client = TestClient(make_studio(tmp_path, None, model_url=model_server))
    tok = log_in(client)
    new_app(client, tok)
    key = make_key(client, tok)
    h = {"Authorization": f"Bearer {key}"}
    r = client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "유모챠 추쳔"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["prompt_tokens"] > 50 and body["usage"]["input_characters"] > 50
    assert body["usage"]["completion_tokens"] <= 24 and isinstance(body["output"], str)
    ev = sse_events(client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}, "stream": True}).text)
    done = [e for e in ev if e != "[DONE]" and e["type"] == "done"][0]
    deltas = "".join(e["text"] for e in ev if e != "[DONE]" and e["type"] == "delta")
    assert done["output"] == deltas and done["prompt_tokens"] > 50
    r = client.post("/apps/qc/playground", data={"csrf_token": tok, "version": "1", "in-query": "노트븍"})
    first = sse_events(r.text)[0]
    assert first["type"] == "prompt" and first["prompt_tokens"] > 50  # kollm serve's /tokenize: the token counter
    ts = re.search(r"/apps/qc/tests/(\d+)/run", client.get("/apps/qc/tests").text).group(1)
    r = run_test_set(client, tok, ts, "1")  # a background job (#25): the helper waits for it
    assert r.status_code == 200 and r.text.count('<td class="out">') == 40
    assert re.search(r"40 항목, 오류 0", r.text)


def test_studio_eval_command(model_server, tmp_path):
    out = tmp_path / "scores.json"
    p = run_kollm("studio", "eval", "--model-url", model_server, "--template", "search-query-correction",
                  "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "| search-query-correction (검색어 교정) | 40 | 0 |" in p.stdout and "rouge_l" in p.stdout
    assert json.loads(out.read_text())["search-query-correction"]["summary"]["items"] == 40


def test_cli_errors_are_one_line(tmp_path):
    p = run_kollm("studio", "eval", "--model-url", "http://127.0.0.1:9/v1", "--template", "nope")
    assert p.returncode == 2 and p.stderr.strip().startswith("kollm: error: unknown template 'nope'")
    p = run_kollm("studio", "eval", "--model-url", "http://127.0.0.1:9/v1", "--template", "promo-copy")
    assert p.returncode == 2 and "cannot be reached" in p.stderr and "Traceback" not in p.stderr
    p = run_kollm("studio", "--recipe", str(tmp_path / "missing.toml"))
    assert p.returncode == 2 and "does not exist" in p.stderr
    recipe = tmp_path / "r.toml"
    recipe.write_text("[serve]\nport = 1\n")
    p = run_kollm("studio", "--recipe", str(recipe))
    assert p.returncode == 2 and "does not use the [serve] section" in p.stderr
    assert "model-url" in run_kollm("studio", "--help").stdout


def test_studio_serves_over_http(model_server, tmp_path):
    from live import running

    with running(make_studio(tmp_path, None, model_url=model_server, admin_password="headless-pass")) as url:
        r = httpx.get(f"{url}/health")
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"{url}/static/studio.css").status_code == 200


def test_start_studio_serves_from_a_thread(tmp_path):
    """What the quickstart does after training: the Studio in a thread, the API in the main thread."""
    import socket
    import time

    from kollm.studio import StudioConfig
    from kollm.studio.server import start_studio

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = start_studio(StudioConfig(data=str(tmp_path / "studio"), port=port, model_url="http://127.0.0.1:9/v1"))
    assert url == f"http://127.0.0.1:{port}/"
    for _ in range(200):
        try:
            r = httpx.get(url, follow_redirects=False)
            break
        except httpx.ConnectError:
            time.sleep(0.05)
    assert r.status_code == 303 and r.headers["location"] == "/setup"


def test_json_schema_app_on_a_real_server_answers_valid_json(model_server, tmp_path):
    """kollm serve enforces the schema by constrained decoding: even the tiny model's answer is valid JSON."""
    from .test_studio_api import _editor

    client = TestClient(make_studio(tmp_path, None, model_url=model_server))
    tok = log_in(client)
    new_app(client, tok, "blank", "")
    key = make_key(client, tok, "blank")
    schema = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 3}}, "required": ["q"],
              "additionalProperties": False}
    form = {**_editor(client, "blank"), "csrf_token": tok, "mode": "chat", "json_schema": json.dumps(schema),
            "max_tokens": "200", "temperature": "0.7"}
    assert client.post("/apps/blank/versions", data=form).status_code == 200
    client.post("/apps/blank/labels", data={"csrf_token": tok, "label": "production", "version": "2"})  # release it
    r = client.post("/v1/apps/blank/run", headers={"Authorization": f"Bearer {key}"}, json={"inputs": {"input": "a"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["json_valid"] is True and set(json.loads(body["output"])) == {"q"}


def test_fix_typos_is_judged_by_the_served_model(model_server, studio_model_dir):
    """The app's typo fixing (검색어 교정 has it on): the served model scores each candidate exactly as the model
    in-process does (echoed prompt logprobs), and the prompt holds what those scores choose."""
    import asyncio

    import pytest
    import torch

    from kollm.hangul import pick_switches
    from kollm.model.hf import load_hf_causal_lm
    from kollm.spelling import fix_spelling
    from kollm.studio.apps import AppSpec, Params
    from kollm.studio.client import ModelClient
    from kollm.studio.runner import run_stream
    from kollm.tune.validate import text_logprobs

    client = ModelClient(model_server)
    texts = ["dkdlvhs 케이스 ㅑㅔㅁㅇ", "아이폰 케이스 ㅑㅔㅁㅇ", "dkdlvhs 케이스 ipad", "아이폰 케이스 ipad"]
    served = asyncio.run(client.text_logprobs(texts))
    model, tok = load_hf_causal_lm(str(studio_model_dir))
    assert served == pytest.approx(text_logprobs(model, tok, texts, torch.device("cpu")), abs=2e-3)
    switched = pick_switches(texts[0], served)  # the rules themselves: tests/test_hangul.py, tests/test_spelling.py
    want = fix_spelling(switched, lambda t: asyncio.run(client.text_logprobs(t)))
    spec = AppSpec(template="검색어: {{query}}\n교정:", fix_typos=True, params=Params(max_tokens=2))

    async def first_event() -> dict:
        async for ev in run_stream(client, spec, {"query": texts[0]}, count_prompt=True):
            return ev

    ev = asyncio.run(first_event())
    assert ev["type"] == "prompt" and ev["prompt"] == f"검색어: {want}\n교정:"

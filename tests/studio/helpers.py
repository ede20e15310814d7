"""Helpers for the Studio tests: a scripted OpenAI-compatible model (an httpx transport, no network), a Studio on
a temporary SQLite database, logging in, making apps and keys, reading server-sent events."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

PASSWORD = "correct horse 1"


class FakeModel:
    """A scripted OpenAI-compatible server: answers `reply` (streamed in 3-character chunks), scores `echo`
    requests (Latin letters and, twice as much, lone jamo cost), records requests, refuses `response_format` with
    kollm serve's 400 when `refuse_format` is set."""

    def __init__(self) -> None:
        self.reply = "유모차 추천"
        self.requests: list[dict] = []
        self.refuse_format = False
        self.fail_status: int | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            body = json.loads(request.content)
            return httpx.Response(200, json={"count": len(body["prompt"]), "tokens": []})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "fake"}]})
        body = json.loads(request.content)
        self.requests.append({"path": request.url.path, **body})
        if self.fail_status:
            return httpx.Response(self.fail_status, json={"error": {"message": "scripted failure"}})
        if self.refuse_format and body.get("response_format"):
            return httpx.Response(400, json={"error": {"message": "response_format 'json_schema' is not supported yet",
                                                       "type": "invalid_request_error", "param": "response_format"}})
        if body.get("echo"):  # a scoring request (fix_typos): Latin letters and lone jamo cost
            choices = [{"index": i, "text": t, "logprobs": {"token_logprobs": [None, -float(
                len(re.findall("[A-Za-z]", t)) + 2 * len(re.findall("[ㄱ-ㅣ]", t)))], "text_offset": [0, 0]}}
                for i, t in enumerate(body["prompt"])]
            return httpx.Response(200, json={"id": "x", "choices": choices})
        chat = request.url.path.endswith("/chat/completions")
        usage = {"prompt_tokens": 7, "completion_tokens": len(self.reply), "total_tokens": 7 + len(self.reply)}
        if not body.get("stream"):
            choice = {"index": 0, "finish_reason": "stop",
                      **({"message": {"role": "assistant", "content": self.reply}} if chat else {"text": self.reply})}
            return httpx.Response(200, json={"id": "x", "choices": [choice], "usage": usage})
        chunks = [self.reply[i:i + 3] for i in range(0, len(self.reply), 3)]
        lines = []
        for c in chunks:
            choice = {"index": 0, **({"delta": {"content": c}} if chat else {"text": c})}
            lines.append(f"data: {json.dumps({'choices': [choice]}, ensure_ascii=False)}\n\n")
        lines.append(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n")
        lines.append("data: [DONE]\n\n")
        return httpx.Response(200, content="".join(lines).encode(), headers={"content-type": "text/event-stream"})


MADE: list = []  # the Studios a test made: conftest stops their job workers when it ends


def make_studio(tmp_path: Path, fake: FakeModel | None = None, **cfg: object):
    from kollm.studio import StudioConfig
    from kollm.studio.server import create_studio

    transport = httpx.MockTransport(fake.handler) if fake else None
    conf = {"data": str(tmp_path / "studio"), "model_url": "http://model.test/v1", **cfg}
    app = create_studio(StudioConfig(**conf), transport=transport)
    MADE.append(app)
    return app


def csrf_of(client: TestClient, path: str = "/login") -> str:
    html = client.get(path).text
    return re.search(r'data-csrf="([^"]+)"', html).group(1)


def setup_token(client: TestClient) -> str:
    """The one-time setup token the Studio printed on its console at start (kept on the app for tests)."""
    return client.app.state.setup_token


def log_in(client: TestClient) -> str:
    """Log in (setting the password on first use); returns the session's CSRF token."""
    r = client.get("/")
    if r.url.path == "/setup":
        tok = csrf_of(client, "/setup")
        client.post("/setup", data={"csrf_token": tok, "token": setup_token(client), "password": PASSWORD,
                                    "confirm": PASSWORD})
    else:
        tok = csrf_of(client, "/login")
        client.post("/login", data={"csrf_token": tok, "password": PASSWORD})
    return csrf_of(client, "/")


def new_app(client: TestClient, tok: str, slug: str = "qc", template: str = "search-query-correction",
            name: str = "") -> httpx.Response:
    return client.post("/apps", data={"csrf_token": tok, "slug": slug, "template": template, "name": name})


def make_key(client: TestClient, tok: str, slug: str = "qc") -> str:
    html = client.post(f"/apps/{slug}/keys", data={"csrf_token": tok, "name": "service"}).text
    return re.search(r'id="new-key">([^<]+)<', html).group(1)


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        block = block.strip()
        if block.startswith("data:"):
            data = block[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def required_in_ci(reason: str) -> None:
    """Skip locally, fail in CI (CI must not silently skip the browser or Postgres tests)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required when CI is set)")
    pytest.skip(reason)


def run_test_set(client: TestClient, tok: str, ts: str, version: str = "1", timeout: float = 300,
                 **form: str) -> httpx.Response:
    """Run a test set as the page's button does (a background job, #25), wait for the job, and return the run's
    page (or the job page, when the job did not finish as done)."""
    import time

    r = client.post(f"/apps/qc/tests/{ts}/run", data={"csrf_token": tok, "version": version, **form},
                    follow_redirects=False)
    if r.status_code != 303:
        return r
    job = r.headers["location"].split("?")[0]
    deadline = time.time() + timeout
    while (v := client.get(f"{job}/status").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, v
        time.sleep(0.05)
    return client.get(v["result"]["url"]) if v["status"] == "done" else client.get(job)


def browser_log_in(page, url: str, password: str = PASSWORD) -> None:
    """Log the admin in through the Studio's login form (Playwright page)."""
    page.goto(url + "/login")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def browser_new_app(page, template: str, slug: str) -> None:
    """Create an app from a built-in template on the home page and land on its editor."""
    page.select_option("#template", template)
    page.fill("#slug", slug)
    page.click("text=만들기")
    page.wait_for_url(f"**/apps/{slug}")

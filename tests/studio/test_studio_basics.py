"""The missing basics (#25): server-side sessions that logout and password changes revoke, login throttling per
client address, users with roles, app archive and delete, test-set delete, checked uploads (column mapping, CP949),
the production label, the key page's post/redirect/get, the section-true diff, call traces, the API's output for
people, the playground's history, the model server's status and a handler that does not block the others.

The database-heavy ones run on SQLite and on Postgres (`KOLLM_TEST_POSTGRES_URL`; required in CI)."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kollm.errors import KollmError
from kollm.studio.testsets import parse_mapping, parse_upload

from .helpers import PASSWORD, FakeModel, csrf_of, log_in, make_key, make_studio, new_app, sse_events


def _studio(tmp_path, fake, db_url=None, **cfg):
    if db_url:
        cfg["db"] = db_url
    return make_studio(tmp_path, fake, **cfg)


def _login(client: TestClient, name: str, password: str) -> httpx.Response:
    return client.post("/login", data={"csrf_token": csrf_of(client, "/login"), "name": name, "password": password})


def _key_of(html: str) -> str | None:
    m = re.search(r'id="new-key">([^<]+)<', html)
    return m.group(1) if m else None


# --- sessions -----------------------------------------------------------------------------------------------------
def test_logout_revokes_the_session_on_the_server(tmp_path, db_url):
    fake = FakeModel()
    client = TestClient(_studio(tmp_path, fake, db_url), raise_server_exceptions=False)
    tok = log_in(client)
    stolen = TestClient(client.app)
    stolen.cookies.set("kollm_studio", client.cookies["kollm_studio"])  # a copied cookie works ...
    assert stolen.get("/").url.path == "/"
    client.post("/logout", data={"csrf_token": tok})
    # ... until its owner logs out: the row is gone, so the copy is nothing (a signed cookie would still work)
    assert stolen.get("/", follow_redirects=False).headers["location"] == "/login"


def test_a_password_change_ends_every_session_of_that_user_only(tmp_path, db_url):
    fake = FakeModel()
    client = TestClient(_studio(tmp_path, fake, db_url), raise_server_exceptions=False)
    tok = log_in(client)
    client.post("/users", data={"csrf_token": tok, "name": "mina", "role": "editor", "password": "mina pass 1",
                                "confirm": "mina pass 1"})
    mina, admin2 = TestClient(client.app), TestClient(client.app)
    assert _login(mina, "mina", "mina pass 1").url.path == "/"
    assert _login(admin2, "admin", PASSWORD).url.path == "/"
    new = "a new password 2"
    r = client.post("/password", data={"csrf_token": tok, "current": PASSWORD, "password": new, "confirm": new})
    assert r.url.path == "/password" and client.get("/").url.path == "/"
    assert admin2.get("/", follow_redirects=False).headers["location"] == "/login"  # the admin's other session
    assert mina.get("/").url.path == "/"  # another user's session is not touched


# --- login throttling ---------------------------------------------------------------------------------------------
def test_one_guessing_address_does_not_lock_the_admin_out(tmp_path, fake_model):
    from kollm.studio.web import LOGIN_ATTEMPTS

    app = make_studio(tmp_path, fake_model, admin_password="headless-pass")
    attacker = TestClient(app, client=("203.0.113.9", 4000), raise_server_exceptions=False)
    admin = TestClient(app, client=("192.0.2.1", 5000), raise_server_exceptions=False)
    tok = csrf_of(attacker)
    for _ in range(LOGIN_ATTEMPTS):
        assert attacker.post("/login", data={"csrf_token": tok, "password": "guess"}).status_code == 401
    r = attacker.post("/login", data={"csrf_token": tok, "password": "headless-pass"})
    assert r.status_code == 429 and "너무 많습니다" in r.text  # the right password too: the address waits
    assert _login(admin, "admin", "headless-pass").url.path == "/"  # the admin, elsewhere, gets in


def test_setup_token_guessing_is_throttled_too(tmp_path, fake_model):
    from .helpers import setup_token

    app = make_studio(tmp_path, fake_model, login_attempts=3)
    guesser = TestClient(app, client=("203.0.113.9", 4000), raise_server_exceptions=False)
    tok = csrf_of(guesser, "/setup")
    form = {"csrf_token": tok, "password": PASSWORD, "confirm": PASSWORD}
    for _ in range(3):
        assert guesser.post("/setup", data={**form, "token": "guess"}).status_code == 403
    assert guesser.post("/setup", data={**form, "token": setup_token(guesser)}).status_code == 429


# --- roles --------------------------------------------------------------------------------------------------------
def test_roles_viewer_reads_editor_edits_admin_manages(tmp_path, db_url):
    fake = FakeModel()
    client = TestClient(_studio(tmp_path, fake, db_url), raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    for name, role in (("vera", "viewer"), ("eddie", "editor")):
        r = client.post("/users", data={"csrf_token": tok, "name": name, "role": role, "password": "pass word 1",
                                        "confirm": "pass word 1"})
        assert r.status_code == 200 and name in r.text
    viewer, editor = TestClient(client.app, raise_server_exceptions=False), TestClient(client.app,
                                                                                      raise_server_exceptions=False)
    _login(viewer, "vera", "pass word 1")
    _login(editor, "eddie", "pass word 1")
    vtok, etok = csrf_of(viewer, "/"), csrf_of(editor, "/")
    # a viewer reads pages but changes nothing (and sees no forms to)
    assert viewer.get("/apps/qc").status_code == 200 and "새 앱" not in viewer.get("/").text
    for path, data in (("/apps", {"slug": "x", "template": ""}), ("/apps/qc/keys", {"name": "k"}),
                       ("/apps/qc/labels", {"label": "staging", "version": "1"}), ("/apps/qc/archive", {})):
        r = viewer.post(path, data={"csrf_token": vtok, **data})
        assert r.status_code == 403 and "editor" in r.text, path
    # an editor edits apps, but neither manages users nor deletes an app for good
    assert new_app(editor, etok, "ed", "").status_code == 200
    assert editor.get("/users").status_code == 403
    r = editor.post("/apps/ed/delete", data={"csrf_token": etok, "confirm": "ed"})
    assert r.status_code == 403 and "admin" in r.text
    assert 'href="/users"' not in editor.get("/").text and 'href="/users"' in client.get("/").text
    # a role change applies at once (the user's sessions end); the last admin stays an admin
    client.post("/users/eddie/role", data={"csrf_token": tok, "role": "viewer"})
    assert editor.get("/", follow_redirects=False).headers["location"] == "/login"
    r = client.post("/users/admin/role", data={"csrf_token": tok, "role": "viewer"})
    assert r.status_code == 400 and "마지막 관리자" in r.text
    r = client.post("/users", data={"csrf_token": tok, "name": "Bad Name", "role": "editor",
                                    "password": "pass word 1", "confirm": "pass word 1"})
    assert r.status_code == 400
    client.post("/users/vera/delete", data={"csrf_token": tok})
    assert viewer.get("/", follow_redirects=False).headers["location"] == "/login"
    assert _login(viewer, "vera", "pass word 1").status_code == 401


# --- apps: archive, delete; test sets -----------------------------------------------------------------------------
def test_archive_revokes_keys_restore_and_delete(tmp_path, db_url):
    fake = FakeModel()
    client = TestClient(_studio(tmp_path, fake, db_url), raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    key = make_key(client, tok)
    h = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}}).status_code == 200
    client.post("/apps/qc/archive", data={"csrf_token": tok})
    home = client.get("/").text
    assert 'id="archived"' in home and 'href="/apps/qc"' not in home
    assert client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}}).status_code == 401
    assert "사용 중" not in client.get("/apps/qc/keys").text  # every key revoked
    client.post("/apps/qc/restore", data={"csrf_token": tok})
    assert 'href="/apps/qc"' in client.get("/").text
    assert client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}}).status_code == 401
    key2 = make_key(client, tok)
    assert client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key2}"},
                       json={"inputs": {"query": "a"}}).status_code == 200
    # delete: the app id typed again, then everything of the app is gone (cascade)
    r = client.post("/apps/qc/delete", data={"csrf_token": tok, "confirm": "wrong"})
    assert r.status_code == 400 and "qc" in r.text
    assert client.post("/apps/qc/delete", data={"csrf_token": tok, "confirm": "qc"}).url.path == "/"
    assert client.get("/apps/qc").status_code == 404
    assert new_app(client, tok).status_code == 200  # the id is free again; nothing of the old app is left
    assert "사용 중" not in client.get("/apps/qc/keys").text and client.get("/apps/qc/logs/1").status_code == 404


def test_a_test_set_is_deleted(studio):
    client, tok, _ = studio
    new_app(client, tok)
    ts = re.search(r"/apps/qc/tests/(\d+)/delete", client.get("/apps/qc/tests").text).group(1)
    assert client.post(f"/apps/qc/tests/{ts}/delete", data={"csrf_token": tok}).status_code == 200
    assert f"/apps/qc/tests/{ts}/" not in client.get("/apps/qc/tests").text
    assert client.post(f"/apps/qc/tests/{ts}/delete", data={"csrf_token": tok}).status_code == 404


# --- uploads ------------------------------------------------------------------------------------------------------
def _upload(client, tok, name, data, mapping=""):
    return client.post("/apps/qc/tests", data={"csrf_token": tok, "name": "", "mapping": mapping},
                       files={"file": (name, data, "text/csv")})


def test_uploads_are_checked_and_columns_can_be_mapped(studio):
    client, tok, _ = studio
    new_app(client, tok)  # the template's variable is {{query}}
    korean = "검색어,정답\n유모챠,유모차\n노트북 가방,노트북 가방\n"
    r = _upload(client, tok, "k.csv", korean.encode())
    assert r.status_code == 400 and "query" in r.text and "검색어" in r.text and 'id="upload-error"' in r.text
    assert "검색어 = 검색어" in r.text  # the file's columns, ready to map
    r = _upload(client, tok, "k.csv", "query\n유모챠\n".encode())
    assert r.status_code == 400 and "expected" in r.text  # nothing to score by
    r = _upload(client, tok, "k.csv", "query,expected,note\n유모챠,유모차,x\n".encode())
    assert r.status_code == 400 and "note" in r.text  # a column the template does not have
    # mapped (and in CP949, Korean Excel's "CSV"), it is accepted
    r = _upload(client, tok, "k.csv", korean.encode("cp949"), mapping="검색어 = query\n정답 -> expected")
    assert r.status_code == 200 and r.url.path == "/apps/qc/tests"
    r = _upload(client, tok, "n.csv", "query,expected,note\n유모챠,유모차,x\n".encode(), mapping="note = -")
    assert r.status_code == 200


def test_parse_upload_mapping_and_encodings():
    data = "검색어,정답\n유모챠,유모차\n".encode("euc-kr")
    items = parse_upload("t.csv", data, variables=["query"], mapping=parse_mapping("검색어 → query\n정답=expected"))
    assert items[0]["inputs"] == {"query": "유모챠"} and items[0]["expected"] == "유모차"
    utf8 = "\ufeffquery,expected\n가,나\n".encode()
    assert parse_upload("t.csv", utf8, variables=["query"])[0]["inputs"] == {"query": "가"}
    jsonl = json.dumps({"inputs": {"검색어": "가"}, "expected": "나"}, ensure_ascii=False).encode()
    assert parse_upload("t.jsonl", jsonl, variables=["query"], mapping={"검색어": "query"})[0]["inputs"] == {
        "query": "가"}
    with pytest.raises(KollmError, match="query"):
        parse_upload("t.jsonl", jsonl, variables=["query"])
    with pytest.raises(KollmError, match="열 연결"):
        parse_mapping("검색어 query")
    # without variables (the built-in sets, the CLI), only the file's own shape is checked
    assert parse_upload("t.csv", b"a\n1\n")[0]["inputs"] == {"a": "1"}


# --- labels and the endpoint --------------------------------------------------------------------------------------
def test_the_endpoint_serves_production_and_never_latest_implicitly(tmp_path, db_url):
    fake = FakeModel()
    client = TestClient(_studio(tmp_path, fake, db_url), raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    assert "production → v1" in client.get("/").text  # a new app has the label at once
    key = make_key(client, tok)
    h = {"Authorization": f"Bearer {key}"}
    form = {"csrf_token": tok, "template": "검색어: {{query}}\n교정:", "max_tokens": "32", "mode": "completion"}
    assert client.post("/apps/qc/versions", data=form).url.path == "/apps/qc/versions/2"
    r = client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}})
    assert r.json()["version"] == 1  # a saved draft does not change the live API
    assert client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}, "label": "latest"}).json()[
        "version"] == 2  # only when asked for by name
    # an app without the label (e.g. made before it was set at creation) answers a clear error until one is set
    engine = sa.create_engine(db_url or f"sqlite:///{tmp_path / 'studio' / 'studio.db'}")
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM labels"))
    engine.dispose()
    r = client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}})
    assert r.status_code == 404 and "production" in r.json()["error"]["message"]
    client.post("/apps/qc/labels", data={"csrf_token": tok, "label": "production", "version": "2"})
    assert client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}}).json()["version"] == 2


def test_the_endpoint_runs_only_on_its_versions_model(studio):
    client, tok, fake = studio
    new_app(client, tok, "blank", "")
    key = make_key(client, tok, "blank")
    h = {"Authorization": f"Bearer {key}"}
    r = client.post("/v1/apps/blank/run", headers=h, json={"inputs": {"input": "a"}, "model": "big-model"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert not fake.requests  # refused before any model call
    # a version that names its model (a tuned adapter) runs on it; sending that same name is fine
    form = {"csrf_token": tok, "template": "{{input}}", "max_tokens": "16", "mode": "completion",
            "spec_model": "adapter-1"}
    client.post("/apps/blank/versions", data=form)
    client.post("/apps/blank/labels", data={"csrf_token": tok, "label": "production", "version": "2"})
    for body in ({"inputs": {"input": "a"}}, {"inputs": {"input": "a"}, "model": "adapter-1"}):
        assert client.post("/v1/apps/blank/run", headers=h, json=body).status_code == 200
        assert fake.requests[-1]["model"] == "adapter-1"
    assert client.post("/v1/apps/blank/run", headers=h, json={"inputs": {"input": "a"}, "model": ""}).status_code == 200


def test_app_keys_are_rate_limited_per_key(tmp_path, fake_model):
    client = TestClient(make_studio(tmp_path, fake_model, rate_limit_per_minute=2), raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    k1, k2 = make_key(client, tok), make_key(client, tok)
    body = {"inputs": {"query": "a"}}
    for _ in range(2):
        assert client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {k1}"}, json=body).status_code == 200
    r = client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {k1}"}, json=body)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {k2}"}, json=body).status_code == 200
    assert client.post("/v1/apps/qc/run", headers={"Authorization": "Bearer kst-x"}, json=body).status_code == 401


def test_api_output_has_no_leading_space_and_pii_labels(studio):
    client, tok, fake = studio
    new_app(client, tok)
    key = make_key(client, tok)
    h = {"Authorization": f"Bearer {key}"}
    fake.reply = "  연락처는 <|phone|>, 메일은 <|email|>"
    r = client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"}})
    assert r.json()["output"] == "연락처는 [전화번호], 메일은 [이메일]"
    # streamed in 3-character chunks, which split the placeholders: still labels, and no leading space
    events = sse_events(client.post("/v1/apps/qc/run", headers=h, json={"inputs": {"query": "a"},
                                                                          "stream": True}).text)
    text = "".join(e["text"] for e in events if isinstance(e, dict) and e.get("type") == "delta")
    assert text == "연락처는 [전화번호], 메일은 [이메일]"
    assert [e for e in events if isinstance(e, dict) and e.get("type") == "done"][0]["output"] == text


# --- keys: post/redirect/get --------------------------------------------------------------------------------------
def test_the_key_page_shows_a_new_key_once_and_a_reload_makes_no_second_key(studio):
    client, tok, _ = studio
    new_app(client, tok)
    r = client.post("/apps/qc/keys", data={"csrf_token": tok, "name": "svc"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/apps/qc/keys"
    page = client.get("/apps/qc/keys")
    key = _key_of(page.text)
    assert key and key.startswith("kst-") and page.headers["cache-control"] == "no-store"
    assert 'data-copy="new-key"' in page.text  # the copy button
    reload = client.get("/apps/qc/keys").text  # a reload: a GET, no second key, and the key is not shown again
    assert _key_of(reload) is None and key not in reload and reload.count("사용 중") == 1


# --- diff ---------------------------------------------------------------------------------------------------------
def test_the_diff_names_each_hunks_section_and_has_no_blank_lines(studio):
    client, tok, _ = studio
    new_app(client, tok, "blank", "")
    form = {"csrf_token": tok, "template": "질문: {{input}}", "instruction": "줄1\n줄2\n줄3", "max_tokens": "64",
            "mode": "completion"}
    client.post("/apps/blank/versions", data=form)
    r = client.post("/apps/blank/versions", data={**form, "template": "질문: {{input}}\n답:", "temperature": "0.3"})
    html = r.text
    pre = re.search(r'<pre class="diff" id="diff">(.*?)</pre>', html, re.S).group(1)
    assert "\n" not in pre  # one block span per line and nothing between them: no blank line after each
    hunks = re.findall(r'<span class="hunk">(@@[^<]*)</span>', pre)
    assert len(hunks) == 2 and hunks[0].endswith("[template]") and hunks[1].endswith("[parameters]")
    assert '<span class="add">+답:</span>' in pre and "줄1" not in pre  # the instruction is unchanged


# --- traces, history, status --------------------------------------------------------------------------------------
def test_logs_show_each_calls_input_prompt_and_output(studio):
    client, tok, fake = studio
    new_app(client, tok)
    key = make_key(client, tok)
    client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"}, json={"inputs": {"query": "아이펀"}})
    logs = client.get("/apps/qc/logs").text
    link = re.search(r'data-href="(/apps/qc/logs/\d+)"', logs).group(1)
    page = client.get(link).text
    prompt = re.search(r'id="trace-prompt">(.*?)</pre>', page, re.S).group(1)
    assert "아이펀" in prompt and "유모챠" in prompt  # the few-shot prompt as sent
    assert re.search(r'id="trace-output">유모차 추천</pre>', page)
    assert "프롬프트 7 + 출력" in page


def test_playground_history_is_per_user(studio):
    client, tok, fake = studio
    new_app(client, tok)
    for q in ("첫째", "둘째"):
        form = {"csrf_token": tok, "version": "1", "in-query": q}
        assert client.post("/apps/qc/playground", data=form).status_code == 200
    runs = client.get("/apps/qc/playground/history").json()["data"]
    assert [r["inputs"]["query"] for r in runs] == ["둘째", "첫째"] and runs[0]["output"] == fake.reply
    client.post("/users", data={"csrf_token": tok, "name": "other", "role": "editor", "password": "pass word 1",
                                "confirm": "pass word 1"})
    other = TestClient(client.app)
    _login(other, "other", "pass word 1")
    assert other.get("/apps/qc/playground/history").json()["data"] == []
    assert 'id="stop"' in client.get("/apps/qc").text


def test_the_home_page_shows_the_model_servers_status(studio, tmp_path):
    client, tok, _ = studio
    assert 'id="model-status"' in client.get("/").text
    st = client.get("/model-status").json()
    assert st["reachable"] is True and st["models"] == ["fake"] and st["latency_ms"] >= 0
    down = TestClient(make_studio(tmp_path / "down", None, model_url="http://127.0.0.1:9/v1"))
    log_in(down)
    st = down.get("/model-status").json()
    assert st["reachable"] is False and "127.0.0.1:9" in st["error"]


# --- the event loop -----------------------------------------------------------------------------------------------
def test_a_slow_handler_does_not_block_other_requests(tmp_path, fake_model, monkeypatch):
    """A login whose password check takes 1.5 s (scrypt on a loaded machine, a slow database): another user's
    request is answered meanwhile, because the handler runs in a worker thread, not on the event loop."""
    from live import running

    import kollm.studio.accounts as accounts

    real = accounts.check_password

    def slow(password: str, stored: str) -> bool:
        time.sleep(1.5)  # blocking, as scrypt or a database call is
        return real(password, stored)

    monkeypatch.setattr(accounts, "check_password", slow)
    with running(make_studio(tmp_path, fake_model, admin_password="headless-pass")) as url:
        with httpx.Client(base_url=url) as c:
            tok = re.search(r'data-csrf="([^"]+)"', c.get("/login").text).group(1)
            done = {}

            def log_in_slowly() -> None:
                done["status"] = c.post("/login", data={"csrf_token": tok, "password": "headless-pass"}).status_code

            t = threading.Thread(target=log_in_slowly)
            t.start()
            time.sleep(0.3)  # the login is inside its slow check now
            start = time.perf_counter()
            assert httpx.get(f"{url}/health").status_code == 200
            waited = time.perf_counter() - start
            t.join()
    assert done["status"] == 303 or done["status"] == 200
    assert waited < 1.0, f"/health waited {waited:.2f} s behind the slow login"


def test_scoring_runs_off_the_event_loop(monkeypatch):
    """Kiwi's scoring in a test run is CPU work: done in a worker thread, the loop keeps ticking meanwhile."""
    import asyncio

    import kollm.studio.testsets as testsets

    def slow_score(item, output, spec=None):
        time.sleep(0.5)
        return {"exact": 1.0}

    monkeypatch.setattr(testsets, "score", slow_score)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        assert await testsets.scored({"expected": "a"}, "a") == {"exact": 1.0}
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10  # 0.5 s of scoring, ~25 ticks; a blocked loop would tick 0-1 times


# --- migration from 0001 ------------------------------------------------------------------------------------------
def test_a_0001_database_upgrades_with_its_admin(tmp_path, db_url):
    """A Studio database made before users (0001: one admin password in settings) upgrades: the admin logs in
    as `admin` with the old password; the old app keeps working once its production label is set."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    import kollm.studio.db as db
    from kollm.studio.security import hash_password

    url = db_url or f"sqlite:///{tmp_path / 'studio' / 'studio.db'}"
    (tmp_path / "studio").mkdir(exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "0001")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO settings (key, value) VALUES ('admin_password', :h)"),
                  {"h": hash_password("old password 1")})
        c.execute(sa.text("INSERT INTO apps (slug, name, created) VALUES ('old', 'old', 0)"))
        app_id = c.execute(sa.text("SELECT id FROM apps")).scalar()
        c.execute(sa.text("INSERT INTO versions (app_id, number, spec, note, created) VALUES (:a, 1, :s, '', 0)"),
                  {"a": app_id, "s": json.dumps({"template": "{{input}}"})})
        c.execute(sa.text("INSERT INTO usage_logs (app_id, version, source, created, latency_ms, prompt_tokens, "
                          "completion_tokens, input_chars, output_chars, error) VALUES (:a, 1, 'api', 0, 1, 1, 1, "
                          "1, 1, '')"), {"a": app_id})
    engine.dispose()
    fake = FakeModel()
    client = TestClient(_studio(tmp_path, fake, db_url), raise_server_exceptions=False)
    assert client.app.state.setup_token is None  # the admin exists: no setup
    assert _login(client, "admin", "old password 1").url.path == "/"
    tok = csrf_of(client, "/")
    assert client.get("/apps/old/logs").status_code == 200 and client.get("/apps/old/logs/1").status_code == 200
    key = make_key(client, tok, "old")
    h = {"Authorization": f"Bearer {key}"}
    r = client.post("/v1/apps/old/run", headers=h, json={"inputs": {"input": "a"}})
    assert r.status_code == 404 and "production" in r.json()["error"]["message"]
    client.post("/apps/old/labels", data={"csrf_token": tok, "label": "production", "version": "1"})
    assert client.post("/v1/apps/old/run", headers=h, json={"inputs": {"input": "a"}}).status_code == 200
    # and back down to 0001: the admin password returns to settings
    command.downgrade(cfg, "0001")
    engine = sa.create_engine(url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT value FROM settings WHERE key = 'admin_password'")).scalar().startswith(
            "scrypt$")
    engine.dispose()


def test_an_expired_session_is_a_login_no_more(studio, tmp_path):
    client, _, _ = studio
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'studio' / 'studio.db'}")
    with engine.begin() as c:
        c.execute(sa.text("UPDATE sessions SET expires = 0"))
    engine.dispose()
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_the_throttle_forgets_old_events_and_bounds_its_memory():
    from kollm.studio.security import Throttle

    t = Throttle(2, window=0.2, max_keys=10)
    assert t.take("a") == 0 and t.take("a") == 0 and t.take("a") > 0
    time.sleep(0.25)
    assert t.wait("a") == 0  # the window slid past
    for i in range(100):
        t.add(f"addr-{i}")
    assert len(t.events) <= 10


def test_the_message_catalogue_is_whole():
    """Every key a Studio module uses exists, and its Korean and English texts take the same fields."""
    import string
    from pathlib import Path

    import kollm.studio
    from kollm.studio.messages import MESSAGES, msg

    used = set()
    for path in Path(kollm.studio.__file__).parent.rglob("*.py"):
        used |= set(re.findall(r'msg\("([a-z_.]+)"', path.read_text(encoding="utf-8")))
    assert used <= set(MESSAGES), used - set(MESSAGES)
    for key, (ko, en) in MESSAGES.items():
        fields = [{f for _, f, _, _ in string.Formatter().parse(t) if f} for t in (ko, en)]
        assert fields[0] == fields[1], key
    assert msg("password.short", n=8) == "비밀번호는 8자 이상이어야 합니다"
    assert msg("password.short", lang="en", n=8) == "the password needs at least 8 characters"
    with pytest.raises(KeyError):
        msg("no.such.key")

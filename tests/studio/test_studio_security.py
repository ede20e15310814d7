"""The Studio's security list: login required, CSRF on every state-changing request, escaping of prompts and
outputs, upload limits, no path traversal, keys shown once and stored hashed, passwords hashed, cookie flags."""

from __future__ import annotations

import hashlib
import re
import sqlite3

import pytest
from fastapi.testclient import TestClient

from .helpers import PASSWORD, csrf_of, log_in, make_key, make_studio, new_app, run_test_set, setup_token

GET_ROUTES = ["/", "/apps/qc", "/apps/qc?version=1", "/apps/qc/versions/1", "/apps/qc/compare", "/apps/qc/keys",
              "/apps/qc/logs", "/apps/qc/tests", "/apps/qc/runs/1", "/apps/qc/runs/1/export",
              "/apps/qc/runs/compare?a=1&b=1", "/password",
              "/jobs", "/jobs/1", "/jobs/1/status", "/apps/qc/training", "/apps/qc/training/export", "/apps/qc/tune",
              "/users", "/model-status", "/apps/qc/playground/history"]
POST_ROUTES = ["/apps", "/apps/qc/versions", "/apps/qc/labels", "/apps/qc/playground", "/apps/qc/keys",
               "/apps/qc/keys/1/revoke", "/apps/qc/tests", "/apps/qc/tests/1/run",
               "/jobs/1/cancel", "/apps/qc/runs/1/feedback", "/apps/qc/tune", "/apps/qc/feedback/1/delete",
               "/apps/qc/tests/1/delete", "/apps/qc/archive", "/apps/qc/restore", "/apps/qc/delete", "/users",
               "/users/admin/role", "/users/admin/delete", "/apps/qc/extract", "/password", "/logout"]
SCRIPT = "<script>alert('x')</script>"


def _run_once(client, tok):
    ts = re.search(r"/apps/qc/tests/(\d+)/run", client.get("/apps/qc/tests").text).group(1)
    return run_test_set(client, tok, ts, "1")  # a background job (#25): the helper waits for it


def test_every_page_and_action_needs_a_login(studio, tmp_path):
    client, tok, _ = studio
    new_app(client, tok)
    make_key(client, tok)
    _run_once(client, tok)
    anon = TestClient(client.app, raise_server_exceptions=False)
    for path in GET_ROUTES:
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
        assert client.get(path).status_code == 200, path  # and the logged-in client does see it
    tok_anon = csrf_of(anon, "/login")  # a valid CSRF token of an anonymous session is not a login
    for path in POST_ROUTES[:-1]:
        r = anon.post(path, data={"csrf_token": tok_anon}, follow_redirects=False)
        assert r.status_code in (303, 401), path
        if path.endswith("/playground"):
            assert r.json()["error"]["type"] == "authentication_error"
    # the app endpoint needs an app key, not a session
    assert client.post("/v1/apps/qc/run", json={"inputs": {"query": "a"}}).status_code == 401


def test_every_state_changing_request_needs_the_csrf_token(studio):
    client, tok, _ = studio
    new_app(client, tok)
    before = client.get("/apps/qc").text
    for path in POST_ROUTES:
        for extra in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            r = client.post(path, data={"slug": "x", "label": "production", "version": "1", "name": "k", **extra})
            assert r.status_code == 403, (path, extra)
            assert "보안 토큰" in r.text
    r = client.post("/apps/qc/playground", data={"in-query": "a"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    # nothing changed, and the session is still logged in
    assert "v2" not in client.get("/apps/qc").text and client.get("/apps/qc").text.count("v1") == before.count("v1")
    assert client.get("/apps/x").status_code == 404
    # the login form is protected too (login CSRF)
    anon = TestClient(client.app)
    assert anon.post("/login", data={"password": PASSWORD}).status_code == 403


def test_script_in_prompts_and_outputs_shows_as_text(studio):
    client, tok, fake = studio
    new_app(client, tok, name=SCRIPT)
    form_page = client.get("/apps/qc").text
    html = form_page[form_page.index('id="editor"'):]
    fields = dict(re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', html[: html.index("</form>")], re.S))
    import html as h

    form = {k: h.unescape(v) for k, v in fields.items()}
    form.update({"csrf_token": tok, "instruction": SCRIPT, "ex-0-output": SCRIPT, "note": SCRIPT, "mode": "completion",
                 "temperature": "0", "top_p": "1", "top_k": "0", "repetition_penalty": "1", "max_tokens": "8"})
    assert client.post("/apps/qc/versions", data=form).status_code == 200
    fake.reply = SCRIPT + "<img src=x onerror=alert(1)>"
    _run_once(client, tok)
    key = make_key(client, tok)
    client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"}, json={"inputs": {"query": SCRIPT}})
    fake.fail_status = 500
    client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"}, json={"inputs": {"query": SCRIPT}})
    pages = ["/", "/apps/qc", "/apps/qc/versions/2", "/apps/qc/versions/2?against=1", "/apps/qc/tests",
             "/apps/qc/runs/1", "/apps/qc/logs", "/apps/qc/compare", "/apps/qc/keys"]
    for path in pages:
        text = client.get(path).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in client.get("/apps/qc/runs/1").text
    assert "&lt;script&gt;" in client.get("/").text  # the app's name
    assert "&lt;script&gt;" in client.get("/apps/qc/versions/2").text  # the diff
    # an error page that repeats user input escapes it too
    r = new_app(client, tok, slug=SCRIPT)
    assert r.status_code == 400 and "<script>alert" not in r.text and "&lt;script&gt;" in r.text
    # and the browser would not run inline script anyway
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_no_path_traversal(studio, tmp_path):
    client, tok, _ = studio
    new_app(client, tok)
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    for path in ("/static/../studio.db", "/static/..%2f..%2fsecret.txt", "/static/%2e%2e/server.py",
                 "/static/../../../../etc/passwd", "/apps/..%2F..%2Fetc%2Fpasswd", "/apps/%2e%2e/keys",
                 "/apps/qc/runs/1%2F..%2F..%2F/export"):
        r = client.get(path)
        assert r.status_code in (400, 404), path
        assert "TOP SECRET" not in r.text and "root:" not in r.text and "import" not in r.text
    assert client.get("/static/studio.js").status_code == 200
    for slug in ("../qc", "..", "qc/../x", "%2e%2e"):
        assert new_app(client, tok, slug).status_code == 400
    assert new_app(client, tok, "ok", "../builtin/search-query-correction").status_code == 400
    # an upload's name is a label, never a path: nothing is written outside the database
    before = sorted(p.name for p in (tmp_path / "studio").iterdir())
    r = client.post("/apps/qc/tests", data={"csrf_token": tok},
                    files={"file": ("../../../../tmp/evil.csv", b"query,expected\na,b\n", "text/csv")})
    assert r.status_code == 200 and "evil.csv" in client.get("/apps/qc/tests").text
    assert "../" not in client.get("/apps/qc/tests").text.split("테스트 세트")[1].split("</table>")[0]
    assert sorted(p.name for p in (tmp_path / "studio").iterdir()) == before


def test_keys_are_shown_once_and_stored_hashed(studio, tmp_path):
    client, tok, _ = studio
    new_app(client, tok)
    r = client.post("/apps/qc/keys", data={"csrf_token": tok, "name": "서비스 앱"})
    key = re.search(r'id="new-key">([^<]+)<', r.text).group(1)
    assert key.startswith("kst-") and len(key) > 40 and r.headers["cache-control"] == "no-store"
    for path in ("/apps/qc/keys", "/apps/qc", "/apps/qc/logs", "/"):
        assert key not in client.get(path).text
    assert key[:10] in client.get("/apps/qc/keys").text  # the prefix tells keys apart
    db = sqlite3.connect(tmp_path / "studio" / "studio.db")
    dump = "\n".join(db.iterdump())
    assert key not in dump and hashlib.sha256(key.encode()).hexdigest() in dump
    # the admin password is not stored either, only its scrypt hash
    assert PASSWORD not in dump and "scrypt$" in dump


def test_session_cookie_flags_and_login_rotation(tmp_path, fake_model):
    client = TestClient(make_studio(tmp_path, fake_model), raise_server_exceptions=False)
    anon_tok = csrf_of(client, "/setup")
    anon_cookie = client.cookies["kollm_studio"]
    r = client.post("/setup", data={"csrf_token": anon_tok, "token": setup_token(client), "password": PASSWORD,
                                    "confirm": PASSWORD}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "kollm_studio=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert csrf_of(client, "/") != anon_tok  # a new CSRF token after login
    token = client.cookies["kollm_studio"]
    assert token != anon_cookie  # and a new session token: no session fixation
    # the cookie is only a random token; the database keeps its hash, never the token
    dump = "\n".join(sqlite3.connect(tmp_path / "studio" / "studio.db").iterdump())
    assert token not in dump and hashlib.sha256(token.encode()).hexdigest() in dump
    client2 = TestClient(make_studio(tmp_path, fake_model))
    client2.cookies = client.cookies
    assert client2.get("/").url.path == "/"  # the session survives a restart


def test_a_forged_cookie_is_not_a_login(studio):
    client, _, _ = studio
    anon = TestClient(client.app)
    anon.cookies.set("kollm_studio", "eyJ1c2VyIjogImFkbWluIn0=.forged.sig")
    assert anon.get("/").url.path == "/login"


@pytest.mark.parametrize("body", [b"\xff\xfe garbage", b'{"inputs": "not an object"}', b"[]", b""])
def test_bad_bodies_are_400_not_500(studio, body):
    client, tok, _ = studio
    new_app(client, tok)
    key = make_key(client, tok)
    r = client.post("/v1/apps/qc/run", content=body,
                    headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    assert r.status_code == 400 and "Traceback" not in r.text and r.json()["error"]["message"]


def test_login_is_needed_even_with_the_password_set_headless(tmp_path, fake_model):
    client = TestClient(make_studio(tmp_path, fake_model, admin_password="headless-pass"))
    assert client.get("/apps/qc", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/setup").url.path == "/login"


def test_the_admin_changes_the_password_and_other_sessions_end(studio):
    client, tok, _ = studio
    other = TestClient(client.app)
    log_in(other)  # the same admin, logged in elsewhere
    page = client.get("/password")
    assert page.status_code == 200 and 'name="current"' in page.text and 'href="/password"' in page.text
    new = "a new password 2"
    for form, status, words in [({"current": "wrong", "password": new, "confirm": new}, 400, "현재 비밀번호"),
                                ({"current": PASSWORD, "password": new, "confirm": new + "x"}, 400, "다릅니다"),
                                ({"current": PASSWORD, "password": "short", "confirm": "short"}, 400, "8자 이상")]:
        r = client.post("/password", data={"csrf_token": tok, **form})
        assert r.status_code == status and words in r.text, form
    r = client.post("/password", data={"csrf_token": tok, "current": PASSWORD, "password": new, "confirm": new})
    assert r.status_code == 200 and r.url.path == "/password" and 'id="changed"' in r.text
    assert client.get("/").url.path == "/"  # this session goes on, in a new session with a new CSRF token
    assert csrf_of(client, "/") != tok
    assert other.get("/", follow_redirects=False).headers["location"] == "/login"  # the other one has ended
    login_tok = csrf_of(other, "/login")
    assert other.post("/login", data={"csrf_token": login_tok, "password": PASSWORD}).status_code == 401
    assert other.post("/login", data={"csrf_token": login_tok, "password": new}).url.path == "/"


def test_password_guessing_is_slowed_down(tmp_path, fake_model):
    from kollm.studio.web import LOGIN_ATTEMPTS

    client = TestClient(make_studio(tmp_path, fake_model, admin_password="headless-pass"))
    tok = csrf_of(client)
    for _ in range(LOGIN_ATTEMPTS):
        assert client.post("/login", data={"csrf_token": tok, "password": "guess"}).status_code == 401
    r = client.post("/login", data={"csrf_token": tok, "password": "headless-pass"})
    assert r.status_code == 429 and "틀린 비밀번호가 너무 많습니다" in r.text

"""API keys (made by the CLI, stored hashed), rate limits, request size, a full queue, and /metrics."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from conftest import run_kollm
from live import running

from kollm.serve.app import create_app
from kollm.serve.engine import Engine
from kollm.serve.keys import Guard, KeyStore


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine.load(tiny_model_dir)


def _create(db, name) -> tuple[str, str]:
    r = run_kollm("serve", "keys", "create", "--name", name, "--keys-db", str(db))
    assert r.returncode == 0, r.stderr
    key, note = r.stdout.strip().splitlines()
    return key, note.split()[1].rstrip(";")


def test_keys_guard_every_route_but_health_and_revoke_takes_effect(tmp_path, engine):
    db = tmp_path / "keys.db"
    key, kid = _create(db, "search-team")
    stored = sqlite3.connect(db).execute("SELECT * FROM keys").fetchall()
    assert key not in str(stored)  # only the hash is kept
    listed = run_kollm("serve", "keys", "list", "--keys-db", str(db)).stdout
    assert kid in listed and "search-team" in listed and key not in listed
    body = {"prompt": "안녕", "max_tokens": 2, "temperature": 0}
    with running(create_app(engine, Guard(None, KeyStore(db), refresh_s=0))) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        for path in ("/v1/models", "/metrics"):
            r = httpx.get(f"{url}{path}")
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = httpx.post(f"{url}/v1/completions", json=body, headers={"Authorization": "Bearer kollm-wrong"})
        assert r.status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.post(f"{url}/v1/completions", json=body, headers=auth).status_code == 200
        metrics = httpx.get(f"{url}/metrics", headers=auth).text
        assert "kollm:prompt_tokens_total" in metrics and "kollm:time_to_first_token_seconds_bucket" in metrics
        for name in ("kollm:kv_cache_usage_perc", "kollm:prefix_cache_queries_total", "kollm:prefix_cache_hits_total",
                     "kollm:num_requests_running", "kollm:inter_token_latency_seconds_bucket"):
            assert name in metrics, name
        assert run_kollm("serve", "keys", "revoke", kid, "--keys-db", str(db)).returncode == 0
        assert httpx.post(f"{url}/v1/completions", json=body, headers=auth).status_code == 401
    r = run_kollm("serve", "keys", "revoke", kid, "--keys-db", str(db))
    assert r.returncode == 2 and "no active key" in r.stderr


def test_rate_limit_size_limit_and_full_queue(engine):
    body = {"prompt": "안녕", "max_tokens": 1, "temperature": 0}
    with running(create_app(engine, Guard("secret", None), rate_limit=1.0, max_body_bytes=2000)) as url:
        auth = {"Authorization": "Bearer secret"}
        codes = [httpx.post(f"{url}/v1/completions", json=body, headers=auth).status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and 429 in codes[2:]
        r = httpx.post(f"{url}/v1/completions", json=body, headers=auth)
        assert r.status_code in (200, 429)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "가" * 5000}, headers=auth)
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    with running(create_app(engine, max_waiting=0)) as url:
        r = httpx.post(f"{url}/v1/completions", json=body)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "busy" in r.json()["error"]["message"]

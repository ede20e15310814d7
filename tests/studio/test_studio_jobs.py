"""Background jobs (#25) on a scripted model: a test-set run is a job with progress, a second click returns the same
job, cancel stops a running run between items, a Studio restart marks a cut-off run interrupted and queues a
cut-off tuning run to resume; feedback on outputs becomes training data with a stable held-out split; the compare
page pairs items by explicit id (0 included) and shows the copy baseline. On SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kollm.studio.db import Job
from kollm.studio.testsets import parse_upload

from .helpers import FakeModel, log_in, make_studio, new_app


def studio_on(tmp_path, fake, db_url: str | None, **cfg) -> TestClient:
    return TestClient(make_studio(tmp_path, fake, **({"db": db_url} if db_url else {}), **cfg),
                      raise_server_exceptions=False)


def set_id(client: TestClient, slug: str = "qc") -> str:
    return re.search(rf"/apps/{slug}/tests/(\d+)/run", client.get(f"/apps/{slug}/tests").text).group(1)


def start_run(client: TestClient, tok: str, version: str = "1", ts: str | None = None) -> int:
    r = client.post(f"/apps/qc/tests/{ts or set_id(client)}/run", data={"csrf_token": tok, "version": version},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"].endswith("?follow=1")  # where a finished run goes on to its results
    return int(re.search(r"/jobs/(\d+)", r.headers["location"]).group(1))


def wait_job(client: TestClient, job: int, states=("done", "failed", "cancelled", "interrupted"),
             timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        v = client.get(f"/jobs/{job}/status").json()
        if v["status"] in states:
            return v
        assert time.time() < deadline, v
        time.sleep(0.05)


class SlowModel(FakeModel):
    """Each completion takes 100 ms without blocking the Studio's event loop (httpx awaits an async handler), so
    a run can be watched and cancelled mid-way."""

    def __init__(self) -> None:
        super().__init__()
        from kollm import metrics

        metrics.rouge_l("유모차", "유모차")  # Kiwi loads once per process (seconds): not while a run is watched

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("completions"):
            await asyncio.sleep(0.1)
        return super().handler(request)


def test_a_test_run_is_a_background_job_with_progress(db_url, tmp_path):
    fake = FakeModel()
    client = studio_on(tmp_path, fake, db_url)
    tok = log_in(client)
    new_app(client, tok)
    job = start_run(client, tok)
    page = client.get(f"/jobs/{job}").text
    assert 'id="job-progress"' in page and f'data-job="{job}"' in page
    v = wait_job(client, job)
    assert v["status"] == "done" and v["done"] == v["total"] == 40 and v["error"] == ""
    run = client.get(v["result"]["url"]).text
    assert run.count('<td class="out">') == 40 and "40 항목, 오류 0" in run
    r = client.get(f"/jobs/{job}?follow=1")  # where the button landed: a finished run goes on to its results
    assert r.url.path == v["result"]["url"] and 'id="job"' in client.get(f"/jobs/{job}").text
    assert 'id="copy-baseline"' in run  # one input variable and an expected text: the copy baseline applies
    assert len([q for q in fake.requests if not q.get("echo")]) == 40  # (echo: fix_typos scoring its candidates)
    jobs_page = client.get("/jobs?app=qc").text
    assert f"/jobs/{job}" in jobs_page and "done" in jobs_page
    r = client.post(f"/apps/qc/tests/{set_id(client)}/run", data={"csrf_token": tok, "version": "1"},
                    headers={"Accept": "application/json"})
    assert r.status_code == 202 and r.json()["kind"] == "test_run"  # a new job: the first one is finished


def test_second_click_returns_the_queued_job_and_cancel_before_start(db_url, tmp_path):
    client = studio_on(tmp_path, FakeModel(), db_url, job_workers=0)  # a queue with no worker: jobs stay queued
    tok = log_in(client)
    new_app(client, tok)
    first = start_run(client, tok)
    assert start_run(client, tok) == first  # the same version, test set and model: the same job
    client.post("/apps/qc/versions", data={"csrf_token": tok, "template": "검색어: {{query}}\n답:",
                                           "mode": "completion"})
    other = start_run(client, tok, version="2")
    assert other != first
    r = client.post(f"/jobs/{first}/cancel", data={"csrf_token": tok}, headers={"Accept": "application/json"})
    assert r.json()["status"] == "cancelled"
    assert start_run(client, tok) not in (first, other)  # a cancelled job is not "the same run" any more
    assert client.post(f"/jobs/{first}/cancel", data={}).status_code == 403  # CSRF checked
    r = client.get("/jobs/999999/status", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json()["error"]["message"] == "작업 999999이(가) 없습니다"


def test_a_worker_outlives_a_database_error_while_a_job_ends(tmp_path, monkeypatch):
    """The database fails the write that ends a job: that job stays `running` (the next start marks it), and the
    worker thread goes on to run the next one."""
    from kollm.studio import jobs

    real, failed = jobs._set, []

    def flaky(db, jid, **values):
        if values.get("status") == "done" and not failed:
            failed.append(jid)
            raise sa.exc.OperationalError("UPDATE jobs", {}, Exception("server closed the connection"))
        return real(db, jid, **values)

    monkeypatch.setattr(jobs, "_set", flaky)
    client = studio_on(tmp_path, FakeModel(), None)
    tok = log_in(client)
    new_app(client, tok)
    first = start_run(client, tok)
    deadline = time.time() + 60
    while not failed:
        assert time.time() < deadline
        time.sleep(0.05)
    client.post("/apps/qc/versions", data={"csrf_token": tok, "template": "검색어: {{query}}\n답:",
                                           "mode": "completion"})
    second = start_run(client, tok, version="2")
    assert wait_job(client, second)["status"] == "done"
    assert failed == [first] and client.get(f"/jobs/{first}/status").json()["status"] == "running"
    assert all(t.is_alive() for t in client.app.state.jobs._threads)


def test_cancel_stops_a_running_run_between_items(db_url, tmp_path):
    fake = SlowModel()
    client = studio_on(tmp_path, fake, db_url)
    tok = log_in(client)
    new_app(client, tok)
    job = start_run(client, tok)
    deadline = time.time() + 30
    while client.get(f"/jobs/{job}/status").json()["done"] < 3:
        assert time.time() < deadline
        time.sleep(0.01)
    running = client.get(f"/jobs/{job}/status").json()
    assert running["status"] == "running" and running["rate_per_s"] > 0 and running["eta_s"] is not None
    client.post(f"/jobs/{job}/cancel", data={"csrf_token": tok})
    v = wait_job(client, job)
    assert v["status"] == "cancelled" and 3 <= v["done"] < 40 and "항목 뒤에 멈췄습니다" in v["note"]
    assert len([q for q in fake.requests if not q.get("echo")]) < 40
    assert not v["result"]


def test_a_restart_marks_a_cut_off_run_interrupted_and_requeues_tuning(db_url, tmp_path):
    fake = SlowModel()
    client = studio_on(tmp_path, fake, db_url)
    tok = log_in(client)
    new_app(client, tok)
    job = start_run(client, tok)
    wait_job(client, job, states=("running",))
    client.app.state.jobs.stop()  # the Studio stops (as Ctrl-C or a crash would) while the run is going
    assert client.get(f"/jobs/{job}/status").json()["status"] == "running"
    st = client.app.state.studio
    with st.db() as s:  # a tuning job cut off the same way
        app_id = s.get(Job, job).app_id
        s.add(Job(app_id=app_id, kind="tune", key="tune:x", status="running", params={"version": 1, "steps": 5},
                  total=5, result={}))
        s.commit()
        tune_id = s.scalar(sa.select(Job.id).where(Job.kind == "tune"))
    again = studio_on(tmp_path, fake, db_url, job_workers=0)  # the next start, on the same database
    tok = log_in(again)
    v = again.get(f"/jobs/{job}/status").json()
    assert v["status"] == "interrupted" and "다시 실행하세요" in v["error"]
    t = again.get(f"/jobs/{tune_id}/status").json()
    assert t["status"] == "queued" and t["params"]["resume"] is True and "체크포인트" in t["note"]
    assert "interrupted" in again.get(f"/jobs/{job}").text


def test_feedback_becomes_training_data_with_a_stable_held_out_split(db_url, tmp_path):
    fake = FakeModel()
    client = studio_on(tmp_path, fake, db_url)
    tok = log_in(client)
    new_app(client, tok)
    v = wait_job(client, start_run(client, tok))
    run_url = v["result"]["url"]
    run_id = run_url.rsplit("/", 1)[1]
    from kollm.studio.builtin import builtin_items
    from kollm.studio.training import held_out

    items = builtin_items("search-query-correction")
    train_item = next(i for i in items if not held_out(i["inputs"]))
    held_item = next(i for i in items if held_out(i["inputs"]))
    for item, body in ((train_item, {"verdict": "corrected", "corrected": "교정된 검색어"}),
                       (held_item, {"verdict": "good"})):
        r = client.post(f"/apps/qc/runs/{run_id}/feedback", data={"csrf_token": tok, "item": item["id"], **body})
        assert r.status_code == 200
    assert "교정: 교정된 검색어" in client.get(run_url).text
    bad = client.post(f"/apps/qc/runs/{run_id}/feedback", data={"csrf_token": tok, "item": train_item["id"],
                                                               "verdict": "corrected", "corrected": " "})
    assert bad.status_code == 400 and "교정한 출력을 쓴 뒤" in bad.text
    page = client.get("/apps/qc/training").text
    assert "feedback #" in page and "held-out" in page
    train = [json.loads(x) for x in client.get("/apps/qc/training/export?split=train").text.splitlines()]
    held = [json.loads(x) for x in client.get("/apps/qc/training/export?split=held-out").text.splitlines()]
    n_held = sum(held_out(i["inputs"]) for i in items)
    assert len(held) == n_held and 0 < n_held < 40  # test-set items split by a hash of their inputs
    held_inputs = {json.dumps(h["inputs"], ensure_ascii=False) for h in held}
    assert not held_inputs & {json.dumps(t["inputs"], ensure_ascii=False) for t in train}  # never trained on
    assert {"inputs": train_item["inputs"], "expected": "교정된 검색어"} in train  # the correction trains
    # the training half of the set, the 3 examples and the correction, less rows that would leak a held-out item
    held_answers = {h["expected"] for h in held}
    assert 40 - n_held <= len(train) <= 40 - n_held + 4
    assert not held_answers & {t["expected"] for t in train}
    assert all(set(r) == {"inputs", "expected"} for r in train)  # kollm tune's inputs+expected shape
    # stable: the same split on every call, whatever else is added
    assert [json.loads(x) for x in client.get("/apps/qc/training/export?split=held-out").text.splitlines()] == held
    assert client.get("/apps/qc/training/export?split=nope").status_code == 400


def test_compare_pairs_by_explicit_id_zero_included_and_shows_the_baseline(tmp_path):
    items = parse_upload("t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": 0, "query": "유모챠", "expected": "유모차"},
        {"id": 1, "query": "오렌지 쥬스", "expected": "오렌지 주스"},
        {"query": "케찹", "expected": "케첩"}]).encode())
    assert [i["id"] for i in items] == ["0", "1", "3"]  # id 0 stays 0 (it was "1", colliding with item 1)
    from kollm.studio.compare import baseline, pair_runs

    def run(outputs):
        return [{"id": i["id"], "inputs": i["inputs"], "expected": i["expected"], "output": o, "error": "",
                 "scores": {"exact": float(o == i["expected"])}} for i, o in zip(items, outputs, strict=True)]

    both = pair_runs(run(["유모차", "오렌지 쥬스", "케첩"]), run(["유모차", "오렌지 주스", "케찹"]))
    assert [(r["id"], r["a"]["output"], r["b"]["output"]) for r in both["rows"]] == [
        ("0", "유모차", "유모차"), ("1", "오렌지 쥬스", "오렌지 주스"), ("3", "케첩", "케찹")]
    assert [r["regressed"] for r in both["rows"]] == [False, False, True]
    copy = baseline(run(["", "", ""]))
    assert copy["items"] == 3 and copy["exact"] == 0.0 and 0 < copy["chrf"] < 1
    assert baseline([{"inputs": {"a": "x", "b": "y"}, "expected": "x"}]) is None  # two inputs: no copy baseline


def test_compare_page_shows_per_metric_tables_and_the_copy_row(tmp_path):
    fake = FakeModel()
    client = studio_on(tmp_path, fake, "")
    tok = log_in(client)
    new_app(client, tok)
    a = wait_job(client, start_run(client, tok))["result"]["run_id"]
    client.post("/apps/qc/versions", data={"csrf_token": tok, "template": "검색어: {{query}}\n답:",
                                           "mode": "completion"})
    fake.reply = "무선 이어폰 추천"
    b = wait_job(client, start_run(client, tok, version="2"))["result"]["run_id"]
    html = client.get(f"/apps/qc/runs/compare?a={a}&b={b}").text
    assert 'id="summary-all"' in html and 'id="summary-held-out"' in html
    assert "입력 그대로 복사" in html and "held-out</span>" in html
    assert re.search(r"나빠진 항목 \d+개 / 40", html)


def test_feedback_on_a_logged_call(tmp_path):
    from .helpers import make_key

    client = studio_on(tmp_path, FakeModel(), "")
    tok = log_in(client)
    new_app(client, tok)
    client.post("/apps/qc/labels", data={"csrf_token": tok, "label": "production", "version": "1"})
    key = make_key(client, tok)
    r = client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"},
                    json={"inputs": {"query": "겨울 패딩 추쳔"}})
    assert r.status_code == 200, r.text
    log_id = re.search(r"/apps/qc/logs/(\d+)", client.get("/apps/qc/logs").text).group(1)
    assert 'id="log-feedback"' in client.get(f"/apps/qc/logs/{log_id}").text
    r = client.post(f"/apps/qc/logs/{log_id}/feedback", data={"csrf_token": tok, "verdict": "corrected",
                                                              "corrected": "겨울 패딩 추천"})
    assert r.status_code == 200
    train = client.get("/apps/qc/training/export?split=train").text
    assert '{"inputs": {"query": "겨울 패딩 추쳔"}, "expected": "겨울 패딩 추천"}' in train
    assert "로그 #" in client.get("/apps/qc/training").text
    assert client.post("/apps/qc/logs/999/feedback", data={"csrf_token": tok, "verdict": "good"}).status_code == 404

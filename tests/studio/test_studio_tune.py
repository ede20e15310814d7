""""Tune this app" (#25) end to end on the tiny model: the Studio's job runs `kollm tune` (LoRA, a few steps) on the
app's training rows (held-out items left out), loads the adapter into a live kollm server with
/v1/load_lora_adapter, saves a version whose model is the adapter and scores both versions on the test set; a
server that cannot load adapters is a note, not a failure; a tuning job cut off by a Studio stop resumes from its
checkpoint at the next start."""

from __future__ import annotations

import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from .helpers import log_in, make_key, make_studio, new_app
from .test_studio_jobs import set_id, start_run, wait_job


def tune_form(client: TestClient, tok: str, ts: str, steps: int = 4, **extra) -> int:
    data = {"csrf_token": tok, "version": "1", "sources": ["examples", "tests", "feedback"], "test_set": ts,
            "method": "lora", "steps": str(steps), "lr": "3e-3", "rank": "4", **extra}
    r = client.post("/apps/qc/tune", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return int(re.search(r"/jobs/(\d+)$", r.headers["location"]).group(1))


@pytest.mark.slow  # 47 s on 2 cores since fix_typos scores every query correction row twice
def test_tune_an_app_loads_the_adapter_and_scores_both_versions(lora_server, studio_model_dir, tmp_path):
    client = TestClient(make_studio(tmp_path, None, model_url=f"{lora_server}/v1", tune_model=str(studio_model_dir)),
                        raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    ts = set_id(client)
    assert "튜닝 시작" in client.get("/apps/qc/tune").text
    job = tune_form(client, tok, ts)
    v = wait_job(client, job, timeout=600)
    assert v["status"] == "done", v
    res = v["result"]
    assert res["loaded"] is True and v["note"] == "" and v["done"] == v["total"] == 4
    assert res["version"] == 2 and res["lora_name"] == f"qc-v1-tune{job}"
    work = tmp_path / "studio" / "tune" / "qc" / f"job-{job}"
    train = [json.loads(x) for x in (work / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (work / "held_out.jsonl").read_text().splitlines()]
    assert held and not {json.dumps(h["inputs"]) for h in held} & {json.dumps(t["inputs"]) for t in train}
    assert "교정:" in (work / "recipe.toml").read_text()  # the tuned version's prompt: instruction + template
    page = client.get("/apps/qc/versions/2").text
    assert f"model: qc-v1-tune{job}" in page
    # both versions scored on the test set by the jobs the tuning queued; then the compare page
    runs = [wait_job(client, j, timeout=300)["result"]["run_id"] for j in res["score_jobs"].values()]
    html = client.get(f"/apps/qc/runs/compare?a={runs[0]}&b={runs[1]}").text
    assert 'id="summary-held-out"' in html and "입력 그대로 복사" in html
    # the app endpoint, pointed at the tuned version, answers with the adapter
    client.post("/apps/qc/labels", data={"csrf_token": tok, "label": "production", "version": "2"})
    key = make_key(client, tok)
    r = client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"}, json={"inputs": {"query": "a"}})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    # the same tuning again while nothing is queued is a new job; the form's bounds are checked
    bad = client.post("/apps/qc/tune", data={"csrf_token": tok, "version": "1", "sources": ["tests"], "steps": "0"})
    assert bad.status_code == 400 and "steps은(는) 1에서 5000 사이의 수여야" in bad.text
    bad = client.post("/apps/qc/tune", data={"csrf_token": tok, "version": "2", "sources": ["tests"]})
    assert bad.status_code == 400 and "이미 튜닝된 모델로 실행됩니다" in bad.text


@pytest.mark.slow  # a real kollm tune subprocess: ~10 s each; the default suite keeps the full flow
def test_a_server_that_cannot_load_adapters_is_a_note(model_server, studio_model_dir, tmp_path):
    client = TestClient(make_studio(tmp_path, None, model_url=model_server), raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    r = client.post("/apps/qc/tune", data={"csrf_token": tok, "version": "1", "sources": ["tests"]})
    assert r.status_code == 400 and "--tune-model" in r.text  # no base model folder known: say how to give one
    job = tune_form(client, tok, set_id(client), steps=2, base_model=str(studio_model_dir))
    v = wait_job(client, job, timeout=600)
    assert v["status"] == "done" and v["result"]["loaded"] is False and v["result"]["version"] == 2
    assert "실행 중에 어댑터를 올릴 수 없습니다 (404)" in v["note"] and "--allow-runtime-lora" in v["note"]
    assert "어댑터를 올릴 수 없습니다" in client.get(f"/jobs/{job}").text
    assert "score_jobs" not in v["result"]  # nothing to score on a server without the adapter


@pytest.mark.slow
def test_a_tuning_job_cut_off_by_a_stop_resumes_from_its_checkpoint(model_server, studio_model_dir, tmp_path):
    client = TestClient(make_studio(tmp_path, None, model_url=model_server, tune_model=str(studio_model_dir)),
                        raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    job = tune_form(client, tok, "", steps=40)
    deadline = time.time() + 300
    ckpt = tmp_path / "studio" / "tune" / "qc" / f"job-{job}" / "run" / "checkpoint" / "state.pt"
    while not ckpt.is_file():  # past the first checkpoint (every 10 steps here)
        assert time.time() < deadline
        time.sleep(0.2)
    client.app.state.jobs.stop()  # the Studio stops: the tuning process ends with it, the job stays running
    assert client.get(f"/jobs/{job}/status").json()["status"] == "running"
    again = TestClient(make_studio(tmp_path, None, model_url=model_server, tune_model=str(studio_model_dir)),
                       raise_server_exceptions=False)
    log_in(again)
    v = wait_job(again, job, timeout=600)
    assert v["status"] == "done" and v["done"] == 40, v
    log = (tmp_path / "studio" / "tune" / "qc" / f"job-{job}" / "tune.log").read_text()
    assert "note: resumed at step" in log


@pytest.mark.slow  # a real kollm tune subprocess: ~10 s each; the default suite keeps the full flow
def test_cancel_ends_a_tuning_process(model_server, studio_model_dir, tmp_path):
    client = TestClient(make_studio(tmp_path, None, model_url=model_server, tune_model=str(studio_model_dir)),
                        raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok)
    job = tune_form(client, tok, "", steps=500)
    wait_job(client, job, states=("running",))
    deadline = time.time() + 300
    while client.get(f"/jobs/{job}/status").json()["done"] < 1:
        assert time.time() < deadline
        time.sleep(0.2)
    client.post(f"/jobs/{job}/cancel", data={"csrf_token": tok})
    v = wait_job(client, job, timeout=60)
    assert v["status"] == "cancelled" and 1 <= v["done"] < 500
    # a test run queued behind it runs once the worker is free
    assert wait_job(client, start_run(client, tok), timeout=120)["status"] == "done"


def test_the_cli_takes_the_base_model_folder():
    from conftest import run_kollm

    assert "--tune-model" in run_kollm("studio", "--help").stdout

"""The Studio's tune-and-compare flow on a real model, measured: the 검색어 교정 built-in template, its few-shot
version against the version tuned by "Tune this app", on the held-out half of its built-in test set, with the
do-nothing baseline (output = input) beside them.

    python bench/studio_tune.py --model ~/.cache/kollm/test-models/gemma-3-270m/hf [--steps 50]

It starts `kollm serve --allow-runtime-lora` on MODEL (a free port), a Studio on a temporary database, and goes
through the Studio's own routes as a user would: create the app from the template (its 40-item test set comes
with it) -> run the test set on v1 (a background job) -> tune (the form: few-shot examples, the test set's
training half and synthesized typo pairs; LoRA) -> the job loads the adapter and scores the tuned version -> the
compare page's numbers. Prints a markdown table (per metric, held-out items and all items) and the job timings."""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from kollm.studio import StudioConfig
from kollm.studio.compare import pair_runs
from kollm.studio.server import create_studio

PASSWORD = "bench-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_id(r: httpx.Response) -> int:
    """The job a form post redirected to (/jobs/N, /jobs/N?follow=1)."""
    return int(re.search(r"/jobs/(\d+)", r.headers["location"]).group(1))


def wait(client: TestClient, job: int, what: str) -> dict:
    t0, last = time.time(), None
    while True:
        v = client.get(f"/jobs/{job}/status").json()
        if (v["status"], v["done"]) != last:
            last = (v["status"], v["done"])
            eta = f", ETA {v['eta_s']:.0f} s" if v.get("eta_s") is not None else ""
            print(f"  [{time.time() - t0:6.0f} s] {what}: {v['status']} {v['done']}/{v['total']}{eta}",
                  file=sys.stderr, flush=True)
        if v["status"] not in ("queued", "running"):
            if v["status"] != "done":
                raise SystemExit(f"{what} ended {v['status']}: {v['error']}")
            v["seconds"] = time.time() - t0
            return v
        time.sleep(2)


class Shots:
    """The same Studio served over HTTP (uvicorn in a thread) for a headless chromium to take pictures of."""

    def __init__(self, app: object, folder: Path) -> None:
        import threading

        import uvicorn
        from playwright.sync_api import sync_playwright

        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.05)
        self.url, self.folder = f"http://127.0.0.1:{port}", folder
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                               args=["--no-sandbox"])
        self.page = self.browser.new_page(viewport={"width": 1440, "height": 900}, locale="ko-KR")
        self.page.goto(self.url + "/login")
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.url + "/")

    def job(self, client: TestClient, job: int, at_step: int) -> None:
        while client.get(f"/jobs/{job}/status").json()["done"] < at_step:
            time.sleep(2)
        self.page.goto(f"{self.url}/jobs/{job}")
        self.page.wait_for_timeout(1500)  # one poll of the status JSON: rate and ETA filled in
        self.page.screenshot(path=str(self.folder / "studio-job.png"))

    def compare(self, a: int, b: int) -> None:
        self.page.goto(f"{self.url}/apps/qc/runs/compare?a={a}&b={b}")
        self.page.locator("#summary-held-out").scroll_into_view_if_needed()
        self.page.screenshot(path=str(self.folder / "studio-compare.png"))

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()
        self.server.should_exit = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", default="4e-4")
    ap.add_argument("--rank", default="16")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers here (JSON)")
    ap.add_argument("--shots", type=Path, default=None, help="also save the tuning job's page mid-run and the "
                    "compare page here (studio-job.png, studio-compare.png; Playwright on /usr/bin/chromium)")
    args = ap.parse_args()
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "kollm.cli", "serve", "--model", str(args.model), "--port",
                              str(port), "--allow-runtime-lora"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if serve.poll() is not None:
                raise SystemExit(f"kollm serve exited: {serve.stderr.read().decode()[-2000:]}")
            time.sleep(1)
        data = tempfile.mkdtemp(prefix="kollm-studio-bench-")
        cfg = StudioConfig(model_url=f"{url}/v1", data=data, admin_password=PASSWORD, tune_model=str(args.model))
        app = create_studio(cfg)
        client = TestClient(app)
        shots = Shots(app, args.shots) if args.shots else None
        tok = re.search(r'data-csrf="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf_token": tok, "name": "admin", "password": PASSWORD})
        tok = re.search(r'data-csrf="([^"]+)"', client.get("/").text).group(1)
        client.post("/apps", data={"csrf_token": tok, "slug": "qc", "template": "search-query-correction"})
        ts = re.search(r"/apps/qc/tests/(\d+)/run", client.get("/apps/qc/tests").text).group(1)

        r = client.post(f"/apps/qc/tests/{ts}/run", data={"csrf_token": tok, "version": "1"}, follow_redirects=False)
        few = wait(client, job_id(r), "few-shot v1 on the test set")
        r = client.post("/apps/qc/tune", follow_redirects=False, data={
            "csrf_token": tok, "version": "1", "sources": ["examples", "tests", "typos"], "test_set": ts,
            "method": "lora", "steps": str(args.steps), "lr": args.lr, "rank": args.rank})
        if r.status_code != 303:
            raise SystemExit(f"the tune form answered {r.status_code}: {r.text[-500:]}")
        tune_job = job_id(r)
        if shots:
            shots.job(client, tune_job, min(10, args.steps))
        tuned = wait(client, tune_job, "tune (kollm tune, LoRA)")
        if not tuned["result"].get("loaded"):
            raise SystemExit(f"the adapter was not loaded: {tuned['note']}")
        score = wait(client, int(tuned["result"]["score_jobs"][str(tuned["result"]["version"])]),
                     "tuned version on the test set")
        training = client.get("/apps/qc/training").text
        from kollm.studio.db import TestRun

        with client.app.state.studio.db() as s:
            a = s.get(TestRun, few["result"]["run_id"]).results
            b = s.get(TestRun, score["result"]["run_id"]).results
        both = pair_runs(a, b)
        work = Path(data) / "tune" / "qc" / f"job-{tuned['id']}"
        n_train = sum(1 for _ in open(work / "train.jsonl", encoding="utf-8"))
        print(f"\ntraining rows: {n_train} (examples, the test set's training half, synthesized typo pairs; "
              f"held-out items and rows sharing their input or answer left out); "
              f"{'training page shown' if 'held-out' in training else ''}")
        print(f"kollm tune: {tuned['result']['steps']} steps in {tuned['seconds']:.0f} s; tune's own validation "
              f"{tuned['result']['metric']}: {tuned['result']['before'].get(tuned['result']['metric'], 0):.3f} -> "
              f"{tuned['result']['best'].get(tuned['result']['metric'], 0):.3f}")
        print(f"test-set runs: few-shot {few['seconds']:.0f} s, tuned {score['seconds']:.0f} s (40 items each)\n")
        labels = {"exact": "exact match", "rouge_l": "ROUGE-L", "chrf": "chrF"}
        for name, t in both["tables"].items():
            print(f"{'held-out items' if name == 'held-out' else 'all items'} ({t['items']}; "
                  f"{t['regressions']} regressions)\n")
            print("| version | " + " | ".join(labels.values()) + " |")
            print("|---|" + "---|" * len(labels))
            for row, label in (("copy", "copy baseline (output = input)"), ("a", "v1 few-shot (3 examples)"),
                               ("b", f"v{tuned['result']['version']} tuned (LoRA r {args.rank}, {args.steps} "
                                     "steps, no examples)")):
                vals = t[row] or {}
                print(f"| {label} | " + " | ".join(f"{vals[m]:.3f}" if m in vals else "" for m in labels) + " |")
            print()
        if shots:
            shots.compare(few["result"]["run_id"], score["result"]["run_id"])
            shots.close()
        if args.out:
            args.out.write_text(json.dumps({"tables": both["tables"], "tune": tuned["result"],
                                            "seconds": {"few": few["seconds"], "tune": tuned["seconds"],
                                                        "tuned": score["seconds"]}}, ensure_ascii=False, indent=1))
    finally:
        serve.terminate()
        serve.wait(30)


if __name__ == "__main__":
    main()

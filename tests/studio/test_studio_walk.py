"""The issue's (#25) flow in a real browser (Playwright driving Debian's chromium, headless) against a live kollm
server on the tiny model: create an app (its built-in test set comes with it) -> run the test set in the
background and watch its progress -> mark two outputs corrected -> tune the app (LoRA, a few steps) -> the tuned
version appears -> compare it with the few-shot version -> move production to it -> the app endpoint answers with
the adapter. Screenshots go to the test's tmp folder (docs/studio-job.png and docs/studio-compare.png come from
the same flow on Gemma-3-270M: `python bench/studio_tune.py --shots docs`)."""

from __future__ import annotations

import re

import httpx
import pytest

from .helpers import browser_log_in, browser_new_app, make_studio

PASSWORD = "walk-password-1"


@pytest.mark.slow
def test_tune_walk_in_a_browser(browser, lora_server, studio_model_dir, tmp_path):
    from live import running
    from playwright.sync_api import expect

    from kollm.studio.apps import AppSpec, render_completion
    from kollm.studio.training import held_out

    shots = tmp_path / "screenshots"
    shots.mkdir()
    studio = make_studio(tmp_path, None, model_url=f"{lora_server}/v1", tune_model=str(studio_model_dir),
                         admin_password=PASSWORD)
    with running(studio) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        browser_log_in(page, url, PASSWORD)

        # an app from the 검색어 교정 template: its 40-item test set comes with it
        browser_new_app(page, "search-query-correction", "qc")

        # the test run is a background job: its page shows progress, then the results
        page.goto(url + "/apps/qc/tests")
        page.locator("form.run-form").first.locator("button").click()
        page.wait_for_url(re.compile(r".*/jobs/\d+\?follow=1$"))
        expect(page.locator("#job-progress")).to_be_visible()
        expect(page.locator("#job-counts")).to_contain_text("항목")
        page.screenshot(path=str(shots / "01-job-progress.png"))
        page.wait_for_url(re.compile(r".*/apps/qc/runs/\d+$"), timeout=300_000)  # studio.js goes on when done
        assert page.locator("#items tr").count() == 41
        expect(page.locator("#copy-baseline")).to_contain_text("입력 그대로 복사")

        # two outputs corrected (items on the training side of the split)
        rows = page.locator("#items tr[id^=item-]")
        corrected = 0
        for i in range(rows.count()):
            row = rows.nth(i)
            query = row.locator("td").nth(1).inner_text().split(maxsplit=1)[1]
            if held_out({"query": query}) or corrected == 2:
                continue
            row_id = row.get_attribute("id")
            row.locator("input[name=corrected]").fill(f"교정 {corrected}")
            row.locator("button[value=corrected]").click()
            page.wait_for_load_state()
            expect(page.locator(f"#{row_id} .mark")).to_contain_text(f"교정: 교정 {corrected}")
            corrected += 1
        page.screenshot(path=str(shots / "02-feedback.png"))
        page.goto(url + "/apps/qc/training")
        assert "교정 0" in page.locator("#feedback").inner_text()
        page.screenshot(path=str(shots / "03-training-data.png"), full_page=False)

        # tune: LoRA, a few steps; the job loads the adapter and makes v2
        page.goto(url + "/apps/qc/tune")
        page.fill("input[name=steps]", "4")
        page.fill("input[name=lr]", "3e-3")
        page.fill("input[name=rank]", "4")
        page.screenshot(path=str(shots / "04-tune-form.png"))
        page.click("#start-tune")
        page.wait_for_url(re.compile(r".*/jobs/\d+$"))
        expect(page.locator("#tune-result")).to_be_visible(timeout=600_000)  # the page reloads when done
        assert page.locator("#job-status").inner_text() == "done" and page.locator("#job-note").inner_text() == ""
        page.screenshot(path=str(shots / "05-tune-done.png"), full_page=True)
        score_jobs = page.locator("a[href^='/jobs/']").filter(has_text="(v2)")
        score_jobs.first.click()
        page.wait_for_url(re.compile(r".*/apps/qc/runs/\d+$"), timeout=300_000)

        # the tuned version appears, on the adapter
        page.goto(url + "/apps/qc")
        assert page.locator("a[href='/apps/qc/versions/2']").count() >= 1
        page.goto(url + "/apps/qc/versions/2")
        model = re.search(r"model: (qc-v1-tune\d+)", page.locator("#diff").inner_text()).group(1)

        # compare: the few-shot run (A) and the tuned run (B), held-out items and the copy baseline
        page.goto(url + "/apps/qc/tests")
        page.click("#compare-runs")
        page.wait_for_url(re.compile(r".*/runs/compare\?.*"))
        expect(page.locator("#summary-held-out")).to_contain_text("입력 그대로 복사")
        assert re.search(r"나빠진 항목 \d+개 / 40", page.locator("#regressions").inner_text())
        page.screenshot(path=str(shots / "06-compare.png"), full_page=False)

        # production moves to the tuned version; its endpoint answers with the adapter
        page.goto(url + "/apps/qc")
        page.locator("tr:has(a[href='/apps/qc/versions/2']) button", has_text="production").click()
        page.wait_for_load_state()
        expect(page.locator("tr:has(a[href='/apps/qc/versions/2']) .label")).to_contain_text("production")
        page.goto(url + "/apps/qc/keys")
        page.fill("#key-name", "서비스")
        page.click("#create-key")
        key = page.locator("#new-key").inner_text().strip()
        r = httpx.post(f"{url}/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"},
                       json={"inputs": {"query": "유모챠 추쳔"}}, timeout=120)
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        with studio.state.studio.db() as s:
            from kollm.studio import store

            spec = AppSpec.from_dict(store.get_version(s, store.get_app(s, "qc"), 2).spec)
        assert spec.model == model and not spec.examples
        direct = httpx.post(f"{lora_server}/v1/completions", timeout=120, json={
            "model": model, "prompt": render_completion(spec, {"query": "유모챠 추쳔"}), "max_tokens":
            spec.params.max_tokens, "temperature": 0, "stop": spec.params.stop}).json()
        assert direct["model"] == model and r.json()["output"].strip() == direct["choices"][0]["text"].strip()
        assert not errors, errors
    assert len(list(shots.glob("*.png"))) == 6
    print(f"screenshots: {shots}")

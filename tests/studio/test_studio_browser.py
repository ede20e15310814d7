"""The issue's flow in a real browser (Playwright driving Debian's chromium, headless): log in -> create an app from
the 검색어 교정 template -> edit the examples -> run it in the playground and see streamed text -> save a version ->
call its endpoint with a key -> run its test set -> compare two versions' runs. Screenshots go to the test's tmp
folder; with KOLLM_STUDIO_README_SHOT=1 the playground shot is also written to docs/studio.png."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx

from .helpers import PASSWORD, browser_new_app, make_studio

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "studio.png"


def test_studio_flow_in_a_browser(browser, model_server, tmp_path):
    from live import running
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    studio = make_studio(tmp_path, None, model_url=model_server)
    with running(studio) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # first start: the setup token printed on the console, the admin password; log out, log in
        page.goto(url + "/")
        assert page.url.endswith("/setup")
        page.fill("#setup-token", studio.state.setup_token)
        page.fill("input[name=password]", PASSWORD)
        page.fill("input[name=confirm]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        page.click("text=로그아웃")
        page.wait_for_url("**/login")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")

        # create an app from the 검색어 교정 template
        browser_new_app(page, "search-query-correction", "qc")
        assert page.locator("h1").inner_text().startswith("검색어 교정")

        # edit the examples (and let the tiny test model write more than one line)
        page.fill("textarea[name=ex-0-output]", "유모차 추천 상품")
        page.fill("textarea[name=ex-3-query]", "노트븍 파우치")
        page.fill("textarea[name=ex-3-output]", "노트북 파우치")
        page.fill("textarea[name=stop]", "")
        page.fill("input[name=max_tokens]", "24")

        # the playground streams the draft; input with markup shows as text
        page.fill("textarea.pg-input[data-var=query]", "유모챠 <script>window.__xss = 1</script>")
        page.evaluate("""() => { window.__changes = 0; new MutationObserver(() => window.__changes++)
            .observe(document.getElementById('output'), {childList: true, characterData: true, subtree: true}); }""")
        page.click("#run")
        expect(page.locator("#stats")).to_contain_text("지연", timeout=60_000)
        out = page.locator("#output").inner_text()
        stats = page.locator("#stats").inner_text()
        assert out.strip() and "error" not in (page.locator("#output").get_attribute("class") or ""), out
        assert page.evaluate("window.__changes") >= 2  # deltas arrived, then the final text
        assert re.search(r"토큰 \d+ \+ \d+", stats) and "글자" in stats
        assert "<script>window.__xss = 1</script>" in page.locator("#prompt").text_content()
        assert page.evaluate("window.__xss") is None and not dialogs
        page.screenshot(path=str(shots / "01-playground.png"), full_page=False)
        if os.environ.get("KOLLM_STUDIO_README_SHOT"):
            shutil.copy(shots / "01-playground.png", DOCS_SHOT)

        # save a version: the diff shows the edited examples
        page.fill("input[name=note]", "예시 수정")
        page.click("#save")
        page.wait_for_url("**/apps/qc/versions/2")
        diff = page.locator("#diff").inner_text()
        assert "+1. query='유모챠 추천' -> '유모차 추천 상품'" in diff and "+4. query='노트븍 파우치'" in diff
        page.screenshot(path=str(shots / "02-version-diff.png"), full_page=True)

        # a key for the app, shown once; call the endpoint with it
        page.goto(url + "/apps/qc/keys")
        page.fill("#key-name", "서비스 앱")
        page.click("#create-key")
        page.wait_for_selector("#new-key")
        key = page.locator("#new-key").inner_text().strip()
        page.screenshot(path=str(shots / "03-key.png"))
        r = httpx.post(f"{url}/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"},
                       json={"inputs": {"query": "로봇청소기 추쳔"}, "version": 2}, timeout=60)
        assert r.status_code == 200 and r.json()["version"] == 2 and isinstance(r.json()["output"], str)
        page.reload()
        assert key not in page.content()

        # run the built-in test set on v1 and on v2, then compare the two runs
        for version in ("1", "2"):
            page.goto(url + "/apps/qc/tests")
            form = page.locator("form.run-form").first
            form.locator("select[name=version]").select_option(version)
            form.locator("button").click()
            page.wait_for_url(re.compile(r".*/apps/qc/runs/\d+$"), timeout=120_000)
            assert page.locator("#items tr").count() == 41  # header + 40 items
        page.screenshot(path=str(shots / "04-test-run.png"), full_page=False)
        page.goto(url + "/apps/qc/tests")
        page.click("#compare-runs")
        page.wait_for_url(re.compile(r".*/runs/compare\?.*"))
        assert re.search(r"나빠진 항목 \d+개 / 40", page.locator("#regressions").inner_text())
        page.screenshot(path=str(shots / "05-compare-runs.png"), full_page=False)

        # side by side: two versions on the same input
        page.goto(url + "/apps/qc/compare")
        page.fill("textarea.pg-input[data-var=query]", "무선 이어폰 추쳔")
        page.click("#run-both")
        for side in ("a", "b"):
            expect(page.locator(f".pane[data-side={side}] .stats")).to_contain_text("지연", timeout=60_000)
        page.screenshot(path=str(shots / "06-side-by-side.png"), full_page=False)
        assert not errors, errors
    assert len(list(shots.glob("*.png"))) == 6

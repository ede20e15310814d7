"""Refresh docs/studio.png (the README's screenshot) against a running model server:

    kollm serve --model ~/.cache/kollm/test-models/gemma-3-270m/hf --port 8011 &
    python tests/studio/screenshot.py --model-url http://127.0.0.1:8011/v1

It starts a Studio on a temporary database, sets the password, creates an app from the 검색어 교정 template,
runs the playground on one query and saves the page. (The browser test does the same with the tiny test model when
KOLLM_STUDIO_README_SHOT=1; a real model makes a more telling picture.)"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import expect, sync_playwright

from kollm.studio import StudioConfig
from kollm.studio.server import create_studio

OUT = Path(__file__).resolve().parents[2] / "docs" / "studio.png"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-url", required=True)
    ap.add_argument("--query", default="무선 이어폰 추쳔")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = StudioConfig(model_url=args.model_url, data=tempfile.mkdtemp(), port=port, admin_password="screenshot-pw")
    server = uvicorn.Server(uvicorn.Config(create_studio(cfg), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
        page.goto(url + "/login")
        page.fill("input[name=password]", "screenshot-pw")
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        page.select_option("#template", "search-query-correction")
        page.fill("#slug", "query-fix")
        page.click("text=만들기")
        page.wait_for_url("**/apps/query-fix")
        page.fill("textarea.pg-input[data-var=query]", args.query)
        page.click("#run")
        expect(page.locator("#stats")).to_contain_text("지연", timeout=300_000)
        print("output:", page.locator("#output").inner_text(), file=sys.stderr)
        page.screenshot(path=str(args.out))
        browser.close()
    server.should_exit = True
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Studio fixtures: a logged-in Studio on a scripted model, and a real kollm server on the tiny test model.

tests/studio is a package (it has __init__.py) so this conftest is `studio.conftest` and does not shadow
tests/conftest.py, which other test modules import as `conftest`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import with_window
from fastapi.testclient import TestClient

from .helpers import MADE, FakeModel, log_in, make_studio, required_in_ci

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # live.running: a server in a thread


@pytest.fixture(autouse=True)
def studios_stop_their_workers():
    """A test's Studios stop their job threads when it ends (a TestClient not used as a context manager never
    shuts its app down): a worker left running would meet the next test's emptied database."""
    yield
    while MADE:
        MADE.pop().state.jobs.stop(timeout=10)


@pytest.fixture(autouse=True)
def templates_pass_replies_whole(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in 검색어 교정 keeps only the small edits its output makes to the query (keep_close), so a scripted
    reply that is not a correction of the query (a PII sentence, lines with separators, "유모차 추천" to any
    query) or the tiny model's noise would come back as the query. Tests of streaming, logs, versions and runs
    create apps from templates with keep_close off; a test marked `shipped_templates` gets them as shipped."""
    if request.node.get_closest_marker("shipped_templates"):
        return
    from kollm.studio import builtin, web

    def template(name: str) -> dict:
        t = builtin.template(name)
        t["spec"].keep_close = False
        return t

    monkeypatch.setattr(web, "template", template)


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def studio(tmp_path: Path, fake_model: FakeModel):
    """(TestClient logged in, its CSRF token, the fake model)."""
    client = TestClient(make_studio(tmp_path, fake_model), raise_server_exceptions=False)
    tok = log_in(client)
    return client, tok, fake_model


@pytest.fixture(scope="session")
def studio_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test model with a 2048-token context (RoPE: only the config limit changes), so the built-in
    templates' few-shot prompts fit; its 64-token training context would refuse them."""
    return with_window(tiny_model_dir, tmp_path_factory.mktemp("studio-model") / "model", 2048)


@pytest.fixture(scope="session")
def model_server(studio_model_dir: Path):
    """A real kollm API server on the tiny model; yields its /v1 base URL."""
    from live import running

    from kollm.serve.app import create_app
    from kollm.serve.engine import Engine

    with running(create_app(Engine.load(studio_model_dir))) as url:
        yield f"{url}/v1"




@pytest.fixture(scope="module")
def lora_server(studio_model_dir: Path):
    """A live kollm server on the tiny model that loads adapters at run time (vLLM's runtime LoRA updating); its
    root URL. One per module: adapter names loaded by one module's tests would clash with another's."""
    from live import running

    from kollm.serve.app import create_app
    from kollm.serve.engine import Engine

    with running(create_app(Engine.load(studio_model_dir), allow_runtime_lora=True)) as url:
        yield url


@pytest.fixture
def browser():
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    chromium = "/usr/bin/chromium"
    if not Path(chromium).is_file():
        required_in_ci(f"{chromium} is missing (apt-get install chromium fonts-nanum)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        required_in_ci("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def postgres_url() -> str:
    """The Postgres test database (`KOLLM_TEST_POSTGRES_URL`; required in CI), emptied for each test: the
    migrations must build it from nothing."""
    url = os.environ.get("KOLLM_TEST_POSTGRES_URL")
    if not url:
        required_in_ci("KOLLM_TEST_POSTGRES_URL is not set (a postgresql+psycopg:// URL of an empty test database)")
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: SQLite under the Studio's data folder; else the emptied Postgres test database."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")

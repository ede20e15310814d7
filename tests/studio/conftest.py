"""Studio fixtures: a logged-in Studio on a scripted model, and a real kollm server on the tiny test model.

tests/studio is a package (it has __init__.py) so this conftest is `studio.conftest` and does not shadow
tests/conftest.py, which other test modules import as `conftest`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import with_window
from fastapi.testclient import TestClient

from .helpers import FakeModel, log_in, make_studio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # live.running: a server in a thread


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



"""Schema migrations (Alembic, run at startup) on SQLite and on Postgres (`KOLLM_TEST_POSTGRES_URL`; required in
CI, where `.ci/run` starts Debian's postgresql)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kollm.errors import KollmError
from kollm.studio.db import Base, migrate, open_db

from .helpers import FakeModel, log_in, make_key, make_studio, new_app, run_test_set

TABLES = {"settings", "apps", "versions", "labels", "app_keys", "usage_logs", "test_sets", "test_runs",
          "alembic_version"}


def _head() -> str:
    from pathlib import Path

    from alembic.script import ScriptDirectory

    import kollm.studio.db as db

    return ScriptDirectory(str(Path(db.__file__).parent / "migrations")).get_current_head()


def _check_schema(url: str) -> None:
    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    assert TABLES <= set(insp.get_table_names())
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _head()
    # the migration made what the models describe: every mapped column exists
    for table in Base.metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert {c.name for c in table.columns} <= cols, table.name
    engine.dispose()


def _flow(client: TestClient, fake: FakeModel) -> None:
    """The core of the Studio on this database: template app, a version, a label, a key, a call, a test run."""
    tok = log_in(client)
    assert new_app(client, tok, "qc").status_code == 200
    page = client.get("/apps/qc").text
    assert "유모챠 추천" in page
    r = client.post("/apps/qc/labels", data={"csrf_token": tok, "label": "production", "version": "1"})
    assert r.status_code == 200
    key = make_key(client, tok)
    r = client.post("/v1/apps/qc/run", headers={"Authorization": f"Bearer {key}"}, json={"inputs": {"query": "a"}})
    assert r.status_code == 200 and r.json()["output"] == fake.reply
    ts = re.search(r"/apps/qc/tests/(\d+)/run", client.get("/apps/qc/tests").text).group(1)
    r = run_test_set(client, tok, ts, "1")  # a background job (#25): the helper waits for it
    assert r.status_code == 200 and r.text.count('<td class="out">') == 40
    assert client.get("/apps/qc/logs").status_code == 200


def test_sqlite_migrates_fresh_and_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'a' / 'studio.db'}"
    open_db(url)
    _check_schema(url)
    migrate(url)  # at head already: nothing to do, no error
    _check_schema(url)


def test_sqlite_flow(tmp_path):
    fake = FakeModel()
    _flow(TestClient(make_studio(tmp_path, fake)), fake)
    _check_schema(f"sqlite:///{tmp_path / 'studio' / 'studio.db'}")


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    bad = tmp_path / "studio.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(KollmError, match="cannot open the Studio database"):
        open_db(f"sqlite:///{bad}")


def test_unreachable_postgres_is_one_line_without_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(KollmError) as e:
        open_db("postgresql+psycopg://user:s3cret@127.0.0.1:1/none?connect_timeout=2")
    assert "s3cret" not in str(e.value) and "\n" not in str(e.value)


def test_postgres_migrates_and_runs_the_flow(postgres_url, tmp_path):
    open_db(postgres_url)
    _check_schema(postgres_url)
    migrate(postgres_url)
    fake = FakeModel()
    _flow(TestClient(make_studio(tmp_path, fake, db=postgres_url)), fake)

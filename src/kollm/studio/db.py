"""The Studio's state: SQLAlchemy 2 models and the engine. The schema is created and upgraded by the Alembic
migrations in `migrations/` (run at startup by `open_db`), never by `create_all`, so SQLite and Postgres
databases made by older versions are upgraded in place.

App versions are immutable rows: a save inserts a new `Version`; labels (`production`, `staging`) are rows that
point at a version, so a rollback is an UPDATE of one label, and history is never rewritten."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from kollm.errors import KollmError


class Base(DeclarativeBase):
    pass


def _now() -> float:
    return time.time()


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class App(Base):
    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created: Mapped[float] = mapped_column(Float, default=_now)
    archived: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)  # when; None: in use (0002)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("app_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict] = mapped_column(JSON)  # apps.AppSpec as a dict: template, examples, parameters, ...
    note: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[float] = mapped_column(Float, default=_now)


class Label(Base):
    __tablename__ = "labels"
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    moved: Mapped[float] = mapped_column(Float, default=_now)


class AppKey(Base):
    __tablename__ = "app_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key; the key is never stored
    created: Mapped[float] = mapped_column(Float, default=_now)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class UsageLog(Base):
    __tablename__ = "usage_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # api | playground | test
    created: Mapped[float] = mapped_column(Float, default=_now)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    input_chars: Mapped[int] = mapped_column(Integer, default=0)
    output_chars: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    # the trace of the call (0002): who ran it (playground history), on which model, with what, what came back
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    model: Mapped[str] = mapped_column(String(200), default="")
    inputs: Mapped[dict | None] = mapped_column(JSON, nullable=True, default=None)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)  # as sent: text or chat JSON
    output: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)


class TestSet(Base):
    __tablename__ = "test_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    items: Mapped[list] = mapped_column(JSON)  # [{"inputs": {...}, "expected": str, "contains": [...], ...}]
    created: Mapped[float] = mapped_column(Float, default=_now)


class TestRun(Base):
    __tablename__ = "test_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_sets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[dict] = mapped_column(JSON)  # metric -> mean over the items that have it
    results: Mapped[list] = mapped_column(JSON)  # per item: inputs, expected, output, scores, error
    created: Mapped[float] = mapped_column(Float, default=_now)


# --- users and server-side sessions (migration 0002, #25) ----------------------------------------------------------
class User(Base):
    """A Studio account. `role` is admin (everything, users too), editor (apps, versions, keys, test sets) or
    viewer (reads pages only)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    password: Mapped[str] = mapped_column(String(200))  # security.hash_password's scrypt string
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    created: Mapped[float] = mapped_column(Float, default=_now)


class LoginSession(Base):
    """A browser's session. The cookie holds a random token; this row is keyed by its SHA-256, so reading the
    table does not give anyone a live session. Revoking a session is deleting its row."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True,
                                                index=True)  # None: not logged in yet (holds the CSRF token)
    data: Mapped[dict] = mapped_column(JSON)
    created: Mapped[float] = mapped_column(Float, default=_now)
    seen: Mapped[float] = mapped_column(Float, default=_now)
    expires: Mapped[float] = mapped_column(Float, index=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    agent: Mapped[str] = mapped_column(String(200), default="")


def migrate(url: str) -> None:
    """`alembic upgrade head` on `url`, programmatically (no alembic.ini to ship or find)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
    command.upgrade(cfg, "head")


def open_db(url: str) -> sessionmaker:
    """Migrate the database at `url` to the current schema and return a session factory for it."""
    engine = make_engine(url)
    try:
        migrate(url)
    except Exception as e:  # a wrong password, no server, a file that is not a database: one line, not a traceback
        raise KollmError(f"cannot open the Studio database {_safe(url)}: {str(e).splitlines()[0]}; "
                         "check --db / --data") from None
    return sessionmaker(engine, expire_on_commit=False)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # FastAPI runs sync routes in a thread pool: one SQLite connection may serve several threads in turn
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: object, _record: object) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")  # SQLite ignores ON DELETE CASCADE without it
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _safe(url: str) -> str:
    """`url` without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<the --db URL>"


# --- background jobs and feedback (migration 0003, #25) -------------------------------------------------------------
JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")


class Job(Base):
    """One long task run in the background by the Studio's worker (jobs.py): a test-set run or a tuning run.
    `key` names what the job computes (kind, version, test set, model): a second click while a job with the same
    key is queued or running returns that job instead of starting a duplicate."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # test_run | tune
    key: Mapped[str] = mapped_column(String(300), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # one of JOB_STATES
    params: Mapped[dict] = mapped_column(JSON)  # what the job needs: version, test set, model, tuning settings
    done: Mapped[int] = mapped_column(Integer, default=0)  # progress: items or steps done ...
    total: Mapped[int] = mapped_column(Integer, default=0)  # ... of this many (0: not known yet)
    cancel: Mapped[bool] = mapped_column(Boolean, default=False)  # asked to stop; the worker stops at its next item
    error: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")  # what a user should know that is not an error
    result: Mapped[dict] = mapped_column(JSON, default=dict)  # {"run_id"} or {"version", "adapter", ...}
    created: Mapped[float] = mapped_column(Float, default=_now)
    started: Mapped[float] = mapped_column(Float, default=0.0)
    progressed: Mapped[float] = mapped_column(Float, default=0.0)  # when `done` last moved: rate and ETA
    finished: Mapped[float] = mapped_column(Float, default=0.0)


class Feedback(Base):
    """A person's verdict on one output: good (the output is what was wanted) or corrected (`corrected` is).
    From a test run's item (`run_id`, `item_id`) or a usage-log call (`log_id`). A copy of the inputs and the
    output is kept, so the row stays training data when the run or log it came from is gone."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # run | log
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    item_id: Mapped[str] = mapped_column(String(200), default="")
    log_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    inputs: Mapped[dict] = mapped_column(JSON)
    output: Mapped[str] = mapped_column(Text, default="")
    verdict: Mapped[str] = mapped_column(String(16))  # good | corrected
    corrected: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[float] = mapped_column(Float, default=_now)

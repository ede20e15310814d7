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

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StudioConfig:
    """`kollm studio`: the [studio] section of a recipe, CLI flags on top."""

    model_url: str = "http://127.0.0.1:8000/v1"  # any OpenAI-compatible base URL (kollm serve, vLLM)
    model: str = ""  # model name sent to the server; empty: none (the server uses its own)
    model_api_key: str = ""  # sent as a Bearer token to the model server, when it requires one
    data: str = "~/.local/share/kollm/studio"  # SQLite database, session secret
    db: str = ""  # a SQLAlchemy URL (postgresql://...); empty: SQLite under `data`
    host: str = "127.0.0.1"
    port: int = 8100
    admin_password: str = ""  # set on first start without the browser (headless); else the setup page asks
    max_upload_bytes: int = 1_000_000  # test-set uploads (CSV/JSONL)
    max_items: int = 2000  # test-set items per upload
    timeout_s: float = 300.0  # one model call

    def url(self) -> str:
        """The database URL: `db` if given (postgresql:// is routed to psycopg 3), else SQLite under `data`."""
        from pathlib import Path

        if self.db:
            u = self.db
            for plain in ("postgresql://", "postgres://"):
                if u.startswith(plain):  # SQLAlchemy's default driver is psycopg2; kollm ships psycopg 3
                    u = "postgresql+psycopg://" + u[len(plain):]
            return u
        return f"sqlite:///{Path(self.data).expanduser() / 'studio.db'}"

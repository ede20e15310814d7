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
    # a file variable's image or recording (playground upload, or a data URL sent to the app endpoint: base64
    # makes that 4/3 as many bytes in the request); OCR'd here, transcribed by the model server
    max_file_bytes: int = 10_000_000
    transcribe_model: str = "whisper-1"  # the `model` sent to /v1/audio/transcriptions (kollm serve accepts whisper-1)
    timeout_s: float = 300.0  # one model call
    # "Tune this app": the base model's Hugging Face folder on this machine (the Studio reaches the model server
    # only over HTTP, so it cannot ask it where its weights are); the adapter is written under `data` and loaded
    # into the model server with /v1/load_lora_adapter, so the server must see the same file system
    tune_model: str = ""
    job_workers: int = 1  # background jobs (test-set runs, tuning) at a time; 0: none run (a queue only)
    rate_limit_per_minute: int = 60  # calls of an app endpoint per key per minute (429 beyond; 0: no limit)
    login_attempts: int = 10  # wrong passwords per client address per minute before /login refuses it
    log_content: bool = True  # keep each call's inputs, prompt and output in the usage log (the logs page's trace)

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

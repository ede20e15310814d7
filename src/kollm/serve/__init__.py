"""Stage 7: generation and an OpenAI-compatible HTTP API, on an engine behind a written contract (client.py)."""

from kollm.serve.config import ServeConfig

__all__ = ["ServeConfig"]

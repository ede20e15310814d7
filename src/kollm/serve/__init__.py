"""Stage 6: generation and an OpenAI-compatible HTTP API."""

from kollm.serve.config import ServeConfig

__all__ = ["ServeConfig"]

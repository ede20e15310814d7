"""Stage 1: turn raw Korean text into a clean corpus."""

from kollm.data.config import DataConfig

__all__ = ["DataConfig"]

"""Stage 1: turn raw Korean text into a clean corpus (and, given a tokenizer, token shards)."""

from kollm.data.config import DataConfig

__all__ = ["DataConfig"]

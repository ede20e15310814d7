"""Stage 2: train Korean tokenizers, saved in the Hugging Face `tokenizers` format."""

from __future__ import annotations

from typing import Any

from kollm.tokenizer.config import METHODS, TokenizerConfig

__all__ = ["METHODS", "TokenizerConfig", "load_tokenizer", "save_tokenizer", "train_tokenizer"]


def __getattr__(name: str) -> Any:
    # transformers takes seconds to import; `kollm --help` imports this package, so load it on first use.
    if name in ("load_tokenizer", "save_tokenizer", "train_tokenizer"):
        from kollm.tokenizer import train

        return getattr(train, name)
    raise AttributeError(f"module 'kollm.tokenizer' has no attribute {name!r}")

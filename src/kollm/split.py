"""Held-out splits by hash: which side a row falls on depends on its own text only, never on file order or on
what else is in the file, so adding rows never moves one. Tuning (`tune/examples.split`) and the Studio
(`studio/training.held_out`) split with it."""

from __future__ import annotations

import hashlib


def unit_hash(text: str) -> float:
    """The text's place in [0, 1) (sha1's first 8 bytes; Python's `hash` is salted per process): a row is held out
    when its place is below the held-out fraction."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2**64

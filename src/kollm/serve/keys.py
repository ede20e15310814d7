"""API keys, stored hashed in SQLite (`kollm serve keys create|list|revoke`), and a per-key rate limit.

A key is `kollm-` and 32 random bytes, hashed with plain SHA-256 (`kollm.apikeys`, shared with the Studio's app
keys). The key itself is shown once, at creation; only its hash and a short prefix (to tell keys apart in `list`)
are kept.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from kollm.apikeys import hash_key, new_key, same
from kollm.errors import KollmError

_SCHEMA = """CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL, revoked REAL)"""


class KeyStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _db(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path)
            db.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise KollmError(f"{self.path} is not a kollm key database ({e}); pass another --keys-db") from None
        return db

    def create(self, name: str) -> tuple[str, str]:
        """(key id, the key): the key is never stored, so this is the only time anyone sees it."""
        key = new_key("kollm-")
        kid = secrets.token_hex(4)
        with closing(self._db()) as db, db:
            db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, NULL)",
                       (kid, name, key[:10], hash_key(key), time.time()))
        return kid, key

    def list(self) -> list[dict]:
        with closing(self._db()) as db:
            rows = db.execute("SELECT id, name, prefix, created, revoked FROM keys ORDER BY created").fetchall()
        return [dict(zip(("id", "name", "prefix", "created", "revoked"), r, strict=True)) for r in rows]

    def revoke(self, kid: str) -> None:
        with closing(self._db()) as db, db:
            if db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                          (time.time(), kid)).rowcount == 0:
                raise KollmError(f"no active key with id {kid!r} in {self.path}; `kollm serve keys list` shows them")

    def read(self) -> tuple[bool, set[str]]:
        """(whether any key was ever made, the hashes of the active ones). Keys stay on once one was made:
        revoking the last key locks everyone out, it does not open the server."""
        if not self.path.is_file():
            return False, set()
        with closing(self._db()) as db:
            rows = db.execute("SELECT hash, revoked FROM keys").fetchall()
        return bool(rows), {h for h, revoked in rows if revoked is None}


class Guard:
    """Who may call: the --api-key, or any active key of the store (re-read every few seconds, so a revoked key
    stops working without a restart). Off when neither is set."""

    def __init__(self, api_key: str | None, store: KeyStore | None, refresh_s: float = 5.0) -> None:
        self.api_key, self.store, self.refresh_s = api_key, store, refresh_s
        self._any, self._hashes = False, set()
        self._read_at = -1e9
        self._lock = threading.Lock()

    def _current(self) -> set[str]:
        with self._lock:
            if self.store is not None and time.monotonic() - self._read_at > self.refresh_s:
                (self._any, self._hashes), self._read_at = self.store.read(), time.monotonic()
            return self._hashes

    @property
    def enabled(self) -> bool:
        self._current()
        return bool(self.api_key) or self._any

    def check(self, key: str | None) -> str | None:
        """The caller's identity (a key hash), or None when the key is missing or wrong."""
        if not key:
            return None
        if self.api_key and same(key, self.api_key):
            return hash_key(key)
        h = hash_key(key)
        return h if h in self._current() else None


class RateLimit:
    """A token bucket per caller: `rate` requests per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate, self.burst = rate, burst or max(1.0, 2 * rate)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when allowed, else the seconds to wait before the next request will be."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[who] = (tokens - 1, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.rate

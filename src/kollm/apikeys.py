"""API keys for `kollm serve` (`kollm-...`) and the Studio's app keys (`kst-...`): making one, its stored hash,
comparing secrets, and reading a key from an `Authorization: Bearer` header. One definition, so the two keep
the same rules.

A key is 32 random bytes: high entropy, so a plain SHA-256 is the right hash (a slow password hash buys nothing
against guessing 256 bits, and would cost every request). Key databases already hold these hex digests: the hash
must not change, or every existing key stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 32


def new_key(prefix: str) -> str:
    """A fresh key: `prefix` (it tells a reader which service a leaked key belongs to) + 32 url-safe random bytes."""
    return prefix + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """What is stored and looked up instead of the key: SHA-256 of its UTF-8, as hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def same(a: str, b: str) -> bool:
    """Whether two secrets are equal, in constant time. On bytes: compare_digest refuses non-ASCII str (a header
    decoded as Latin-1 can hold any byte), and a TypeError there would be a 500 instead of a refusal."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def bearer(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme in any case), or None when the header
    is missing, names another scheme or has no token."""
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None

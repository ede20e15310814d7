"""Login, CSRF and app keys.

- The admin password is hashed with scrypt (memory-hard: a stolen database does not give it away cheaply).
- Sessions are Starlette's signed cookie (HttpOnly, SameSite=Lax) with a secret made once under --data.
- Every state-changing UI request carries the session's CSRF token (a form field or the X-CSRF-Token header),
  compared in constant time: SameSite=Lax alone still lets a same-site page or an old browser post forms.
- App keys are `kst-` and 32 random bytes, hashed with plain SHA-256 (`kollm.apikeys`, shared with `kollm serve`'s
  keys). The key is shown once; only its hash and a short prefix are stored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from starlette.requests import Request

from kollm.apikeys import bearer, hash_key, new_key, same
from kollm.errors import KollmError

_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 8
KEY_PREFIX = "kst-"


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${h.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, h = stored.split("$")
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(h) // 2)
    except (ValueError, TypeError):
        return False
    return same(got.hex(), h)


def check_new_password(password: str, confirm: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise KollmError(f"the password needs at least {MIN_PASSWORD} characters")
    if password != confirm:
        raise KollmError("the two passwords differ; type the same password twice")


def password_mark(stored: str) -> str:
    """What ties a session to the password it logged in with, so that changing the password ends every other
    session (a signed cookie has no server-side record to revoke). Taken from the stored hash, whose salt is
    random: the cookie (signed, not encrypted) tells its reader nothing about the password."""
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()[:16]


def session_secret(data: Path) -> str:
    """The cookie-signing secret, made once and kept (mode 0600) so sessions survive restarts."""
    path = Path(data).expanduser() / "session.key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def csrf_token(request: Request) -> str:
    tok = request.session.get("csrf")
    if not tok:
        tok = request.session["csrf"] = secrets.token_urlsafe(32)
    return tok


def csrf_ok(request: Request, sent: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and sent) and same(str(expected), str(sent))


def new_app_key() -> tuple[str, str, str]:
    """(key, prefix, sha256 hex). The key goes to the user once; prefix and hash go to the database."""
    key = new_key(KEY_PREFIX)
    return key, key[:10], hash_key(key)


def app_key(request: Request) -> str | None:
    """The key a caller sent: `Authorization: Bearer <key>`, or `X-API-Key: <key>`."""
    return bearer(request.headers.get("authorization")) or request.headers.get("x-api-key") or None

"""Login, sessions, CSRF, throttling, roles and app keys.

- Passwords are hashed with scrypt (memory-hard: a stolen database does not give them away cheaply).
- Sessions are server-side (`ServerSessions`, the `sessions` table): the cookie (HttpOnly, SameSite=Lax) carries
  only a random token, the row is keyed by its SHA-256. Logging out, changing a password or removing a user
  deletes rows, and a deleted row is a logged-out browser at its next request.
- The first admin is made with a one-time setup token printed on the console (or headless, from the config), not
  by whoever opens the page first.
- Wrong passwords are throttled per client address (`Throttle`): one guessing client cannot lock the admin out.
- App keys are rate-limited per key (`Throttle` again, as a sliding window of calls).
- Every state-changing UI request carries the session's CSRF token (a form field or the X-CSRF-Token header),
  compared in constant time: SameSite=Lax alone still lets a same-site page or an old browser post forms.
- App keys are `kst-` and 32 random bytes, hashed with plain SHA-256 (`kollm.apikeys`, shared with `kollm serve`'s
  keys). The key is shown once; only its hash and a short prefix are stored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections import deque
from http.cookies import SimpleCookie

import anyio
from sqlalchemy import delete
from sqlalchemy.orm import sessionmaker
from starlette.requests import Request

from kollm.apikeys import bearer, hash_key, new_key, same
from kollm.errors import KollmError
from kollm.studio.db import LoginSession
from kollm.studio.messages import msg

_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 8
KEY_PREFIX = "kst-"
ROLES = ("viewer", "editor", "admin")  # each can do what the ones before it can
COOKIE = "kollm_studio"


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
        raise KollmError(msg("password.short", n=MIN_PASSWORD))
    if password != confirm:
        raise KollmError(msg("password.differ"))


def role_allows(have: str | None, need: str) -> bool:
    return have in ROLES and ROLES.index(have) >= ROLES.index(need)


def new_setup_token() -> tuple[str, str]:
    """(token, its SHA-256): the token goes to the console once, the hash to the settings table."""
    token = secrets.token_urlsafe(18)
    return token, hash_key(token)


def setup_token_ok(sent: str | None, stored_hash: str | None) -> bool:
    return bool(sent and stored_hash) and same(hash_key(str(sent).strip()), str(stored_hash))


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


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy, uvicorn's --forwarded-allow-ips makes it the real client's)."""
    return request.client.host if request.client else "unknown"


class Throttle:
    """At most `limit` events per `window` seconds for each key (a client address, an app key): a sliding log of
    event times. Bounded memory: at most `max_keys` keys are tracked, the stalest dropped first."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self.events: dict[str, deque[float]] = {}
        self.lock = threading.Lock()  # the login routes run in worker threads, several at once

    def _log(self, key: str, now: float) -> deque[float]:
        log = self.events.get(key)
        if log is None:
            if len(self.events) >= self.max_keys:
                for k in sorted(self.events, key=lambda k: self.events[k][-1] if self.events[k] else 0.0)[
                        : max(1, self.max_keys // 10)]:
                    del self.events[k]
            log = self.events[key] = deque()
        while log and now - log[0] >= self.window:
            log.popleft()
        return log

    def wait(self, key: str) -> float:
        """Seconds until `key` may act again (0: now)."""
        with self.lock:
            now = time.monotonic()
            log = self._log(key, now)
            return 0.0 if len(log) < self.limit else self.window - (now - log[0])

    def add(self, key: str) -> None:
        with self.lock:
            now = time.monotonic()
            self._log(key, now).append(now)

    def take(self, key: str) -> float:
        """Count one event if allowed; else the seconds to wait (nothing counted)."""
        with self.lock:
            now = time.monotonic()
            log = self._log(key, now)
            if len(log) < self.limit:
                log.append(now)
                return 0.0
            return self.window - (now - log[0])


class SessionData(dict):
    """`request.session`: a dict saved to the `sessions` table when it changes. `rotate()` gives the browser a
    new session token at the end of the request (login, password change: no session fixation)."""

    def __init__(self, data: dict, sid: str | None) -> None:
        super().__init__(data)
        self.sid, self.rotated, self.original = sid, False, dict(data)

    def rotate(self) -> None:
        self.rotated = True


class ServerSessions:
    """ASGI middleware: `scope["session"]` from the `sessions` row the cookie's token names (empty when there is
    none: never logged in, logged out, revoked or expired), written back when it changed. Database work runs in a
    worker thread, never on the event loop."""

    PURGE_EVERY = 50  # new sessions between deletions of expired rows

    def __init__(self, app: object, db: sessionmaker, max_age: int = 14 * 24 * 3600, anon_age: int = 3600,
                 https_only: bool = False) -> None:
        self.app, self.db, self.max_age, self.anon_age, self.https_only = app, db, max_age, anon_age, https_only
        self.inserts = 0

    @staticmethod
    def _token(scope: dict) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                c = SimpleCookie()
                try:
                    c.load(value.decode("latin-1"))
                except Exception:  # a malformed Cookie header is no session, not a crash
                    return None
                if COOKIE in c:
                    tok = c[COOKIE].value
                    return tok if 20 <= len(tok) <= 100 else None
        return None

    def _load(self, token: str | None) -> SessionData:
        if not token:
            return SessionData({}, None)
        sid = hash_key(token)
        with self.db() as s:
            row = s.get(LoginSession, sid)
            if row is None:
                return SessionData({}, None)
            if row.expires < time.time():
                s.delete(row)
                s.commit()
                return SessionData({}, None)
            return SessionData(dict(row.data or {}), sid)

    def _cookie(self, token: str, max_age: int) -> bytes:
        flags = "; Secure" if self.https_only else ""
        return f"{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{flags}".encode("latin-1")

    def _save(self, sess: SessionData, scope: dict) -> bytes | None:
        """Write the session back; the Set-Cookie header value to send, if any."""
        data = dict(sess)
        if not sess.rotated and data == sess.original:
            return None
        now = time.time()
        with self.db() as s:
            if sess.sid and (sess.rotated or not data):
                s.execute(delete(LoginSession).where(LoginSession.id == sess.sid))
                s.commit()
            if not data:
                return self._cookie("", 0) if sess.sid else None
            if sess.sid and not sess.rotated:
                row = s.get(LoginSession, sess.sid)
                if row is None:  # revoked while this request ran: stay revoked
                    return self._cookie("", 0)
                row.data, row.user_id, row.seen = data, data.get("uid"), now
                s.commit()
                return None
            token = secrets.token_urlsafe(32)
            headers = dict(scope.get("headers", ()))
            age = self.max_age if data.get("uid") else self.anon_age
            s.add(LoginSession(id=hash_key(token), user_id=data.get("uid"), data=data, created=now, seen=now,
                               expires=now + age, address=(scope.get("client") or ("",))[0][:64],
                               agent=headers.get(b"user-agent", b"").decode("latin-1")[:200]))
            self.inserts += 1
            if self.inserts % self.PURGE_EVERY == 0:
                s.execute(delete(LoginSession).where(LoginSession.expires < now))
            s.commit()
            sess.sid = hash_key(token)
            return self._cookie(token, age)

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sess = await anyio.to_thread.run_sync(self._load, self._token(scope))
        scope["session"] = sess

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                cookie = await anyio.to_thread.run_sync(self._save, sess, scope)
                if cookie is not None:
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, sending)


def end_sessions(s: object, user_id: int) -> None:
    """Delete every session of a user (password changed, user removed or demoted): each is logged out."""
    s.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
    s.commit()

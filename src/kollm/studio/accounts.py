"""Studio accounts: users with a role (admin, editor, viewer), their passwords, and the one-time setup token.

The first admin is made either headless (`--admin-password` / KOLLM_STUDIO_PASSWORD) or on /setup with the
token printed on the console at start: not by whoever opens the page first."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kollm.errors import KollmError
from kollm.studio.db import User
from kollm.studio.messages import msg
from kollm.studio.security import ROLES, check_new_password, check_password, end_sessions, hash_password
from kollm.studio.store import NotFound, get_setting, set_setting

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
SETUP_TOKEN = "setup_token"  # settings key: the SHA-256 of the current setup token


def any_user(s: Session) -> bool:
    return s.scalar(select(func.count()).select_from(User)) > 0


def get_user(s: Session, user_id: int | None) -> User | None:
    return s.get(User, user_id) if user_id is not None else None


def by_name(s: Session, name: str) -> User | None:
    return s.scalar(select(User).where(User.name == name))


def users(s: Session) -> list[User]:
    return list(s.scalars(select(User).order_by(User.id)))


def authenticate(s: Session, name: str, password: str) -> User | None:
    """The user, if the password is theirs. An unknown name costs a hash as well, so timing tells no names."""
    user = by_name(s, name.strip().lower())
    if user is None:
        check_password(password, hash_password("not a user"))
        return None
    return user if check_password(password, user.password) else None


def create_user(s: Session, name: str, password: str, confirm: str, role: str) -> User:
    name = name.strip().lower()
    if not NAME.match(name):
        raise KollmError(msg("user.name", name=name))
    if role not in ROLES:
        raise KollmError(msg("role.unknown", role=role))
    check_new_password(password, confirm)
    if by_name(s, name) is not None:
        raise KollmError(msg("user.exists", name=name))
    user = User(name=name, password=hash_password(password), role=role)
    s.add(user)
    s.commit()
    return user


def set_password(s: Session, user: User, password: str, confirm: str) -> None:
    """A new password; every session of the user ends (the caller starts a new one for this browser)."""
    check_new_password(password, confirm)
    user.password = hash_password(password)
    s.commit()
    end_sessions(s, user.id)


def _admins(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(User).where(User.role == "admin"))


def set_role(s: Session, name: str, role: str) -> None:
    if role not in ROLES:
        raise KollmError(msg("role.unknown", role=role))
    user = by_name(s, name)
    if user is None:
        raise NotFound(msg("user.missing", name=name))
    if user.role == "admin" and role != "admin" and _admins(s) <= 1:
        raise KollmError(msg("user.last_admin"))
    user.role = role
    s.commit()
    end_sessions(s, user.id)  # a changed role applies at once: the user logs in again


def delete_user(s: Session, name: str) -> None:
    user = by_name(s, name)
    if user is None:
        raise NotFound(msg("user.missing", name=name))
    if user.role == "admin" and _admins(s) <= 1:
        raise KollmError(msg("user.last_admin"))
    s.delete(user)  # its sessions go with it (ON DELETE CASCADE)
    s.commit()
    end_sessions(s, user.id)


def first_admin(s: Session, password: str) -> None:
    """The headless setup: the admin `admin`, made once (later, /password changes it)."""
    if not any_user(s):
        create_user(s, "admin", password, password, "admin")
        set_setting(s, SETUP_TOKEN, "")


def setup_token_hash(s: Session) -> str | None:
    return get_setting(s, SETUP_TOKEN) or None

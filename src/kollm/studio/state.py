"""What the routes (`web.py`, `api.py`) share with the application that mounts them (`server.py`): the app's
`State`, and the two exceptions a route raises for the app's handlers to answer. Here, not in `server.py`, so
the routes need not import the module that imports them."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment
from sqlalchemy.orm import sessionmaker

from kollm.studio.client import ModelClient
from kollm.studio.config import StudioConfig


class Redirect(Exception):
    """Send the browser to `url` (a JSON caller gets 401 instead)."""

    def __init__(self, url: str) -> None:
        self.url = url


class Forbidden(Exception):
    """Refuse with `status` and a one-line message (403 unless given)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class State:
    cfg: StudioConfig
    db: sessionmaker
    client: ModelClient
    env: Environment

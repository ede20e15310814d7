"""Database operations the UI and the API share: apps, immutable versions, labels, keys, usage, test sets."""

from __future__ import annotations

import time

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kollm.apikeys import hash_key
from kollm.errors import KollmError
from kollm.studio.apps import LABELS, AppSpec, check_slug
from kollm.studio.db import App, AppKey, Label, Setting, TestRun, TestSet, UsageLog, Version
from kollm.studio.runner import Outcome
from kollm.studio.security import new_app_key


class NotFound(KollmError):
    """Asked for something that does not exist (404, not 400)."""


def get_setting(s: Session, key: str) -> str | None:
    row = s.get(Setting, key)
    return row.value if row else None


def set_setting(s: Session, key: str, value: str) -> None:
    row = s.get(Setting, key)
    if row:
        row.value = value
    else:
        s.add(Setting(key=key, value=value))
    s.commit()


def get_app(s: Session, slug: str) -> App:
    app = s.scalar(select(App).where(App.slug == slug))
    if app is None:
        raise NotFound(f"there is no app {slug!r}")
    return app


def list_apps(s: Session) -> list[App]:
    return list(s.scalars(select(App).order_by(App.created.desc(), App.id.desc())))


def create_app(s: Session, slug: str, name: str, spec: AppSpec) -> App:
    check_slug(slug)
    spec.check()
    if s.scalar(select(App).where(App.slug == slug)) is not None:
        raise KollmError(f"an app with the id {slug!r} already exists; choose another id")
    app = App(slug=slug, name=(name or slug)[:200])
    s.add(app)
    s.flush()
    s.add(Version(app_id=app.id, number=1, spec=spec.to_dict(), note="created"))
    s.commit()
    return app


def versions(s: Session, app: App) -> list[Version]:
    return list(s.scalars(select(Version).where(Version.app_id == app.id).order_by(Version.number.desc())))


def get_version(s: Session, app: App, number: int) -> Version:
    v = s.scalar(select(Version).where(Version.app_id == app.id, Version.number == number))
    if v is None:
        raise NotFound(f"app {app.slug!r} has no version {number}")
    return v


def latest(s: Session, app: App) -> Version:
    v = s.scalar(select(Version).where(Version.app_id == app.id).order_by(Version.number.desc()).limit(1))
    if v is None:
        raise NotFound(f"app {app.slug!r} has no versions")
    return v


def labels(s: Session, app: App) -> dict[str, int]:
    return {lb.name: lb.version for lb in s.scalars(select(Label).where(Label.app_id == app.id))}


def resolve(s: Session, app: App, label: str | None = None, version: int | None = None) -> Version:
    """A pinned version number, else a label (`latest` is the newest version), else production, else latest."""
    if version is not None:
        return get_version(s, app, version)
    if label and label != "latest":
        if label not in LABELS:
            raise KollmError(f"label must be one of {', '.join(LABELS)} or latest, got {label!r}")
        lb = s.get(Label, (app.id, label))
        if lb is None:
            raise NotFound(f"app {app.slug!r} has no version labelled {label!r}; label one first")
        return get_version(s, app, lb.version)
    if label is None:
        lb = s.get(Label, (app.id, "production"))
        if lb is not None:
            return get_version(s, app, lb.version)
    return latest(s, app)


def save_version(s: Session, app: App, spec: AppSpec, note: str = "") -> Version:
    """A new immutable version (numbers only grow; an unchanged spec is not saved twice)."""
    spec.check()
    last = latest(s, app)
    if last.spec == spec.to_dict():
        return last
    for _ in range(3):  # two saves at once: the unique (app, number) constraint makes one retry
        n = (s.scalar(select(func.max(Version.number)).where(Version.app_id == app.id)) or 0) + 1
        v = Version(app_id=app.id, number=n, spec=spec.to_dict(), note=note[:500])
        s.add(v)
        try:
            s.commit()
            return v
        except IntegrityError:
            s.rollback()
    raise KollmError("another save happened at the same moment; save again")


def move_label(s: Session, app: App, label: str, number: int) -> None:
    """Point `label` at version `number` (a rollback is moving it back)."""
    if label not in LABELS:
        raise KollmError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    get_version(s, app, number)
    lb = s.get(Label, (app.id, label))
    if lb is None:
        s.add(Label(app_id=app.id, name=label, version=number))
    else:
        lb.version, lb.moved = number, time.time()
    s.commit()


def create_key(s: Session, app: App, name: str) -> tuple[AppKey, str]:
    key, prefix, digest = new_app_key()
    row = AppKey(app_id=app.id, name=(name.strip() or "key")[:200], prefix=prefix, hash=digest)
    s.add(row)
    s.commit()
    return row, key


def app_keys(s: Session, app: App) -> list[AppKey]:
    return list(s.scalars(select(AppKey).where(AppKey.app_id == app.id).order_by(AppKey.id)))


def revoke_key(s: Session, app: App, key_id: int) -> None:
    row = s.get(AppKey, key_id)
    if row is None or row.app_id != app.id:
        raise NotFound(f"app {app.slug!r} has no key {key_id}")
    row.revoked = True
    s.commit()


def key_ok(s: Session, app: App, key: str | None) -> bool:
    if not key:
        return False
    row = s.scalar(select(AppKey).where(AppKey.hash == hash_key(key)))
    return row is not None and row.app_id == app.id and not row.revoked


def log_usage(s: Session, app: App, version: int, source: str, out: Outcome) -> None:
    s.add(UsageLog(app_id=app.id, version=version, source=source, latency_ms=out.latency_ms,
                   prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                   input_chars=out.input_chars, output_chars=out.output_chars, error=out.error[:1000]))
    s.commit()


def usage(s: Session, app: App, limit: int = 100) -> tuple[list[dict], list[UsageLog]]:
    """Per (version, source): calls, errors, mean latency, tokens and characters; and the latest calls."""
    rows = s.execute(
        select(UsageLog.version, UsageLog.source, func.count(),
               func.sum(case((func.length(UsageLog.error) > 0, 1), else_=0)),
               func.avg(UsageLog.latency_ms), func.sum(UsageLog.prompt_tokens), func.sum(UsageLog.completion_tokens),
               func.sum(UsageLog.input_chars), func.sum(UsageLog.output_chars))
        .where(UsageLog.app_id == app.id).group_by(UsageLog.version, UsageLog.source)
        .order_by(UsageLog.version.desc(), UsageLog.source)).all()
    agg = [{"version": v, "source": src, "calls": n, "errors": int(err or 0), "latency_ms": lat or 0.0,
            "prompt_tokens": int(pt or 0), "completion_tokens": int(ct or 0), "input_chars": int(ic or 0),
            "output_chars": int(oc or 0)} for v, src, n, err, lat, pt, ct, ic, oc in rows]
    recent = list(s.scalars(select(UsageLog).where(UsageLog.app_id == app.id)
                            .order_by(UsageLog.id.desc()).limit(limit)))
    return agg, recent


def add_test_set(s: Session, app: App, name: str, items: list[dict]) -> TestSet:
    ts = TestSet(app_id=app.id, name=name[:200] or "test set", items=items)
    s.add(ts)
    s.commit()
    return ts


def test_sets(s: Session, app: App) -> list[TestSet]:
    return list(s.scalars(select(TestSet).where(TestSet.app_id == app.id).order_by(TestSet.id)))


def get_test_set(s: Session, app: App, ts_id: int) -> TestSet:
    ts = s.get(TestSet, ts_id)
    if ts is None or ts.app_id != app.id:
        raise NotFound(f"app {app.slug!r} has no test set {ts_id}")
    return ts


def add_run(s: Session, app: App, ts: TestSet, version: int, model: str, summary: dict, results: list) -> TestRun:
    run = TestRun(app_id=app.id, test_set_id=ts.id, version=version, model=model, summary=summary, results=results)
    s.add(run)
    s.commit()
    return run


def runs(s: Session, app: App) -> list[TestRun]:
    return list(s.scalars(select(TestRun).where(TestRun.app_id == app.id).order_by(TestRun.id.desc())))


def get_run(s: Session, app: App, run_id: int) -> TestRun:
    run = s.get(TestRun, run_id)
    if run is None or run.app_id != app.id:
        raise NotFound(f"app {app.slug!r} has no test run {run_id}")
    return run

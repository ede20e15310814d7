"""Database operations the UI and the API share: apps, immutable versions, labels, keys, usage, test sets."""

from __future__ import annotations

import json
import time

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kollm.apikeys import hash_key
from kollm.errors import KollmError
from kollm.studio.apps import LABELS, AppSpec, check_slug
from kollm.studio.db import App, AppKey, Label, Setting, TestRun, TestSet, UsageLog, Version
from kollm.studio.messages import msg
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
        raise NotFound(msg("app.missing", slug=slug))
    return app


def list_apps(s: Session) -> list[App]:
    return list(s.scalars(select(App).where(App.archived.is_(None)).order_by(App.created.desc(), App.id.desc())))


def create_app(s: Session, slug: str, name: str, spec: AppSpec) -> App:
    check_slug(slug)
    spec.check()
    if s.scalar(select(App).where(App.slug == slug)) is not None:
        raise KollmError(f"an app with the id {slug!r} already exists; choose another id")
    app = App(slug=slug, name=(name or slug)[:200])
    s.add(app)
    s.flush()
    s.add(Version(app_id=app.id, number=1, spec=spec.to_dict(), note="created"))
    # the endpoint serves `production`, set at once: a later draft saved as v2 does not change the live API (#25)
    s.add(Label(app_id=app.id, name="production", version=1))
    s.commit()
    return app


def versions(s: Session, app: App) -> list[Version]:
    return list(s.scalars(select(Version).where(Version.app_id == app.id).order_by(Version.number.desc())))


def get_version(s: Session, app: App, number: int) -> Version:
    v = s.scalar(select(Version).where(Version.app_id == app.id, Version.number == number))
    if v is None:
        raise NotFound(msg("version.missing", slug=app.slug, n=number))
    return v


def latest(s: Session, app: App) -> Version:
    v = s.scalar(select(Version).where(Version.app_id == app.id).order_by(Version.number.desc()).limit(1))
    if v is None:
        raise NotFound(f"app {app.slug!r} has no versions")
    return v


def labels(s: Session, app: App) -> dict[str, int]:
    return {lb.name: lb.version for lb in s.scalars(select(Label).where(Label.app_id == app.id))}


def resolve(s: Session, app: App, label: str | None = None, version: int | None = None) -> Version:
    """A pinned version number, else a label (`latest`, the newest version, only when asked for by name), else
    production. No production label is an error, never a silent fall-back to the newest draft."""
    if version is not None:
        return get_version(s, app, version)
    if label == "latest":
        return latest(s, app)
    label = label or "production"
    if label not in LABELS:
        raise KollmError(msg("label.unknown", labels=", ".join((*LABELS, "latest")), label=label))
    lb = s.get(Label, (app.id, label))
    if lb is None:
        raise NotFound(msg("label.none", slug=app.slug, label=label))
    return get_version(s, app, lb.version)


def save_version(s: Session, app: App, spec: AppSpec, note: str = "") -> Version:
    """A new immutable version (numbers only grow; an unchanged spec is not saved twice)."""
    spec.check()
    last = latest(s, app)
    if AppSpec.from_dict(last.spec) == spec:  # read through from_dict: a version stored before a field existed
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
        raise NotFound(msg("key.missing", slug=app.slug, id=key_id))
    row.revoked = True
    s.commit()


def key_ok(s: Session, app: App, key: str | None) -> bool:
    if not key:
        return False
    row = s.scalar(select(AppKey).where(AppKey.hash == hash_key(key)))
    return row is not None and row.app_id == app.id and not row.revoked


def log_usage(s: Session, app: App, version: int, source: str, out: Outcome, trace: dict | None = None) -> UsageLog:
    """One call's measurements; `trace` adds what the logs page shows of it: {"inputs", "prompt" (text or chat
    messages, as sent), "model", "user_id"}. The output is kept with the trace."""
    t = trace or {}
    prompt = t.get("prompt")
    row = UsageLog(app_id=app.id, version=version, source=source, latency_ms=out.latency_ms,
                   prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                   input_chars=out.input_chars, output_chars=out.output_chars, error=out.error[:1000],
                   user_id=t.get("user_id"), model=str(t.get("model") or "")[:200], inputs=t.get("inputs"),
                   prompt=None if prompt is None else prompt if isinstance(prompt, str)
                   else json.dumps(prompt, ensure_ascii=False),
                   output=out.output if trace is not None else None)
    s.add(row)
    s.commit()
    return row


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
        raise NotFound(msg("testset.missing", slug=app.slug, id=ts_id))
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


# --- archive, delete, traces (#25) --------------------------------------------------------------------------------
def archive_app(s: Session, app: App) -> None:
    """Hide the app from the list and revoke all its keys (its API stops at once); restore brings it back
    without keys (make new ones: a revoked key stays revoked)."""
    app.archived = time.time()
    s.execute(update(AppKey).where(AppKey.app_id == app.id).values(revoked=True))
    s.commit()


def restore_app(s: Session, app: App) -> None:
    app.archived = None
    s.commit()


def archived_apps(s: Session) -> list[App]:
    return list(s.scalars(select(App).where(App.archived.is_not(None)).order_by(App.archived.desc())))


def delete_app(s: Session, app: App) -> None:
    """The app and everything of it (versions, labels, keys, logs, test sets and runs: ON DELETE CASCADE)."""
    s.execute(delete(App).where(App.id == app.id))
    s.commit()


def delete_test_set(s: Session, app: App, ts_id: int) -> None:
    """A test set and its runs (cascade)."""
    ts = get_test_set(s, app, ts_id)
    s.execute(delete(TestSet).where(TestSet.id == ts.id))
    s.commit()


def get_log(s: Session, app: App, log_id: int) -> UsageLog:
    row = s.get(UsageLog, log_id)
    if row is None or row.app_id != app.id:
        raise NotFound(msg("log.missing", slug=app.slug, id=log_id))
    return row


def history(s: Session, app: App, user_id: int, limit: int = 20) -> list[UsageLog]:
    """This user's last playground runs of the app, newest first."""
    return list(s.scalars(select(UsageLog).where(UsageLog.app_id == app.id, UsageLog.source == "playground",
                                                 UsageLog.user_id == user_id)
                          .order_by(UsageLog.id.desc()).limit(limit)))

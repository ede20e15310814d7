"""Background jobs: one queue for every long task (test-set runs, tuning runs), so no request handler waits on
more than one model call.

A job is a row (`db.Job`: kind, status, progress n/N, error, result); the Studio process runs `job_workers` worker
threads (1 by default: on a CPU the model server is the bottleneck, and a second job would only halve both) that
claim queued rows one at a time with a conditional UPDATE, so two workers never take the same job. Progress and
the cancel flag go through the database, so the job page (and its JSON) reads the same thing from any request.

Survival across a restart: a job found `running` when the Studio starts was cut off. A tuning run is queued again
and continues from its last checkpoint (`kollm tune --resume`, which is kill -9 safe); a test-set run is marked
`interrupted` with how far it got (run it again; a half run would be a misleading score). Nothing is silently lost.

Tuning runs `kollm tune` in a subprocess (`python -m kollm.cli tune`, the same code as the command): its ~1 GB of
weights and optimiser state leave with the process when it ends, a crash in it cannot take the Studio down, and
cancelling it is ending the process (its checkpoints and adapter are written atomically, so a kill leaves either
the previous or the new file)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from kollm.errors import KollmError
from kollm.files import read_jsonl
from kollm.studio import store
from kollm.studio.apps import AppSpec
from kollm.studio.client import ModelClient
from kollm.studio.config import StudioConfig
from kollm.studio.db import App, Job, TestRun
from kollm.studio.messages import msg
from kollm.studio.runner import Outcome
from kollm.studio.testsets import run_items, summarize
from kollm.studio.training import export_rows, gather, jsonl, tune_template, tuned_spec

log = logging.getLogger("kollm.studio.jobs")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled", "interrupted")
KINDS = ("test_run", "tune")


class Stopping(Exception):
    """The Studio is shutting down: leave the job `running`, so the next start resumes or marks it."""


# --- the rows -----------------------------------------------------------------------------------------------------
def submit(s: Session, app: App, kind: str, key: str, params: dict, total: int = 0) -> tuple[Job, bool]:
    """Queue a job, or return the queued/running one with the same key (a second click is not a second run).
    Returns (job, created)."""
    same = s.scalar(select(Job).where(Job.app_id == app.id, Job.key == key, Job.status.in_(ACTIVE))
                    .order_by(Job.id).limit(1))
    if same is not None:
        return same, False
    job = Job(app_id=app.id, kind=kind, key=key[:300], status="queued", params=params, total=total, result={})
    s.add(job)
    s.commit()
    return job, True


def submit_test_run(s: Session, app: App, version: int, test_set_id: int, model: str = "") -> tuple[Job, bool]:
    ts = store.get_test_set(s, app, test_set_id)
    store.get_version(s, app, version)
    return submit(s, app, "test_run", f"test_run:v{version}:ts{ts.id}:{model}",
                  {"version": version, "test_set": ts.id, "model": model}, total=len(ts.items))


def get_job(s: Session, job_id: int, app: App | None = None) -> Job:
    job = s.get(Job, job_id)
    if job is None or (app is not None and job.app_id != app.id):
        raise store.NotFound(msg("job.missing", id=job_id))
    return job


def list_jobs(s: Session, app: App | None = None, limit: int = 100) -> list[Job]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    return list(s.scalars(q.where(Job.app_id == app.id) if app is not None else q))


def cancel(s: Session, job: Job) -> Job:
    """A queued job is cancelled now; a running one is asked to stop (at its next item or step)."""
    if job.status == "queued":
        s.execute(update(Job).where(Job.id == job.id, Job.status == "queued")
                  .values(status="cancelled", finished=time.time(), note="cancelled before it started"))
    elif job.status == "running":
        job.cancel = True
    s.commit()
    s.refresh(job)
    return job


def view(job: Job, now: float | None = None) -> dict:
    """The job as its page and its JSON show it: progress, rate and ETA from when it started."""
    now = now or time.time()
    rate = eta = None
    if job.status == "running" and job.done > 0 and job.progressed > job.started > 0:
        rate = job.done / (job.progressed - job.started)
        if job.total > job.done:
            eta = max(0.0, (job.total - job.done) / rate - (now - job.progressed))
    return {"id": job.id, "kind": job.kind, "status": job.status, "done": job.done, "total": job.total,
            "rate_per_s": rate, "eta_s": eta, "cancel_requested": bool(job.cancel), "error": job.error,
            "note": job.note, "result": job.result or {}, "params": job.params, "created": job.created,
            "started": job.started or None, "finished": job.finished or None,
            "elapsed_s": ((job.finished or now) - job.started) if job.started else None}


def recover(db: sessionmaker) -> list[int]:
    """At startup: a job left `running` was cut off by a stop or crash. Tuning is queued again to resume from its
    checkpoint; a test-set run is marked interrupted. Returns the ids touched."""
    touched = []
    with db() as s:
        for job in s.scalars(select(Job).where(Job.status == "running")):
            touched.append(job.id)
            if job.cancel:  # it was being cancelled anyway
                job.status, job.finished = "cancelled", time.time()
            elif job.kind == "tune":
                job.status, job.params = "queued", {**job.params, "resume": True}
                job.note = msg("job.resumed")
            else:
                job.status, job.finished = "interrupted", time.time()
                job.error = msg("job.interrupted", done=job.done, total=job.total)
        s.commit()
    return touched


def _claim(db: sessionmaker) -> int | None:
    with db() as s:
        for jid in s.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(5)):
            now = time.time()
            got = s.execute(update(Job).where(Job.id == jid, Job.status == "queued").values(
                status="running", started=now, progressed=now, cancel=False))
            s.commit()
            if got.rowcount == 1:
                return jid
    return None


def _set(db: sessionmaker, job_id: int, **values: object) -> None:
    with db() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        s.commit()


def _cancelled(db: sessionmaker, job_id: int) -> bool:
    with db() as s:
        return bool(s.scalar(select(Job.cancel).where(Job.id == job_id)))


# --- the workers --------------------------------------------------------------------------------------------------
class Worker:
    """The Studio's job runner: `workers` threads that claim queued jobs; `wake()` when one is queued."""

    def __init__(self, db: sessionmaker, cfg: StudioConfig, client: ModelClient, data: Path) -> None:
        self.db, self.cfg, self.client, self.data = db, cfg, client, data
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._procs: dict[int, subprocess.Popen] = {}

    def start(self) -> Worker:
        recover(self.db)
        for i in range(max(0, self.cfg.job_workers)):
            t = threading.Thread(target=self._loop, name=f"kollm-studio-jobs-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the threads and any tuning process; running jobs stay `running` for the next start to resume."""
        self._stop.set()
        self._wake.set()
        for p in list(self._procs.values()):
            _end(p)
        for t in self._threads:
            t.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                jid = _claim(self.db)
            except Exception as e:  # the database went away for a moment: try again at the next wake-up
                log.warning("studio jobs: cannot read the queue (%s: %s)", type(e).__name__, e)
                jid = None
            if jid is None:
                # idle until this process queues a job (submit -> wake) or stops: no polling, so an idle
                # Studio makes no database calls; one Studio process per database runs its jobs
                self._wake.wait(300.0)
                continue
            try:
                self._run(jid)
            except Exception as e:  # the database went away while the job ended: the job stays `running`, and
                # the next start marks it (recover); this thread goes on with the queue
                log.warning("studio job %d: cannot record its end (%s: %s)", jid, type(e).__name__, e)

    def _run(self, jid: int) -> None:
        with self.db() as s:
            job = s.get(Job, jid)
            kind, params, app_id = job.kind, dict(job.params), job.app_id
        try:
            if kind == "test_run":
                result, note = self._test_run(jid, app_id, params)
            elif kind == "tune":
                result, note = self._tune(jid, app_id, params)
            else:
                raise KollmError(f"unknown job kind {kind!r}")
        except Stopping:
            return
        except KollmError as e:
            _set(self.db, jid, status="failed", error=str(e)[:2000], finished=time.time())
            return
        except Exception as e:  # a bug or a broken environment: the job says so, the worker lives on
            log.exception("studio job %d failed", jid)
            _set(self.db, jid, status="failed", error=f"{type(e).__name__}: {e}"[:2000], finished=time.time())
            return
        if self.stopping:
            return
        cancelled = result is None
        _set(self.db, jid, status="cancelled" if cancelled else "done", result=result or {}, note=note,
             finished=time.time())

    # --- a test-set run -----------------------------------------------------------------------------------------
    def _test_run(self, jid: int, app_id: int, p: dict) -> tuple[dict | None, str]:
        with self.db() as s:
            app = s.get(App, app_id)
            ts = store.get_test_set(s, app, int(p["test_set"]))
            v = store.get_version(s, app, int(p["version"]))
            items, spec, number = list(ts.items), AppSpec.from_dict(v.spec), v.number
        model = str(p.get("model") or "")
        done = 0
        _set(self.db, jid, total=len(items))

        def on_done(row: dict) -> None:
            nonlocal done
            done += 1
            with self.db() as s:
                store.log_usage(s, s.get(App, app_id), number, "test", Outcome(
                    output=row["output"], prompt_tokens=row["prompt_tokens"],
                    completion_tokens=row["completion_tokens"], input_chars=row.get("input_chars", 0),
                    output_chars=len(row["output"]), latency_ms=row["latency_ms"], error=row["error"]),
                    {"inputs": row["inputs"], "model": model})  # traced like a playground call (the logs page)
                s.execute(update(Job).where(Job.id == jid).values(done=done, progressed=time.time()))
                s.commit()

        def stop() -> bool:
            return self.stopping or _cancelled(self.db, jid)

        results = asyncio.run(run_items(self.client, spec, items, model, on_done=on_done, stop=stop))
        if self.stopping:
            raise Stopping
        if any(r.get("skipped") for r in results):
            return None, msg("job.stopped", done=done, total=len(items))
        with self.db() as s:
            app = s.get(App, app_id)
            run = store.add_run(s, app, store.get_test_set(s, app, int(p["test_set"])), number,
                                spec.model or model or self.cfg.model, summarize(results), results)
            return {"run_id": run.id, "url": f"/apps/{app.slug}/runs/{run.id}"}, ""

    # --- a tuning run -------------------------------------------------------------------------------------------
    def _tune(self, jid: int, app_id: int, p: dict) -> tuple[dict | None, str]:
        base_model = Path(str(p.get("base_model") or self.cfg.tune_model)).expanduser()
        with self.db() as s:
            app = s.get(App, app_id)
            slug = app.slug
            v = store.get_version(s, app, int(p["version"]))
            spec, number = AppSpec.from_dict(v.spec), v.number
        work = self.data / "tune" / slug / f"job-{jid}"
        run_dir = work / "run"
        resume = bool(p.get("resume")) and (run_dir / "checkpoint" / "state.pt").is_file()
        if not resume:
            self._write_inputs(work, app_id, spec, p)
        cmd = [sys.executable, "-m", "kollm.cli", "tune", "--model", str(base_model), "--data",
               str(work / "train.jsonl"), "--out", str(run_dir), "--recipe", str(work / "recipe.toml")]
        if resume:
            cmd.append("--resume")
        elif run_dir.exists():  # a restart before the first checkpoint: start over in a clean folder
            shutil.rmtree(run_dir)
        steps = int(p.get("steps", 0))
        _set(self.db, jid, total=steps)
        with open(work / "tune.log", "a", encoding="utf-8") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
            self._procs[jid] = proc
            try:
                cancelled = self._watch(jid, proc, run_dir / "metrics.jsonl")
            finally:
                self._procs.pop(jid, None)
        if self.stopping:
            raise Stopping
        if cancelled:
            return None, msg("tune.cancelled", path=run_dir)
        if proc.returncode != 0:
            raise KollmError(msg("tune.failed", error=_last_error(work / "tune.log"), log=work / "tune.log"))
        return self._publish(jid, app_id, slug, spec, number, run_dir, p)

    def _write_inputs(self, work: Path, app_id: int, spec: AppSpec, p: dict) -> None:
        """train.jsonl (train rows only), held_out.jsonl (to look at; never given to kollm tune) and the recipe."""
        work.mkdir(parents=True, exist_ok=True)
        with self.db() as s:
            data = gather(s, s.get(App, app_id), spec, tuple(p.get("sources") or ()))
        train = data.of("train")
        if len(train) < 2:
            raise KollmError(msg("training.few", n=len(train)))
        (work / "train.jsonl").write_text(jsonl(export_rows(train, spec)), encoding="utf-8")
        (work / "held_out.jsonl").write_text(jsonl(export_rows(data.of("held-out"), spec)), encoding="utf-8")
        steps = int(p["steps"])
        tune = {"method": p.get("method", "lora"), "steps": steps, "lr": float(p["lr"]),
                "lora_r": int(p["rank"]), "lora_alpha": 2 * int(p["rank"]), "warmup_steps": min(10, steps // 5),
                "batch_tokens": 1024, "seq_len": 256, "val_fraction": 0.05, "val_max": 32,
                "eval_every": max(5, steps // 2), "patience": 0, "max_new_tokens": min(48, spec.params.max_tokens),
                "checkpoint_every": max(1, min(25, steps // 4)), "seed": 0}
        if spec.mode == "completion":
            tune["template"] = tune_template(spec)
        lines = ["[tune]"] + [f"{k} = {json.dumps(x, ensure_ascii=False)}" for k, x in tune.items()]
        (work / "recipe.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _watch(self, jid: int, proc: subprocess.Popen, metrics: Path) -> bool:
        """Follow a tuning process to its end, moving the job's progress with its steps. True if cancelled."""
        last = -1
        while proc.poll() is None:
            if self.stopping:
                _end(proc)
                return False
            if _cancelled(self.db, jid):
                _end(proc)
                return True
            step = _last_step(metrics)
            if step != last and step > 0:
                last = step
                _set(self.db, jid, done=step, progressed=time.time())
            self._stop.wait(1.0)
        step = _last_step(metrics)
        if step > 0:
            _set(self.db, jid, done=step, progressed=time.time())
        return False

    def _publish(self, jid: int, app_id: int, slug: str, spec: AppSpec, number: int, run_dir: Path,
                 p: dict) -> tuple[dict, str]:
        """Load the adapter into the model server and save the tuned version; a server that cannot load adapters
        is a note on the job (the adapter and the version are kept), not a failure."""
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        adapter = Path(metrics.get("adapter") or run_dir / "adapter").resolve()
        name = f"{slug}-v{number}-tune{jid}"
        loaded, note = self._load_adapter(name, adapter)
        with self.db() as s:
            app = s.get(App, app_id)
            v = store.save_version(s, app, tuned_spec(spec, name), f"tuned from v{number} (job #{jid})")
            result = {"version": v.number, "lora_name": name, "adapter": str(adapter), "loaded": loaded,
                      "metric": metrics.get("metric"), "before": metrics.get("before"), "best": metrics.get("best"),
                      "steps": metrics.get("steps"), "base_version": number, "url": f"/apps/{slug}/versions/{v.number}"}
            ts_id = p.get("test_set")
            if loaded and ts_id:  # score both versions on the chosen test set: the compare page's two runs
                runs = {}
                for ver in (number, v.number):
                    done = s.scalar(select(TestRun.id).where(TestRun.app_id == app.id, TestRun.version == ver,
                                                             TestRun.test_set_id == int(ts_id)).limit(1))
                    if ver == number and done is not None:  # the base version was scored already: keep that run
                        result["base_run"] = done
                        continue
                    job, _ = submit_test_run(s, app, ver, int(ts_id))
                    runs[str(ver)] = job.id
                result["score_jobs"] = runs
        self.wake()
        return result, note

    def _load_adapter(self, name: str, path: Path) -> tuple[bool, str]:
        c = self.client
        try:
            with httpx.Client(base_url=c.root, headers=c.headers, timeout=c.timeout,
                              transport=_sync(c.transport)) as h:
                r = h.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)})
        except httpx.HTTPError as e:
            body = json.dumps({"lora_name": name, "lora_path": str(path)}, ensure_ascii=False)
            return False, msg("tune.unreachable", url=c.root, kind=type(e).__name__, body=body)
        if r.status_code == 200 or "already been loaded" in r.text:
            return True, ""
        how = msg("tune.how", name=name, path=path)
        if r.status_code in (404, 405):
            return False, msg("tune.no_runtime", status=r.status_code, how=how)
        return False, msg("tune.refused", status=r.status_code, message=_message(r), how=how)


def _sync(transport: object) -> httpx.BaseTransport | None:
    """The tests' scripted model is an httpx MockTransport, which serves sync clients too."""
    return transport if isinstance(transport, httpx.BaseTransport) else None


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return r.text.strip()[:300]


def _end(proc: subprocess.Popen) -> None:
    """End a tuning process and its children (it leads its own session): TERM, then KILL after 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _last_step(metrics: Path) -> int:
    """The last optimiser step in kollm tune's metrics.jsonl (0 before the first)."""
    if not metrics.is_file():
        return 0
    try:
        steps = [r.get("step", 0) for r in read_jsonl(metrics) if "loss" in r]
    except (ValueError, OSError):  # a line being written right now
        return 0
    return max(steps, default=0)


def _last_error(path: Path) -> str:
    lines = [x.strip() for x in path.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    for line in reversed(lines):
        if line.startswith("kollm: error:"):
            return line[len("kollm: error:"):].strip()
    return lines[-1][:500] if lines else "no output"

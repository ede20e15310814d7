"""Which datatrove executor runs a pipeline step: local processes, Slurm or Ray.

The local one is datatrove's LocalPipelineExecutor with its `run` replaced, because the stock one
(measured on 2 cores, see docs/data.md) costs ~2 s per step with workers > 1: its pools use the
`forkserver` start method, so every worker re-imports datatrove, kollm and their dependencies, and
every step starts a multiprocess.Manager process even with one worker. Here workers are forked from
the already-initialised parent (~0.05 s per pool), and the run also:
- draws a progress bar per step (tasks, rate, ETA, documents done);
- keeps task logs off the console unless verbose (they stay in logs/<step>/logs/task_NNNNN.log);
- ends a failed task as a one-line KollmError naming the task and its log file;
- makes workers die with the parent (PR_SET_PDEATHSIG), so a killed run leaves no writer behind.
Task execution itself (`_run_for_rank`: task logs, stats, completion markers) stays datatrove's.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from copy import copy, deepcopy
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats

from kollm.data.config import DataConfig
from kollm.errors import KollmError
from kollm.progress import Progress

_PR_SET_PDEATHSIG = 1
_CURRENT: LocalRun | None = None  # the step being run, inherited by forked workers (nothing is pickled)
_DOCS = None  # shared counter of documents read, for the progress bar (steps.ReadSources adds to it)


def _die_with_parent(parent: int) -> None:
    """Pool initializer: the kernel kills this worker when the parent dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _run_task(rank: int) -> PipelineStats:
    return _CURRENT.run_task(rank)


class LocalRun(LocalPipelineExecutor):
    """LocalPipelineExecutor with fast pools, a progress bar, quiet logs and one-line task errors."""

    def __init__(self, pipeline: list, tasks: int, workers: int, logging_dir: str, depends: Any = None,
                 verbose: bool = False, name: str = "") -> None:
        super().__init__(pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=logging_dir,
                         depends=depends, start_method="fork")
        self.verbose, self.name = verbose, name

    def run_task(self, rank: int) -> PipelineStats:
        """One task on fresh copies of the steps (their counters are the task's stats)."""
        task = copy(self)
        task.pipeline = deepcopy(self.pipeline)
        if self.verbose:
            return task._run_for_rank(rank)
        # datatrove's task logger prints to the sys.stderr it finds when the task starts
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            return task._run_for_rank(rank)

    def _failed(self, rank: int, e: BaseException) -> KollmError:
        if isinstance(e, KollmError):  # the user's input (a strict read): its message already names the fix
            return e
        log = self.logging_dir.resolve_paths(f"logs/task_{rank:05d}.log")
        return KollmError(f"data step '{self.name}' task {rank} failed: {type(e).__name__}: {e} (log: {log})")

    def run(self) -> None:
        global _CURRENT
        if self.depends is not None and not self.depends._launched:
            self.depends.run()
        self._launched = True
        todo = self.get_incomplete_ranks(range(self.tasks))
        if not todo:
            return
        self.save_executor_as_json()
        with _Progress(self, self.tasks - len(todo)) as bar:
            if self.workers == 1:
                for rank in todo:
                    try:
                        bar.done(self.run_task(rank))
                    except Exception as e:
                        raise self._failed(rank, e) from e
                return
            _CURRENT = self
            ctx = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_die_with_parent,
                                       initargs=(os.getpid(),))
            ok = False
            try:
                futures = {pool.submit(_run_task, rank): rank for rank in todo}
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for f in finished:
                        if f.exception() is not None:
                            e = f.exception()
                            if isinstance(e, BrokenProcessPool):
                                e = RuntimeError("a worker process died (out of memory or killed?)")
                            raise self._failed(futures[f], e) from None
                        bar.done(f.result())
                    bar.refresh_docs()
                ok = True
            finally:
                if not ok:  # stop the other tasks now; they are redone on the next run
                    for proc in list((pool._processes or {}).values()):  # no public kill before Python 3.14
                        proc.kill()
                pool.shutdown(wait=ok, cancel_futures=True)
                _CURRENT = None


class _Progress:
    """tqdm over a step's tasks, with documents read so far (live across workers) and their rate."""

    def __init__(self, run: LocalRun, skipped: int) -> None:
        self.run, self.skipped = run, skipped

    def __enter__(self) -> _Progress:
        global _DOCS
        _DOCS = multiprocessing.get_context("fork").Value("q", 0, lock=True)
        self.t0 = time.monotonic()
        self.bar = Progress(total=self.run.tasks, initial=self.skipped, desc=f"{self.run.name:>14}", unit="task",
                        file=sys.stderr, dynamic_ncols=True, mininterval=0.5, leave=True)
        return self

    def done(self, stats: PipelineStats) -> None:
        self.bar.update(1)
        self.refresh_docs()

    def refresh_docs(self) -> None:
        n = _DOCS.value
        if n:
            self.bar.set_postfix_str(f"{n:,} docs, {n / max(time.monotonic() - self.t0, 1e-9):,.0f} docs/s")

    def __exit__(self, *exc: object) -> None:
        global _DOCS
        self.refresh_docs()
        self.bar.close()
        _DOCS = None


def count_doc() -> None:
    """Called by the reading step for every document (a no-op outside a local run)."""
    if _DOCS is not None:
        with _DOCS.get_lock():
            _DOCS.value += 1


def make_executor(cfg: DataConfig, pipeline: list, tasks: int, name: str, depends: Any, verbose: bool) -> Any:
    """The same steps on any engine: only this class changes between a laptop, Slurm and Ray."""
    logs = f"{cfg.out}/logs/{name}"
    if cfg.executor == "local":
        return LocalRun(pipeline, tasks, cfg.workers, logs, depends, verbose, name)
    if cfg.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        if not cfg.slurm_partition:
            raise KollmError("executor = slurm needs slurm_partition (the queue to submit to)")
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, time=cfg.slurm_time, partition=cfg.slurm_partition, logging_dir=logs,
            job_name=f"kollm-{name}", depends=depends, workers=cfg.workers, venv_path=_venv_activate(),
        )
    if cfg.executor == "ray":
        try:
            from datatrove.executor.ray import RayPipelineExecutor
        except ImportError:
            raise KollmError("executor = ray needs Ray: pip install 'kollm[ray]'") from None
        return RayPipelineExecutor(pipeline, tasks=tasks, workers=cfg.workers, logging_dir=logs, depends=depends)
    raise KollmError(f"executor must be local, slurm or ray, not {cfg.executor!r}")


def _venv_activate() -> str | None:
    """Slurm jobs must run kollm from the same environment as the submitting command."""
    act = os.path.join(sys.prefix, "bin", "activate")
    return act if sys.prefix != sys.base_prefix and os.path.isfile(act) else None

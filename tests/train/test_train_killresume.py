"""Run `kollm train` as a real process, kill -9 it at chosen steps, resume, and report the final loss.

Shared by tests/train/test_train_killresume.py and bench/train_killresume.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RECIPE = """
[model]
depth = 1
max_seq_len = 32

[train]
batch_size = 4
lr = 3e-3
warmup_steps = 5
max_steps = {steps}
log_every = 1
checkpoint_every_steps = {every}
eval_every_s = 1e9
sample_tokens = 0
tensorboard = false
threads = 1
"""


def write_recipe(path: Path, steps: int, every: int = 3) -> Path:
    path.write_text(RECIPE.format(steps=steps, every=every))
    return path


def command(recipe: Path, data: Path, tok: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "kollm.cli", "train", "--recipe", str(recipe), "--data", str(data),
            "--tokenizer", str(tok), "--out", str(out), *(["--resume"] if resume else [])]


def last_step(metrics: Path) -> int:
    try:
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):  # being appended to right now
        return -1
    return max((r["step"] for r in rows if "loss" in r), default=-1)


def final_loss(out: Path, step: int) -> float:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r and r["step"] == step][-1]


def run_to_end(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def kill_at(cmd: list[str], metrics: Path, step: int, timeout: float = 300) -> int:
    """Start `cmd`, SIGKILL it as soon as metrics show `step`; return the last step seen before the kill."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and last_step(metrics) < step:
        time.sleep(0.02)
    if proc.poll() is not None:
        raise RuntimeError(f"training exited (rc {proc.returncode}) before step {step}: {proc.stderr.read()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return last_step(metrics)


def kill_points(seed: int, n: int, steps: int) -> list[int]:
    """n random steps in [4, steps - 4], at least 4 apart (a killed process can run a step past its target)."""
    import random

    rng = random.Random(seed)
    span = (steps - 8) // n
    return [4 + i * span + rng.randrange(max(1, span - 3)) for i in range(n)]


@pytest.mark.slow  # 64 s on 2 cores; CI runs the slow tests too
def test_kill9_at_random_steps_then_resume_matches_uninterrupted_run(tmp_path, tiny_tokenizer):
    from conftest import korean_texts, write_jsonl
    from safetensors.torch import load_file

    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    data = write_jsonl(tmp_path / "train.jsonl", korean_texts(80))
    steps = 30
    recipe = write_recipe(tmp_path / "r.toml", steps)
    ref, run = tmp_path / "ref", tmp_path / "run"
    r = run_to_end(command(recipe, data, tok, ref, resume=False))
    assert r.returncode == 0, r.stderr[-2000:]

    points = kill_points(seed=1234, n=5, steps=steps)
    seen = [kill_at(command(recipe, data, tok, run, resume=i > 0), run / "metrics.jsonl", k)
            for i, k in enumerate(points)]
    assert all(s >= k for s, k in zip(seen, points, strict=True)) and max(seen) < steps

    # A partial save (kill -9 mid-write) and a corrupted newest checkpoint are both detected and skipped.
    ckpts = sorted((run / "checkpoint").glob("step-*"))
    (run / "checkpoint" / f".step-{steps - 1:08d}.tmp").mkdir()
    newest = ckpts[-1] / "__0_0.distcp"
    newest.write_bytes(newest.read_bytes()[:-100])
    r = run_to_end(command(recipe, data, tok, run, resume=True))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"skipping checkpoint {ckpts[-1].name}" in r.stderr and "partial checkpoint" in r.stderr

    # CPU float32 with a fixed thread count is deterministic: the same loss, bit for bit, and the same weights.
    assert final_loss(run, steps) == final_loss(ref, steps)
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)

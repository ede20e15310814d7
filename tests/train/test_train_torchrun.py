"""FSDP2 over 2 gloo processes matches 1 process with gradient accumulation, and its checkpoint resumes in 1.

Tolerance: 1e-5 absolute on the loss (observed ~3e-7). The two runs compute the same maths on the same
batches, but FSDP reduce-scatters gradients across ranks while one process sums micro-batch gradients
locally, so float32 additions happen in another order; that rounding difference grows slowly with steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import korean_texts, write_jsonl

RECIPE = """
[model]
depth = 2
max_seq_len = 32

[train]
batch_size = 4
micro_batch_size = 2
max_steps = 8
warmup_steps = 3
log_every = 1
checkpoint_every_steps = 4
keep_checkpoints = 5
eval_every_s = 1e9
sample_tokens = 0
tensorboard = false
"""
TOL = 1e-5


def _losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _train(args, nproc=1, resume=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "kollm.cli", "train", *args,
           *(["--resume"] if resume else [])]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


# slow (CI runs it): 43 s for adamw on 2 cores, and the default suite is at its 15-minute budget
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_torchrun_two_gloo_ranks_match_one_process_and_resume_in_one(tmp_path, tiny_tokenizer, optimizer):
    """Muon under FSDP gathers each sharded matrix for its Newton-Schulz iteration (kollm.train.muon)."""
    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    data = write_jsonl(tmp_path / "train.jsonl", korean_texts(80))
    (tmp_path / "r.toml").write_text(RECIPE + f'optimizer = "{optimizer}"\n')
    common = ["--recipe", str(tmp_path / "r.toml"), "--data", str(data), "--tokenizer", str(tok)]

    _train([*common, "--out", str(tmp_path / "one")])  # 1 process, 2 micro-batches of 2 per step
    _train([*common, "--out", str(tmp_path / "two")], nproc=2)  # 2 processes, 1 micro-batch of 2 each
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 9))
    assert max(abs(one[s] - two[s]) for s in one) <= TOL, (one, two)
    assert one[8] < one[1]
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["grad_accum_steps"] == 1
    assert json.loads((tmp_path / "one" / "config.json").read_text())["grad_accum_steps"] == 2

    # The step-4 checkpoint written by 2 processes (each its own shard) resumes in 1 process.
    ckpt = tmp_path / "two" / "checkpoint"
    assert json.loads((ckpt / "step-00000004" / "manifest.json").read_text())["world"] == 2
    shutil.rmtree(ckpt / "step-00000008")
    r = _train([*common, "--out", str(tmp_path / "two")], resume=True)
    assert "resuming from step-00000004" in r.stderr
    resumed = _losses(tmp_path / "two")
    assert abs(resumed[8] - one[8]) <= TOL, (resumed, one)

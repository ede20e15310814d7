"""The CPU speedrun (recipes/speedrun-cpu.toml): 10 minutes of training must reach the issue's goal of
<= 1.80 val bits-per-byte on ko-docs-val (run 5 reached 0.9828, bench/SPEEDRUN.md). Slow: ~11 minutes.

Throughput is not asserted here (timing claims live in bench/): `python bench/train_mfu.py --run DIR` prints the
MFU a run logged against its regression floor. This test only checks that the loop logs a usable MFU."""

from __future__ import annotations

import json
import math

import pytest
from conftest import REPO, SHARED, run_kollm

GOAL_BPB = 1.80


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "ko-docs-train.jsonl").is_file(), reason="needs ../shared/corpora")
def test_cpu_speedrun_reaches_goal(tmp_path):
    r = run_kollm("train", "--recipe", str(REPO / "recipes" / "speedrun-cpu.toml"), "--out", str(tmp_path / "sr"),
                  timeout=1500, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "sr" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    final = [x for x in rows if "val_bpb" in x][-1]
    assert final["seconds"] >= 599 and final["val_bpb"] <= GOAL_BPB, final
    mfu = [x["mfu"] for x in rows if "mfu" in x]
    assert mfu and all(math.isfinite(m) and m > 0 for m in mfu), mfu  # logged for bench/train_mfu.py --run

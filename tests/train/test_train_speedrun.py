"""The CPU speedrun (recipes/speedrun-cpu.toml): 10 minutes of training must reach the issue's goal of
<= 1.80 val bits-per-byte on ko-docs-val (run 5 reached 0.9828, bench/SPEEDRUN.md). Slow: ~11 minutes."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SHARED, run_kollm

GOAL_BPB = 1.80
# Regression floor only: the 75% target is NOT met at this model size (61% measured, see
# bench/SPEEDRUN.md); this catches a loop that got much slower, not the target.
MFU_FLOOR = 0.25


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "ko-docs-train.jsonl").is_file(), reason="needs ../shared/corpora")
def test_cpu_speedrun_reaches_goal(tmp_path):
    r = run_kollm("train", "--recipe", str(REPO / "recipes" / "speedrun-cpu.toml"), "--out", str(tmp_path / "sr"),
                  timeout=1500, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "sr" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    final = [x for x in rows if "val_bpb" in x][-1]
    assert final["seconds"] >= 599 and final["val_bpb"] <= GOAL_BPB, final
    mfu = [x["mfu"] for x in rows if "mfu" in x][5:]
    assert sum(mfu) / len(mfu) >= MFU_FLOOR

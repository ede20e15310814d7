"""kill -9 `kollm train` at many random steps, resume each time, and compare with an uninterrupted run.

    python bench/train_killresume.py --kills 12 --steps 80 --seed 7

The CI test (tests/train/test_train_killresume.py) does the same with 5 kill points; this script uses the same
helpers with more. Prints one JSON line; exit status 1 if the final losses differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "train")]

from conftest import korean_texts, write_jsonl  # noqa: E402
from test_train_killresume import command, final_loss, kill_at, kill_points, run_to_end, write_recipe  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        save_tokenizer(train_tokenizer(korean_texts(), TokenizerConfig(vocab_size=400)), tmp / "tok")
        data = write_jsonl(tmp / "train.jsonl", korean_texts(80))
        recipe = write_recipe(tmp / "r.toml", a.steps)
        t0 = time.time()
        r = run_to_end(command(recipe, data, tmp / "tok", tmp / "ref", resume=False))
        assert r.returncode == 0, r.stderr[-2000:]
        points = kill_points(a.seed, a.kills, a.steps)
        seen = [kill_at(command(recipe, data, tmp / "tok", tmp / "run", resume=i > 0), tmp / "run" / "metrics.jsonl", k)
                for i, k in enumerate(points)]
        r = run_to_end(command(recipe, data, tmp / "tok", tmp / "run", resume=True))
        assert r.returncode == 0, r.stderr[-2000:]
        ref, got = final_loss(tmp / "ref", a.steps), final_loss(tmp / "run", a.steps)
        print(json.dumps({"kills": len(points), "kill_points": points, "killed_after_step": seen, "steps": a.steps,
                          "uninterrupted_loss": ref, "resumed_loss": got, "bitwise_equal": ref == got,
                          "seconds": round(time.time() - t0, 1)}))
        return 0 if ref == got else 1


if __name__ == "__main__":
    sys.exit(main())

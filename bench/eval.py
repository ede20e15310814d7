"""Multiple-choice scoring speed: kollm's in-process backend (shared-context KV reuse) vs lm-eval's `hf`.

Same loaded model, same tokenizer and BOS, same tasks, items and shots; only the LM class differs. Prints one
table: backend, task, items, seconds, items/s, speed-up vs hf, score (which must be equal).

    python bench/eval.py --model DIR [--model DIR2] [--tasks kollm_sentiment,kollm_topic,kollm_sts] \
        [--shots 5] [--limit 40] [--repeat 1]

With no --model, the Gemma-3-270M test fixture ($KOLLM_TEST_MODELS/gemma-3-270m/hf) if it was built.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[])
    p.add_argument("--tasks", default="kollm_sentiment,kollm_topic,kollm_sts")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1, help="runs per backend; the fastest is kept (shared machines)")
    a = p.parse_args()
    models = a.model
    if not models:
        root = Path(os.environ.get("KOLLM_TEST_MODELS") or Path.home() / ".cache" / "kollm" / "test-models")
        gemma = root / "gemma-3-270m" / "hf"
        models = [str(gemma)] if (gemma / "config.json").is_file() else []
    if not models:
        raise SystemExit("give --model DIR (no Gemma fixture found)")

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM

    from kollm.eval.backends import make_backend
    from kollm.eval.fast import FastHF
    from kollm.eval.harness import model_labels, task_manager

    tasks = a.tasks.split(",")
    tm = task_manager(tasks)
    print(f"torch threads {torch.get_num_threads()}, cpu cores {os.cpu_count()}, shots {a.shots}, limit {a.limit}")
    rows = []
    for model, label in zip(models, model_labels(models), strict=True):
        be = make_backend(model, "hf", batch_size=a.batch_size)  # loads once; both classes wrap the same weights
        lms = {name: cls(pretrained=be.lm.model, tokenizer=be.lm.tokenizer, batch_size=a.batch_size,
                         add_bos_token=be.add_bos_token) for name, cls in (("hf", HFLM), ("kollm", FastHF))}
        for task in tasks:
            seen = {}
            for name, lm in lms.items():
                best, res = float("inf"), None
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    res = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=a.shots, limit=a.limit,
                                                  task_manager=tm, log_samples=False, bootstrap_iters=0,
                                                  verbosity="ERROR")
                    best = min(best, time.perf_counter() - t0)
                r = res["results"][task]
                n = res["n-samples"][task]["effective"]
                seen[name] = best
                rows.append((label, name, task, n, best, n / best, seen["hf"] / best, r["acc,none"],
                             r["acc_norm,none"]))
    head = ("model", "backend", "task", "items", "seconds", "items/s", "speed-up", "acc", "acc_norm")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for m, b, t, n, s, ips, up, acc, accn in rows:
        print(f"| {m} | {b} | {t} | {n} | {s:.1f} | {ips:.2f} | {up:.2f}x | {acc:.4f} | {accn:.4f} |")


if __name__ == "__main__":
    main()

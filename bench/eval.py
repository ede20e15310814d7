"""Eval speed: kollm's in-process backend vs lm-eval's `hf`, on multiple-choice and generation tasks.

kollm's backend scores multiple choice with shared-context KV reuse and generates on kollm's continuous-batching
serving engine; `hf` is lm-eval's HFLM (one forward per choice; transformers' `generate` in batches). Same loaded
model, same tokenizer and BOS, same tasks, items and shots; only the LM class differs. Prints one table: backend,
task, items, seconds, items/s, speed-up vs hf, score (which must be equal), then whether every score was.

    python bench/eval.py --model DIR [--model DIR2] \
        [--tasks kollm_sentiment,kollm_topic,kollm_sts,kollm_query_correction] [--shots K] [--limit N] [--repeat 1]

Shots and items default per task kind: multiple choice 5 shots, 40 items; generation 3 shots, 100 items (--shots
and --limit set both). The kollm backend builds its serving engine once per loaded model, at the first generation
request: that build is timed apart, and a second kollm row adds it to the first generation task's time. Each run
on the engine starts with an empty prefix cache (--repeat would otherwise reuse the first run's prompts). With
--repeat the backends take turns (hf, kollm, hf, ...) and each keeps its fastest run. With no --model, the
Gemma-3-270M test fixture ($KOLLM_TEST_MODELS/gemma-3-270m/hf) if it was built.
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
    p.add_argument("--tasks", default="kollm_sentiment,kollm_topic,kollm_sts,kollm_query_correction")
    p.add_argument("--shots", type=int, default=None, help="default: 5 multiple choice, 3 generation")
    p.add_argument("--limit", type=int, default=None, help="default: 40 multiple choice, 100 generation")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per backend, taking turns; the fastest is kept (shared machines)")
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
    from lm_eval.tasks._yaml_loader import load_yaml

    from kollm.eval.backends import make_backend
    from kollm.eval.fast import FastHF
    from kollm.eval.harness import model_labels, task_manager

    tasks = a.tasks.split(",")
    tm = task_manager(tasks)
    setting, gen = {}, {}  # task -> (shots, limit), whether it generates
    for task in tasks:
        gen[task] = load_yaml(tm.task_index[task].yaml_path).get("output_type") == "generate_until"
        setting[task] = (a.shots if a.shots is not None else 3 if gen[task] else 5,
                         a.limit if a.limit is not None else 100 if gen[task] else 40)
    print(f"torch threads {torch.get_num_threads()}, cpu cores {os.cpu_count()}, "
          + ", ".join(f"{t}: {k} shots, limit {n}" for t, (k, n) in setting.items()))
    rows, equal = [], []
    for model, label in zip(models, model_labels(models), strict=True):
        be = make_backend(model, "hf", batch_size=a.batch_size)  # loads once; both classes wrap the same weights
        lms = {name: cls(pretrained=be.lm.model, tokenizer=be.lm.tokenizer, batch_size=a.batch_size,
                         add_bos_token=be.add_bos_token) for name, cls in (("hf", HFLM), ("kollm", FastHF))}
        for task in tasks:
            shots, limit = setting[task]
            seen, res, build = dict.fromkeys(lms, float("inf")), {}, None
            if gen[task] and lms["kollm"]._engine is None:  # once per loaded model, timed apart
                t0 = time.perf_counter()
                lms["kollm"].engine()
                build = time.perf_counter() - t0
            for _ in range(a.repeat):  # the backends take turns: a machine that drifts slows both alike
                for name, lm in lms.items():
                    if gen[task] and name == "kollm":  # every run starts with an empty prefix cache
                        with lm.engine().lock:
                            lm.engine().prefixes.clear()
                    t0 = time.perf_counter()
                    res[name] = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=shots, limit=limit,
                                                        task_manager=tm, log_samples=False, bootstrap_iters=0,
                                                        verbosity="ERROR")
                    seen[name] = min(seen[name], time.perf_counter() - t0)
            scores = {}
            for name in lms:
                r = res[name]["results"][task]
                n = res[name]["n-samples"][task]["effective"]
                best = seen[name]
                scores[name] = {k.removesuffix(",none"): v for k, v in r.items()
                                if k.endswith(",none") and "_stderr" not in k}
                score = ", ".join(f"{k} {v:.4f}" for k, v in scores[name].items())
                rows.append((label, name, task, n, shots, best, n / best, seen["hf"] / best, score))
                if build is not None and name == "kollm":
                    total = best + build
                    rows.append((label, f"{name} + engine build ({build:.1f} s)", task, n, shots, total, n / total,
                                 seen["hf"] / total, score))
            equal.append(scores["kollm"] == scores["hf"])
    head = ("model", "backend", "task", "items", "shots", "seconds", "items/s", "speed-up", "score")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for m, b, t, n, k, s, ips, up, score in rows:
        print(f"| {m} | {b} | {t} | {n} | {k} | {s:.1f} | {ips:.2f} | {up:.2f}x | {score} |")
    print("scores equal across backends:", "yes" if all(equal) else "NO")


if __name__ == "__main__":
    main()

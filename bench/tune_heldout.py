"""The held-out tables in README.md: the base model 0-shot and few-shot (the Studio's built-in app) against the
tuned model, on items never trained on.

    python bench/tune_heldout.py --job query-correction --model BASE --tuned OUT/merged
    python bench/tune_heldout.py --job review-summary --model BASE --tuned OUT/merged
    python bench/tune_heldout.py ... --only "tuned + 한/영 + 맞춤법"   # rerun one column, the rest from the last run

query-correction: src/kollm/eval/tasks/data/query_correction_heldout.jsonl (written by hand before any training;
no correct query shared with the shipped queries the typos are synthesized from: tests/data checks it). Exact match
ignoring spacing (kollm.metrics.exact_match) per error type; for already-correct queries that is "left unchanged".
review-summary: src/kollm/eval/tasks/data/review_summary.jsonl minus the Studio app's own examples (the training
reviews are the shipped corpus's, none of them here). ROUGE-L on morphemes (kollm.metrics.rouge_l).
Prompts: the base model gets the Studio's built-in app as the Studio renders it (instruction, template, 0 or all
of its examples); the tuned model gets the template alone, as it was tuned. Greedy, the answer's first line.
The "+ 한/영" columns first switch keyboard-mode slips back (kollm.hangul.switch_keyboard_mode: dkdlvhs -> 아이폰,
ㅑㅔㅁㅇ -> ipad); "+ 한/영 + 맞춤법" then also undo a spelling slip (kollm.spelling.fix_spelling: 되지고기 -> 돼지고기,
케찹 -> 케첩); each change judged by the same model's log-probability of the query. "+ 작은 수정만" then puts back
as typed every place where the answer changes the query by more than two jamo (kollm.spelling.keep_close: 무선
저소음 -> 무선 소음 is not a correction).
Writes bench/results/tune_<job>.json (every answer) and .md (the table).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch

from kollm.files import read_jsonl, write_json, write_text
from kollm.hangul import switch_keyboard_mode
from kollm.metrics import exact_match, rouge_l
from kollm.model.hf import load_hf_causal_lm
from kollm.prompts import fill
from kollm.special_tokens import encode_with_bos
from kollm.spelling import fix_spelling, keep_close
from kollm.studio.apps import render_completion
from kollm.studio.builtin import template
from kollm.tune.validate import generate, text_logprobs

JOBS = {  # job: (Studio template, item file, input field, reference field, group field, metric, max new tokens)
    "query-correction": ("search-query-correction", "query_correction_heldout.jsonl", "typo", "correct",
                         "error_type", exact_match, 24),
    "review-summary": ("review-summary", "review_summary.jsonl", "review", "summary", None, rouge_l, 80),
}


def items(name: str) -> list[dict]:
    return list(read_jsonl(Path(str(resources.files("kollm") / "eval" / "tasks" / "data" / name))))


def answers(model_dir: str, prompt: Callable[[str], str], inputs: list[str], max_new: int,
            passes: int) -> tuple[list[str], float]:
    """Greedy first-line answers; with `passes` >= 1, each input first has its keyboard-mode slips switched back
    (kollm.hangul), with 2 then a spelling slip undone (kollm.spelling), each judged by the same model; with 3 the
    answer keeps only the small edits of that input (kollm.spelling.keep_close)."""
    model, tok = load_hf_causal_lm(model_dir)
    cpu = torch.device("cpu")
    t0 = time.perf_counter()
    with torch.no_grad():
        def score(texts: list[str]) -> list[float]:
            return text_logprobs(model, tok, texts, cpu)

        if passes >= 1:
            inputs = [switch_keyboard_mode(x, score) for x in inputs]
        if passes >= 2:
            inputs = [fix_spelling(x, score) for x in inputs]
        out = generate(model, tok, [encode_with_bos(tok, prompt(x)) for x in inputs], max_new, cpu, 8)
    got = [a.strip().split("\n", 1)[0].strip() for a in out]
    if passes >= 3:
        got = [keep_close(x, g) for x, g in zip(inputs, got, strict=True)]
    return got, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--job", choices=sorted(JOBS), required=True)
    ap.add_argument("--model", required=True, help="the base model folder")
    ap.add_argument("--tuned", required=True, help="the tuned model folder (kollm tune --merge: OUT/merged)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--only", action="append", default=[], metavar="COLUMN",
                    help="run only this column (repeatable); the others are read from the last run's results")
    a = ap.parse_args()
    app, file, field, ref, group, metric, max_new = JOBS[a.job]
    spec = template(app)["spec"]
    var = spec.variables()[0]
    shown = {ex["inputs"][var] for ex in spec.examples}
    rows = [r for r in items(file) if r[field] not in shown][: a.limit or None]
    k = len(spec.examples)
    zero, few = replace(spec, examples=[]), spec
    runs = {  # name: (model, prompt of an input, passes in front: 0 none, 1 keyboard mode, 2 and spelling)
        "base 0-shot": (a.model, lambda x: render_completion(zero, {var: x}), 0),
        f"base {k}-shot": (a.model, lambda x: render_completion(few, {var: x}), 0),
        "tuned 0-shot": (a.tuned, lambda x: fill(spec.template, {var: x}), 0),
    }
    if a.job == "query-correction":  # the same with the passes in front
        for name, passes in (("한/영", 1), ("한/영 + 맞춤법", 2), ("한/영 + 맞춤법 + 작은 수정만", 3)):
            runs[f"base {k}-shot + {name}"] = (a.model, runs[f"base {k}-shot"][1], passes)
            runs[f"tuned + {name}"] = (a.tuned, runs["tuned 0-shot"][1], passes)
    out = Path("bench/results") / f"tune_{a.job.replace('-', '_')}"
    unknown = [name for name in a.only if name not in runs]
    if unknown:
        raise SystemExit(f"--only {unknown[0]!r}: not a column; the columns are {', '.join(runs)}")
    scores: dict[str, dict[str, float]] = {}
    record: dict[str, list] = {}
    if a.only:
        last = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        scores = {k: v for k, v in last["scores"].items() if k in runs and k not in a.only}
        record = {k: v for k, v in last["answers"].items() if k in scores}
        if any(len(v) != len(rows) for v in record.values()) or len(scores) + len(a.only) != len(runs):
            raise SystemExit(f"--only: {out.with_suffix('.json')} is not a full run on these items; run them all")
    for name, (model, prompt, passes) in runs.items():
        if a.only and name not in a.only:
            continue
        got, secs = answers(model, prompt, [r[field] for r in rows], max_new, passes)
        by: dict[str, list[float]] = defaultdict(list)
        for r, g in zip(rows, got, strict=True):
            s = metric(g, r[ref])
            by["all"].append(s)
            if group:
                by[r[group]].append(s)
        scores[name] = {key: sum(v) / len(v) for key, v in by.items()}
        record[name] = [{"input": r[field], "expected": r[ref], "got": g} for r, g in zip(rows, got, strict=True)]
        print(f"{name}: {metric.__name__} {scores[name]['all']:.3f} ({secs:.0f} s)", flush=True)
    groups = sorted({r[group] for r in rows}, key=lambda t: (t == "unchanged", t)) if group else []
    lines = [f"| {group or 'items'} | n | " + " | ".join(runs) + " |", "|" + "---|" * (2 + len(runs))]
    for t in [*groups, "all"]:
        n = sum(r[group] == t for r in rows) if t != "all" else len(rows)
        lines.append(f"| {t} | {n} | " + " | ".join(f"{scores[name].get(t, float('nan')):.2f}" for name in runs)
                     + " |")
    table = "\n".join(lines)
    print(f"\n{metric.__name__}, {len(rows)} held-out items\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"metric": metric.__name__, "scores": scores, "answers": record})
    write_text(out.with_suffix(".md"), table + "\n")


if __name__ == "__main__":
    main()

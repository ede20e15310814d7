"""The spelling pass's prior for Kiwi's candidates (kollm/spelling.py KIWI_PRIOR), chosen on dev items only.

    python bench/spelling_prior.py --judge DIR [--priors -2,-3,-4,-5,-6,-8]

Dev items, never the held-out set (bench/tune_heldout.py has that): the 106 hand-written kollm_query_correction
items, and one synthesized pair for each of 250 shipped clean queries drawn at random (seed 7, the recipe's error
types plus keyboard-mode slips). Each item gets the keyboard-mode pass first (as in the Studio's fix_typos), then
the spelling candidates are scored once by the judge; each prior is then a choice among the same scores. Prints,
per prior: items right after the pass (exact match ignoring spacing) per group, and "harmed": items that were right
as they reached the pass and are wrong after it (a correct word respelled: 햇감자 -> 핫감자).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch

from kollm.data.config import DataConfig
from kollm.data.typos import clean_queries_from_corpus, make_pairs
from kollm.files import read_jsonl
from kollm.hangul import switch_keyboard_mode
from kollm.metrics import exact_match
from kollm.model.hf import load_hf_causal_lm
from kollm.spelling import KIWI_PRIOR, TABLE_PRIOR, pick_spelling, spelling_candidates
from kollm.tune.validate import text_logprobs

RATES = {"keyboard": 0.25, "jamo_drop_double": 0.15, "vowel": 0.2, "batchim": 0.2, "misspelling": 0.3,
         "spacing_drop": 0.25, "spacing_insert": 0.15, "loanword": 0.3, "english_mode": 0.1, "korean_mode": 0.1}


def dev_items() -> list[dict]:
    data = Path(str(resources.files("kollm") / "eval" / "tasks" / "data" / "query_correction.jsonl"))
    smoke = [{"typo": r["query"], "correct": r["target"], "group": "hand-written"} for r in read_jsonl(data)]
    cfg = replace(DataConfig(), typo_rates=RATES, typo_pairs_per_query=1, typo_unchanged=0.15, typo_seed=7)
    queries = clean_queries_from_corpus()
    random.Random(7).shuffle(queries)
    syn = [{"typo": p["typo"], "correct": p["correct"], "group": "+".join(p["errors"]) if len(p["errors"]) < 2
            else "several"} for p in make_pairs(queries[:250], cfg)]
    return smoke + syn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--judge", required=True, help="the model whose log-probabilities judge (a tuned corrector)")
    ap.add_argument("--priors", default="-2,-3,-4,-5,-6,-8")
    a = ap.parse_args()
    model, tok = load_hf_causal_lm(a.judge)

    def score(texts: list[str]) -> list[float]:
        with torch.no_grad():
            return [v for i in range(0, len(texts), 16)
                    for v in text_logprobs(model, tok, texts[i:i + 16], torch.device("cpu"))]

    rows = dev_items()
    for r in rows:
        r["typed"] = switch_keyboard_mode(r["typo"], score)
        r["cands"], r["priors"] = spelling_candidates(r["typed"])
        r["scores"] = score(r["cands"]) if len(r["cands"]) > 1 else [0.0]
    groups = sorted({r["group"] for r in rows})
    print(f"KIWI_PRIOR now {KIWI_PRIOR}, TABLE_PRIOR {TABLE_PRIOR}; {len(rows)} dev items\n")
    print("| Kiwi prior | all | harmed | " + " | ".join(f"{g} (n={sum(r['group'] == g for r in rows)})"
                                                       for g in groups) + " |")
    print("|" + "---|" * (3 + len(groups)))
    for prior in map(float, a.priors.split(",")):
        right: dict[str, int] = defaultdict(int)
        harmed = 0
        for r in rows:
            priors = [prior if p == KIWI_PRIOR else p for p in r["priors"]]
            got = pick_spelling(r["cands"], priors, r["scores"])
            ok = exact_match(got, r["correct"]) == 1.0
            right[r["group"]] += ok
            right["all"] += ok
            harmed += not ok and exact_match(r["typed"], r["correct"]) == 1.0
        print(f"| {prior:g} | {right['all']} | {harmed} | " + " | ".join(str(right[g]) for g in groups) + " |")


if __name__ == "__main__":
    main()

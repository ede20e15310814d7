"""Benchmark of `kollm data` on ../shared/corpora/ko-docs-train.jsonl.

    python bench/data.py            # all sections, ~5 minutes on 2 cores
    python bench/data.py --quick    # first 300 documents

1. MB/s per core of each stage (one process, the stage's own function on every document).
2. The whole pipeline (`kollm data run`, recipes/data-ko-docs.toml) on 4 copies of the corpus with 1 and 2
   workers, per executor step, with the machine's load and how many cores the run actually got.
3. Line repair: rules vs Kiwi on planted breaks (sentences cut at a space or before a particle)
   and on real breaks that must stay (a sentence end; a heading before the body).
4. Near-dup shingles: characters vs Kiwi morphemes on planted near-duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig

from kollm.data.dedup import ExactSignature, KoreanMinhashSignature
from kollm.data.normalize import normalize_text
from kollm.data.pii import mask_pii
from kollm.data.quality import QualityRules, build_checks
from kollm.data.repair import repair_lines

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "ko-docs-train.jsonl"


def stage_speeds(docs: list[str]) -> list[tuple[str, float]]:
    mb = sum(len(d.encode()) for d in docs) / 1e6
    checks = build_checks(QualityRules())
    tmp = tempfile.mkdtemp()
    exact = ExactSignature(tmp)
    char = KoreanMinhashSignature(tmp, MinhashConfig(n_grams=5), "char")
    morph = KoreanMinhashSignature(tmp, MinhashConfig(n_grams=3), "morph")

    def quality(t: str) -> None:
        d = Document(text=t, id="x")
        for _, c in checks:
            if c(d) is not True:
                break

    def exact_sig(t: str) -> None:
        exact._text = t
        exact.get_signature(exact.get_shingles(t))

    stages = [
        ("normalize", lambda t: normalize_text(t)),
        ("repair (rules)", lambda t: repair_lines(t, "rules")),
        ("repair (kiwi)", lambda t: repair_lines(t, "kiwi")),
        ("quality (FineWeb-2 kor_Hang, Kiwi)", quality),
        ("pii mask", mask_pii),
        ("exact-dedup hash", exact_sig),
        ("minhash signature (char 5-grams)", lambda t: char.get_signature(char.get_shingles(t))),
        ("minhash signature (morph 3-grams)", lambda t: morph.get_signature(morph.get_shingles(t))),
    ]
    repair_lines("워밍업\n을 합니다.", "kiwi")  # load Kiwi before timing
    out = []
    for name, fn in stages:
        t0 = time.perf_counter()
        for d in docs:
            fn(d)
        out.append((name, mb / (time.perf_counter() - t0)))
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def pipeline_speed(inputs: list[Path], workers: int) -> dict:
    """`kollm data run` (recipes/data-ko-docs.toml) in this process, timing each executor step.
    CPU is this process's and its workers' user+sys time: CPU/wall is how many cores the run got."""
    from kollm.config import load_recipe, section
    from kollm.data.config import DataConfig
    from kollm.data.pipeline import build_executors

    out = Path(tempfile.mkdtemp()) / "out"
    cfg = section(load_recipe(ROOT / "recipes" / "data-ko-docs.toml"), "data", DataConfig)
    cfg.inputs, cfg.out, cfg.workers = [str(p) for p in inputs], str(out), workers
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu()
    steps = {}
    for ex in build_executors(cfg):
        t = time.perf_counter()
        ex.run()  # each step's dependency has already run
        steps[ex.name] = time.perf_counter() - t
    secs, cpu = time.perf_counter() - t0, _cpu() - c0
    stats = json.loads((out / "stats.json").read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    mb = sum(p.stat().st_size for p in inputs) / 1e6
    return {"mb": mb, "secs": secs, "cpu": cpu, "steps": steps, "stats": stats, "load": load}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _burn(n: int) -> None:
    x = 0
    for i in range(n):
        x += i * i


def machine_parallelism() -> float:
    """Speed-up of a pure-CPU loop split over 2 processes: the most any program could get right now.
    On a shared machine the scheduler gives each login session a fair share, so this can be ~1x."""
    import multiprocessing

    times = []
    for w in (1, 2):
        t = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(w) as pool:
            pool.map(_burn, [20_000_000 // w] * w)
        times.append(time.perf_counter() - t)
    return times[0] / times[1]


_PARTICLE = re.compile(r"(?<=[가-힣]{2})(을|를|은|는|이|가|의|에|에서|으로|로)(?= )")


def repair_eval(docs: list[str], rng: random.Random) -> dict[str, dict]:
    sents, keep_pairs = [], []
    for d in docs:
        lines = d.split("\n")
        for a, b in zip(lines, lines[1:], strict=False):
            if a.endswith("다.") and a.count(" ") >= 5 and len(a) >= 25:
                sents.append(a)
                if b.strip():
                    keep_pairs.append((a, b, "sentence end"))
        if len(lines) > 6 and lines[5] == lines[0] and lines[6].strip():
            keep_pairs.append((lines[5], lines[6], "heading"))
    rng.shuffle(sents)
    cases = []  # (text with one break, expected text after repair, kind)
    for s in sents[:1500]:
        m = [x.start() for x in _PARTICLE.finditer(s)]
        if m and rng.random() < 0.5:
            cut = rng.choice(m)
            cases.append((s[:cut] + "\n" + s[cut:], s, "cut before particle"))
        else:
            spaces = [i for i, c in enumerate(s) if c == " "]
            cut = rng.choice(spaces)
            cases.append((s[:cut] + "\n" + s[cut + 1 :], s, "cut at space"))
    for a, b, kind in keep_pairs[:1500]:
        cases.append((f"{a}\n{b}", f"{a}\n{b}", kind))
    result = {}
    for method in ("rules", "kiwi"):
        ok: Counter = Counter()
        total: Counter = Counter()
        for text, want, kind in cases:
            total[kind] += 1
            ok[kind] += repair_lines(text, method) == want
        result[method] = {k: f"{ok[k] / total[k]:.1%} of {total[k]}" for k in total}
        result[method]["all"] = f"{sum(ok.values()) / sum(total.values()):.1%}"
    return result


def shingle_eval(docs: list[str], rng: random.Random) -> dict[str, dict]:
    base = [d for d in docs if len(d) > 600][:300]

    def edits(t: str) -> str:
        words = t.split(" ")
        for _ in range(max(1, len(words) // 30)):
            i = rng.randrange(len(words))
            words[i] = words[i] + rng.choice(["", "요", "들"]) if rng.random() < 0.5 else ""
        return " ".join(words)

    def reorder(t: str) -> str:
        parts = re.split(r"(?<=다\.)\s", t)
        rng.shuffle(parts)
        return " ".join(parts)

    def spacing(t: str) -> str:
        return "".join(c for c in t if c != " " or rng.random() > 0.3)

    kinds = {"small edits": edits, "reordered sentences": reorder, "spacing changed": spacing}
    res = {}
    for unit, n in (("char", 5), ("morph", 3)):
        tmp = tempfile.mkdtemp()
        step = KoreanMinhashSignature(tmp, MinhashConfig(n_grams=n), unit)

        def bands(t: str, step: KoreanMinhashSignature = step) -> list[tuple]:
            return [tuple(b) for b in step.get_signature(step.get_shingles(t))]

        sig = [bands(t) for t in base]
        found = {}
        for kind, fn in kinds.items():
            pairs = zip(sig, base, strict=True)
            hits = sum(any(x == y for x, y in zip(s, bands(fn(t)), strict=True)) for s, t in pairs)
            found[kind] = f"{hits / len(base):.1%}"
        index: dict = {}
        flagged = set()
        for i, s in enumerate(sig):
            for bi, b in enumerate(s):
                for j in index.get((bi, b), []):
                    flagged.add((j, i))
                index.setdefault((bi, b), []).append(i)
        found["distinct corpus pairs flagged"] = f"{len(flagged)} of {len(base) * (len(base) - 1) // 2}"
        res[unit] = found
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} not found; the benchmark needs shared/corpora beside the repository")
    docs = [json.loads(line)["text"] for line in CORPUS.open(encoding="utf-8")]
    corpus = CORPUS
    if args.quick:
        docs = docs[:300]
        corpus = Path(tempfile.mkdtemp()) / "quick.jsonl"
        corpus.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs))
    rng = random.Random(0)
    print(f"corpus: {len(docs)} documents, {sum(len(d.encode()) for d in docs) / 1e6:.2f} MB\n")
    print("| stage (1 process) | MB/s per core |\n|---|---|")
    for name, speed in stage_speeds(docs):
        print(f"| {name} | {speed:.2f} |")
    copies = Path(tempfile.mkdtemp())  # 4 files, so each worker has whole files to itself
    parts = [copies / f"part-{i}.jsonl" for i in range(4)]
    for p in parts:
        shutil.copyfile(corpus, p)
    print(f"\nmachine now: load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; a pure-CPU loop gets "
          f"{machine_parallelism():.2f}x from 2 processes")
    runs = {w: pipeline_speed(parts, w) for w in (1, 2)}
    names = list(runs[1]["steps"])
    print(f"\nwhole pipeline on {runs[1]['mb']:.1f} MB (4 copies of the corpus, so 3/4 go as exact duplicates)")
    print("| workers | load | seconds | MB/s | CPU s | cores used | " + " | ".join(names) + " |")
    print("|---" * (6 + len(names)) + "|")
    for w, r in runs.items():
        print(f"| {w} | {r['load']:.1f} | {r['secs']:.1f} | {r['mb'] / r['secs']:.2f} | {r['cpu']:.1f} | "
              f"{r['cpu'] / r['secs']:.2f} | " + " | ".join(f"{r['steps'][n]:.1f}" for n in names) + " |")
    print(f"\nspeed-up 1 -> 2 workers: {runs[1]['secs'] / runs[2]['secs']:.2f}x "
          f"(clean step {runs[1]['steps']['clean'] / runs[2]['steps']['clean']:.2f}x)")
    print("funnel (2 workers):", ", ".join(f"{r['stage']} {r['docs_out']}" for r in runs[2]["stats"]["stages"]))
    shutil.rmtree(copies, ignore_errors=True)
    print("\nline repair, share of breaks handled right:")
    for method, r in repair_eval(docs, rng).items():
        print(f"  {method}: {r}")
    print("\nnear-dup recall (LSH candidate with its original), 14 bands x 8 hashes:")
    for unit, r in shingle_eval(docs, rng).items():
        print(f"  {unit}: {r}")


if __name__ == "__main__":
    main()

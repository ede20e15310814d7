"""Benchmark of `kollm data` on ../shared/corpora/ko-docs-train.jsonl.

    python bench/data.py            # all sections, ~5 minutes on 2 cores
    python bench/data.py --quick    # first 300 documents

1. MB/s per core of each stage (one process, the stage's own function on every document).
2. The whole pipeline (`kollm data run`, recipes/data-ko-docs.toml) with 1 and 2 workers.
3. Line repair: rules vs Kiwi on planted breaks (sentences cut at a space or before a particle)
   and on real breaks that must stay (a sentence end; a heading before the body).
4. Near-dup shingles: characters vs Kiwi morphemes on planted near-duplicates.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
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


def pipeline_speed(corpus: Path, workers: int) -> tuple[float, float, dict]:
    out = Path(tempfile.mkdtemp()) / "out"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kollm.cli", "data", "run", "--input", str(corpus), "--out", str(out),
         "--workers", str(workers), "--recipe", str(ROOT / "recipes" / "data-ko-docs.toml")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    secs = time.perf_counter() - t0
    stats = json.loads((out / "stats.json").read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return corpus.stat().st_size / 1e6, secs, stats


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
    print("\n| whole pipeline (kollm data run) | seconds | MB/s | MB/s per core |\n|---|---|---|---|")
    base = None
    for w in (1, 2):
        mb, secs, stats = pipeline_speed(corpus, w)
        base = base or secs
        print(f"| {w} worker{'s' if w > 1 else ''} | {secs:.1f} | {mb / secs:.2f} | {mb / secs / w:.2f} |")
    print(f"\nspeed-up 1 -> 2 workers: {base / secs:.2f}x")
    print("funnel (2 workers):", ", ".join(f"{r['stage']} {r['docs_out']}" for r in stats["stages"]))
    print("\nline repair, share of breaks handled right:")
    for method, r in repair_eval(docs, rng).items():
        print(f"  {method}: {r}")
    print("\nnear-dup recall (LSH candidate with its original), 14 bands x 8 hashes:")
    for unit, r in shingle_eval(docs, rng).items():
        print(f"  {unit}: {r}")


if __name__ == "__main__":
    main()

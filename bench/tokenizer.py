"""Benchmark kollm's Korean tokenizers: compression, encode speed and downstream bits-per-byte.

    python bench/tokenizer.py                  # full run (~15 min on 2 CPU cores)
    python bench/tokenizer.py --quick          # smoke run on a slice of the data

For each method (bbpe, morpheme-bbpe, unigram) and vocabulary size, trained on ko-docs-train.jsonl:
  * bytes per token and tokens per eojeol (whitespace word) on ko-docs-val.jsonl (in-domain: office
    software help pages) and on kollm's embedded sample corpus (out-of-domain: news, encyclopedia);
  * for morpheme-bbpe, also what Kiwi at inference would give (the saved tokenizer.json runs without it);
  * encode throughput in MB/s, one document at a time (single thread) and batched (all cores);
  * downstream: val bits-per-byte of the same small model trained with each tokenizer (the train stage),
    at one vocabulary size. The models differ only in their tokenizer and have the same size, so equal
    steps is equal compute and equal wall clock on an idle machine; steps are the default because a
    shared machine makes wall-clock budgets unequal (--budget SECONDS gives the wall-clock variant).
Prints a markdown table and writes results.json, table.md and tokenizer.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from kollm.data.sources import read_texts, sample_corpus_files
from kollm.files import write_json, write_text
from kollm.tokenizer import METHODS, TokenizerConfig, save_tokenizer
from kollm.tokenizer.bbpe import train_bbpe
from kollm.tokenizer.morpheme import encode_with_kiwi, mark_boundaries, morpheme_pre_tokenizer
from kollm.tokenizer.unigram import train_unigram

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


def load(path: Path, limit: int = 0) -> list[str]:
    texts = read_texts([path])
    return texts[:limit] if limit else texts


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


def compression(ids: list[list[int]], texts: list[str]) -> tuple[float, float]:
    n_tok = sum(map(len, ids))
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    return n_bytes / n_tok, n_tok / n_words


def throughput(tok, texts: list[str]) -> tuple[float, float]:
    """MB/s one document at a time (the library encodes a single string on one thread) and batched."""
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    t0 = time.perf_counter()
    for t in texts:
        tok.encode(t, add_special_tokens=False)
    single = mb / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    tok.encode_batch(texts, add_special_tokens=False)
    return single, mb / (time.perf_counter() - t0)


def train_one(method: str, vocab: int, train: list[str], marked: tuple[list[str], str]):
    specials = TokenizerConfig().special_tokens()
    if method == "bbpe":
        return train_bbpe(train, vocab, 2, specials)
    if method == "morpheme-bbpe":
        return train_bbpe(marked[0], vocab, 2, specials, morpheme_pre_tokenizer(marked[1]))
    return train_unigram(train, vocab, specials)


def downstream(tok_dir: Path, train: list[str], val: list[str], budget: float, steps: int, depth: int,
               out: Path) -> dict:
    from kollm.model import ModelConfig
    from kollm.tokenizer import load_tokenizer
    from kollm.train import TrainConfig, train_model

    tokenizer = load_tokenizer(tok_dir)
    cfg = TrainConfig(time_budget=budget, max_steps=steps, batch_size=8, eval_every_s=1e9, checkpoint_every_s=1e9,
                      val_max_docs=len(val), sample_tokens=0, tensorboard=False, seed=0)
    res = train_model(ModelConfig(depth=depth, max_seq_len=256), cfg, tokenizer, train, val, out)
    return {"val_bpb": res.best_val_bpb, "steps": res.steps, "tokens_per_s": res.tokens_per_s,
            "train_seconds": res.train_seconds}


def plot(rows: list[dict], down: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vocabs = sorted({r["vocab"] for r in rows})
    fig, axes = plt.subplots(1, 3 if down else 2, figsize=(15 if down else 10, 4))
    for ax, key, title in ((axes[0], "val_bpt", "ko-docs-val"), (axes[1], "sample_bpt", "sample corpus")):
        for m in METHODS:
            ys = [next(r[key] for r in rows if r["method"] == m and r["vocab"] == v) for v in vocabs]
            ax.plot(vocabs, ys, marker="o", label=m)
        kiwi = [next(r[key + "_kiwi"] for r in rows if r["method"] == "morpheme-bbpe" and r["vocab"] == v)
                for v in vocabs]
        ax.plot(vocabs, kiwi, marker="x", linestyle="--", label="morpheme-bbpe + Kiwi at inference")
        ax.set(xscale="log", xlabel="vocabulary size", ylabel="UTF-8 bytes per token (higher = better)",
               title=title)
        ax.legend(fontsize=8)
    if down:
        ax = axes[2]
        ms = list(down)
        ax.bar(ms, [down[m]["val_bpb"] for m in ms], color=["C0", "C1", "C2"][: len(ms)])
        lo = min(down[m]["val_bpb"] for m in ms)
        ax.set(ylim=(lo * 0.95, None), ylabel="val bits per byte (lower = better)",
               title=f"downstream, equal steps (vocab {next(iter(down.values()))['vocab']})")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def table(rows: list[dict], down: dict, kiwi_speed: float) -> str:
    head = ("| method | vocab (actual) | train s | val B/tok | val tok/eojeol | sample B/tok | sample tok/eojeol "
            "| enc MB/s 1-thread | enc MB/s batched |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['method']} | {r['vocab']} ({r['actual_vocab']}) | {r['train_s']:.1f} | {r['val_bpt']:.3f} "
                     f"| {r['val_tpw']:.3f} | {r['sample_bpt']:.3f} | {r['sample_tpw']:.3f} | {r['mbps_single']:.2f} "
                     f"| {r['mbps_batch']:.2f} |")
    lines += ["", "morpheme-bbpe with Kiwi also at inference (not what kollm ships; measures the Kiwi-free cost):", "",
              "| vocab | val B/tok Kiwi-free | val B/tok with Kiwi | sample B/tok Kiwi-free | sample B/tok with Kiwi |",
              "|---|---|---|---|---|"]
    for r in rows:
        if r["method"] == "morpheme-bbpe":
            lines.append(f"| {r['vocab']} | {r['val_bpt']:.3f} | {r['val_bpt_kiwi']:.3f} | {r['sample_bpt']:.3f} "
                         f"| {r['sample_bpt_kiwi']:.3f} |")
    lines += ["", f"Kiwi morpheme analysis alone: {kiwi_speed:.3f} MB/s "
              "(what inference would pay if Kiwi were needed)."]
    if down:
        lines += ["", "| downstream (same model, same steps) | vocab | steps | tokens/s | val bits/byte |",
                  "|---|---|---|---|---|"]
        for m, d in down.items():
            lines.append(f"| {m} | {d['vocab']} | {d['steps']} | {d['tokens_per_s']:.0f} | {d['val_bpb']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=CORPORA / "ko-docs-train.jsonl")
    ap.add_argument("--val", type=Path, default=CORPORA / "ko-docs-val.jsonl")
    ap.add_argument("--vocabs", default="8000,32000,64000")
    ap.add_argument("--downstream-vocab", type=int, default=8000)
    ap.add_argument("--steps", type=int, default=120, help="downstream optimiser steps (8 x 256 tokens) per tokenizer")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="downstream: train for this many seconds instead of --steps (equal wall clock)")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--val-docs", type=int, default=60, help="val documents scored for downstream bits-per-byte")
    ap.add_argument("--no-downstream", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 train docs, vocab 1k/2k, 20 steps")
    ap.add_argument("--out", type=Path, default=Path("kollm-out/bench/tokenizer"))
    a = ap.parse_args()
    if not a.train.is_file() or not a.val.is_file():
        raise SystemExit(f"benchmark corpora not found ({a.train}, {a.val}); pass --train and --val")
    vocabs = [int(v) for v in a.vocabs.split(",")]
    if a.quick:
        vocabs, a.downstream_vocab, a.steps = [1000, 2000], 1000, 20
    train = load(a.train, 200 if a.quick else 0)
    val = load(a.val, 40 if a.quick else 0)
    sample = read_texts(sample_corpus_files())
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"train {len(train)} docs {sum(len(t.encode()) for t in train) / 1e6:.2f} MB | val {len(val)} docs | "
          f"sample {len(sample)} docs {sum(len(t.encode()) for t in sample) / 1e6:.2f} MB")
    print("start:", load_note())

    t0 = time.perf_counter()
    marked = mark_boundaries(train)  # Kiwi once for all vocabulary sizes
    kiwi_train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    val_kiwi_marked = mark_boundaries(val, progress=False)
    kiwi_speed = sum(len(t.encode()) for t in val) / 1e6 / (time.perf_counter() - t0)
    print(f"kiwi on train: {kiwi_train_s:.1f} s; on val: {kiwi_speed:.3f} MB/s")
    del val_kiwi_marked

    rows = []
    for vocab in vocabs:
        for method in METHODS:
            t0 = time.perf_counter()
            tok = train_one(method, vocab, train, marked)
            train_s = time.perf_counter() - t0 + (kiwi_train_s if method == "morpheme-bbpe" else 0.0)
            ids_val = [e.ids for e in tok.encode_batch(val, add_special_tokens=False)]
            ids_sample = [e.ids for e in tok.encode_batch(sample, add_special_tokens=False)]
            r = {"method": method, "vocab": vocab, "actual_vocab": tok.get_vocab_size(), "train_s": train_s}
            r["val_bpt"], r["val_tpw"] = compression(ids_val, val)
            r["sample_bpt"], r["sample_tpw"] = compression(ids_sample, sample)
            r["mbps_single"], r["mbps_batch"] = throughput(tok, val)
            if method == "morpheme-bbpe":
                r["val_bpt_kiwi"], _ = compression(encode_with_kiwi(tok, val), val)
                r["sample_bpt_kiwi"], _ = compression(encode_with_kiwi(tok, sample), sample)
            save_tokenizer(tok, a.out / f"tok-{method}-{vocab}")
            rows.append(r)
            print(json.dumps(r))

    down: dict[str, dict] = {}
    if not a.no_downstream:
        print("downstream start:", load_note())
        if a.downstream_vocab not in vocabs:
            raise SystemExit(f"--downstream-vocab {a.downstream_vocab} must be one of --vocabs")
        val_sub = val[: a.val_docs]
        if a.budget > 0:
            a.steps = 0
        # Warm-up run: the first model in a process pays for allocator and kernel warm-up, which would
        # otherwise count against whichever tokenizer happens to go first.
        downstream(a.out / f"tok-bbpe-{a.downstream_vocab}", train[:50], val_sub[:2], 0, 3, a.depth, a.out / "warmup")
        for method in METHODS:
            d = downstream(a.out / f"tok-{method}-{a.downstream_vocab}", train, val_sub, a.budget, a.steps, a.depth,
                           a.out / f"run-{method}")
            down[method] = {"vocab": a.downstream_vocab, **d}
            print(method, json.dumps(down[method]))
    end_load = load_note()
    print("end:", end_load)

    md = table(rows, down, kiwi_speed)
    md += f"\n\nMachine: {end_load}. Wall-clock numbers (speed, downstream) move with the load of other processes."
    if down:
        run = f"{a.budget:.0f} s" if a.budget > 0 else f"{a.steps} steps (x 8 x 256 tokens)"
        md += (f"\nDownstream: depth-{a.depth} model, {run} of float32 CPU training per tokenizer, "
               f"bits-per-byte on the first {min(a.val_docs, len(val))} val documents.")
    print()
    print(md)
    write_text(a.out / "table.md", md + "\n")
    write_json(a.out / "results.json", {"rows": rows, "downstream": down, "kiwi_mb_s": kiwi_speed})
    plot(rows, down, a.out / "tokenizer.png")
    print(f"\nwrote {a.out / 'table.md'}, {a.out / 'results.json'}, {a.out / 'tokenizer.png'}")


if __name__ == "__main__":
    main()

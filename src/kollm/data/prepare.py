"""The quickstart corpus step: read, NFC-normalise, drop empty/duplicate documents, split train/val."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from kollm.data.config import DataConfig
from kollm.data.readers import expand_sources, read_documents, sample_corpus_files
from kollm.errors import KollmError
from kollm.files import write_json, write_jsonl


def normalize(text: str) -> str:
    """NFC (so 한 typed as conjoining jamo equals the precomposed syllable), unified newlines, trimmed."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def is_val(text: str, fraction: float, seed: int) -> bool:
    # Split by a hash of the text so the split is stable however the files are ordered.
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest(), "big")
    return (h % 10_000) < fraction * 10_000


def clean(docs: Iterable[dict], min_chars: int) -> tuple[list[dict], dict[str, int]]:
    seen: set[bytes] = set()
    kept, stats = [], {"read": 0, "empty_or_short": 0, "duplicate": 0}
    for doc in docs:
        stats["read"] += 1
        text = normalize(doc["text"])
        if len(text) < min_chars:
            stats["empty_or_short"] += 1
            continue
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if key in seen:
            stats["duplicate"] += 1
            continue
        seen.add(key)
        kept.append({**doc, "text": text})
    stats["kept"] = len(kept)
    return kept, stats


def prepare_corpus(cfg: DataConfig, out_dir: str | Path) -> dict:
    """Write `train.jsonl`, `val.jsonl` and `stats.json` under `out_dir`; return the stats."""
    files = expand_sources(cfg.sources) if cfg.sources else sample_corpus_files()
    if not files:
        raise KollmError("no input files found; pass --data with .jsonl or .txt files")

    def all_docs() -> Iterable[dict]:
        for f in tqdm(files, desc="corpus", unit="file", leave=False):
            yield from read_documents(f)

    docs, stats = clean(all_docs(), cfg.min_chars)
    train = [d for d in docs if not is_val(d["text"], cfg.val_fraction, cfg.seed)]
    val = [d for d in docs if is_val(d["text"], cfg.val_fraction, cfg.seed)]
    if len(docs) >= 2 and (not val or not train):  # tiny corpora: the hash split can leave a side empty
        train, val = docs[:-1], docs[-1:]
    if len(docs) < 2 or sum(len(d["text"]) for d in train) < 1000:
        raise KollmError(
            f"corpus too small to split: {len(docs)} usable documents "
            f"({sum(len(d['text']) for d in docs)} characters); give at least a few thousand characters "
            f"in 2+ documents of {cfg.min_chars}+ characters each"
        )
    out = Path(out_dir)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "val.jsonl", val)
    stats.update(
        files=len(files),
        train_docs=len(train),
        val_docs=len(val),
        train_bytes=sum(len(d["text"].encode()) for d in train),
        val_bytes=sum(len(d["text"].encode()) for d in val),
    )
    write_json(out / "stats.json", stats)
    return stats

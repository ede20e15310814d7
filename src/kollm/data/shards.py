"""Packed token shards for training, and their reader.

Layout of a shard folder (one pair of files per pipeline task, so tasks never share a file):

    tokens-00000.bin   token ids of every document, back to back (uint16 if the vocabulary fits, else uint32)
    tokens-00000.idx   uint64 end offset (in tokens) of each document in the .bin
    shards.json        {"dtype": "uint16", "vocab_size": N, "bos_id": id, "eos_id": id, "tokenizer": path}

Each document is framed exactly as in-memory training frames it (`kollm.special_tokens.frame`: BOS doc
EOS, with the BOS/EOS that the tokenizer's own tokenizer_config.json names), so a packed window that
crosses documents shows the model where one stops and the next starts, whichever path the tokens came by.
Each pair is written to temp names and
renamed when the task finishes: a killed task leaves no half shard.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from kollm.errors import KollmError
from kollm.special_tokens import PII_PLACEHOLDERS, frame, special_ids


def load_hf_tokenizer(folder: str | Path):  # noqa: ANN201 - tokenizers.Tokenizer
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise KollmError(f"{path} not found; pass --tokenizer with a folder made by `kollm tokenizer train`")
    tok = Tokenizer.from_file(str(path))
    for ph in PII_PLACEHOLDERS:  # masked text must keep each placeholder as one token
        ids = tok.encode(ph, add_special_tokens=False).ids
        if len(ids) != 1:
            raise KollmError(
                f"tokenizer {folder} splits the PII placeholder {ph} into {len(ids)} tokens; "
                "retrain it with kollm tokenizer train (which registers the placeholders as special tokens)"
            )
    return tok


def shard_meta(folder: str | Path) -> dict:
    tok = load_hf_tokenizer(folder)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    bos, eos = special_ids(folder)
    if bos is None and eos is None:
        raise KollmError(f"{folder}/tokenizer_config.json names no bos_token or eos_token, so token shards could not "
                         "mark where documents end; use a tokenizer made by `kollm tokenizer train` or set them")
    return {"dtype": "uint16" if vocab <= 65536 else "uint32", "vocab_size": vocab, "bos_id": bos, "eos_id": eos,
            "tokenizer": str(folder)}


class TokenShardWriter(PipelineStep):
    type = "🇰🇷 kollm"
    name = "tokens"

    def __init__(self, tokenizer_dir: str, out_dir: str, batch: int = 256) -> None:
        super().__init__()
        self.tokenizer_dir, self.out_dir, self.batch = tokenizer_dir, out_dir, batch
        self.meta = shard_meta(tokenizer_dir)  # checked up front, before any task starts

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tok = load_hf_tokenizer(self.tokenizer_dir)
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "shards.json").write_text(json.dumps(self.meta, indent=2) + "\n")  # same content from every task
        dtype, bos, eos = np.dtype(self.meta["dtype"]), self.meta["bos_id"], self.meta["eos_id"]
        bin_path, idx_path = out / f"tokens-{rank:05d}.bin", out / f"tokens-{rank:05d}.idx"
        tmp_bin, tmp_idx = bin_path.with_suffix(".bin.tmp"), idx_path.with_suffix(".idx.tmp")
        ends: list[int] = []
        total = 0
        with open(tmp_bin, "wb") as fb:
            pending: list = []

            def flush() -> None:
                nonlocal total
                for enc in tok.encode_batch([d.text for d in pending], add_special_tokens=False):
                    ids = frame(enc.ids, bos, eos)
                    fb.write(np.asarray(ids, dtype=dtype).tobytes())
                    total += len(ids)
                    ends.append(total)
                pending.clear()

            for doc in data:
                pending.append(doc)
                if len(pending) >= self.batch:
                    flush()
                yield doc
            if pending:
                flush()
        np.asarray(ends, dtype=np.uint64).tofile(tmp_idx)
        self.stat_update("tokens", value=total)
        os.replace(tmp_bin, bin_path)
        os.replace(tmp_idx, idx_path)


@dataclass
class Shard:
    tokens: np.ndarray  # memory-mapped token ids
    doc_ends: np.ndarray  # end offset of each document in `tokens`

    def doc(self, i: int) -> np.ndarray:
        start = int(self.doc_ends[i - 1]) if i else 0
        return self.tokens[start : int(self.doc_ends[i])]


@dataclass
class TokenShards:
    shards: list[Shard]
    meta: dict

    @property
    def num_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.shards)

    @property
    def num_docs(self) -> int:
        return sum(len(s.doc_ends) for s in self.shards)


def open_shards(folder: str | Path) -> TokenShards:
    """Memory-map every token shard in `folder` (made by `kollm data run --tokenizer`)."""
    folder = Path(folder)
    meta_path = folder / "shards.json"
    if not meta_path.is_file():
        raise KollmError(f"{folder} has no shards.json; make token shards with `kollm data run --tokenizer DIR`")
    meta = json.loads(meta_path.read_text())
    shards = []
    for bin_path in sorted(folder.glob("tokens-*.bin")):
        ends = np.fromfile(bin_path.with_suffix(".idx"), dtype=np.uint64)
        size = bin_path.stat().st_size
        tokens = (
            np.memmap(bin_path, dtype=meta["dtype"], mode="r") if size else np.zeros(0, dtype=meta["dtype"])
        )
        if len(ends) and int(ends[-1]) != len(tokens):
            raise KollmError(f"{bin_path} and its .idx disagree ({len(tokens)} tokens, index says {int(ends[-1])})")
        shards.append(Shard(tokens, ends))
    return TokenShards(shards, meta)

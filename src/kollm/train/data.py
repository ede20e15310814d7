"""Training batches from raw text (tokenized once, in memory) or packed token shards (memory-mapped).

Each step draws `batch_size` random windows from one RNG that every process seeds identically; process r
takes rows [r*B/W, (r+1)*B/W), then cuts them into micro-batches. So the data of a step does not depend
on the world size (what makes 2 processes match 1 process with gradient accumulation), and the RNG state
is the whole data-loader position: it goes in the checkpoint, and a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kollm.errors import KollmError
from kollm.progress import progress
from kollm.special_tokens import frame


def tokenize_stream(tokenizer: object, texts: Sequence[str], show: bool = True) -> np.ndarray:
    """BOS doc EOS BOS doc EOS ... as one int32 array (the same framing as token shards)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    parts = []
    for text in progress(texts, desc="tokenize", unit="doc", leave=False, disable=not show):
        ids = tokenizer.encode(text, add_special_tokens=False)
        parts.append(np.asarray(frame(ids, bos, eos), dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def hold_out(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, val): a document goes to val by a hash of its text, so the split does not depend on file order."""
    if not 0.0 < fraction < 1.0:
        raise KollmError(f"val_fraction must be between 0 and 1, got {fraction}")

    def is_val(text: str) -> bool:
        h = int.from_bytes(hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest(), "big")
        return (h % 10_000) < fraction * 10_000

    if len(texts) < 2:
        raise KollmError(f"corpus too small to split: {len(texts)} usable document(s); give at least 2 documents "
                         "(a few thousand characters), or pass validation text with --val")
    train = [t for t in texts if not is_val(t)]
    val = [t for t in texts if is_val(t)]
    if not train or not val:  # tiny corpora: the hash can leave a side empty
        train, val = list(texts[:-1]), list(texts[-1:])
    return train, val


def is_shard_folder(path: str | Path) -> bool:
    return (Path(path) / "shards.json").is_file()


def check_shards(path: str | Path, vocab: int) -> None:
    """Cheap checks (no token read) so a mismatch fails before any compute."""
    meta = json.loads((Path(path) / "shards.json").read_text())
    if meta.get("vocab_size", 0) > vocab:
        raise KollmError(f"token shards in {path} use a {meta['vocab_size']}-token vocabulary but the tokenizer "
                         f"has {vocab}; tokenize with the same tokenizer you train with")
    if not list(Path(path).glob("tokens-*.bin")):
        raise KollmError(f"{path} has shards.json but no tokens-*.bin files; rerun `kollm data run --tokenizer`")


def open_token_segments(path: str | Path) -> list[np.ndarray]:
    from kollm.data.shards import open_shards

    return [s.tokens for s in open_shards(path).shards if len(s.tokens)]


class BatchSampler:
    def __init__(self, segments: Sequence[np.ndarray], batch_size: int, seq_len: int, seed: int,
                 rank: int = 0, world: int = 1) -> None:
        self.segments = [s for s in segments if len(s) >= seq_len + 1]
        if not self.segments:
            total = sum(len(s) for s in segments)
            raise KollmError(f"training text is only {total} tokens, shorter than one sequence of {seq_len}; "
                             "give more text or a smaller max_seq_len")
        # valid window starts per segment; a draw in [0, total) maps to (segment, offset)
        self.starts = np.cumsum([0] + [len(s) - seq_len for s in self.segments])
        self.batch_size, self.seq_len, self.rank, self.world = batch_size, seq_len, rank, world
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the next global batch: (inputs, targets), each [B/W, seq_len]."""
        draws = self.rng.integers(0, self.starts[-1], size=self.batch_size)
        per = self.batch_size // self.world
        rows = []
        for g in draws[self.rank * per:(self.rank + 1) * per]:
            seg = int(np.searchsorted(self.starts, g, side="right")) - 1
            off = int(g - self.starts[seg])
            rows.append(np.asarray(self.segments[seg][off:off + self.seq_len + 1], dtype=np.int64))
        chunk = torch.from_numpy(np.stack(rows))
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state

"""Packing: examples laid end to end in rows of `seq_len` tokens instead of one padded row each.

Query-correction examples are ~20 tokens; padded to the longest in a batch most of a step is padding. Packed, a
row holds a dozen examples and each attends only to itself: positions restart at 0 for every example, and
transformers turns restarting `position_ids` into a block-diagonal causal mask (masking_utils'
packed-sequence detection; checked against unpacked logits in tests/tune). Rows stay short (a few hundred
tokens) because attention over a packed row costs its length squared whether or not the blocks are masked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from kollm.model.loss import IGNORE
from kollm.tune.examples import Example


@dataclass
class Batch:
    ids: torch.Tensor  # [rows, seq]
    positions: torch.Tensor  # [rows, seq], restarting at each example
    labels: torch.Tensor  # [rows, seq], IGNORE where nothing is learned (prompts, padding, first tokens)
    target_bytes: int
    tokens: int  # real (not padding) tokens

    @property
    def supervised(self) -> int:
        return int((self.labels[:, 1:] != IGNORE).sum())


def pack_rows(examples: list[Example], seq_len: int) -> list[list[Example]]:
    """First-fit decreasing into rows of at most seq_len tokens (the order within a row does not matter)."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for ex in sorted(examples, key=lambda e: -len(e.ids)):
        n = len(ex.ids)
        for i, r in enumerate(room):
            if r >= n:
                rows[i].append(ex)
                room[i] -= n
                break
        else:
            rows.append([ex])
            room.append(seq_len - n)
    return rows


def collate(rows: list[list[Example]], pad_id: int) -> Batch:
    width = max(sum(len(e.ids) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    nbytes = tokens = 0
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e.ids)
            ids[r, at:at + n] = torch.tensor(e.ids)
            lab = torch.tensor(e.labels)
            lab[0] = IGNORE  # never learn an example's first token from the one before it
            labels[r, at:at + n] = lab
            pos[r, at:at + n] = torch.arange(n)
            at += n
            nbytes += e.target_bytes
            tokens += n
        if at < width:  # padding is one more "example" of its own, so it cannot join the last one's attention
            pos[r, at:] = torch.arange(width - at)
    return Batch(ids, pos, labels, nbytes, tokens)


def batches(examples: list[Example], seq_len: int, batch_tokens: int, pad_id: int, seed: int,
            epoch: int) -> list[Batch]:
    """One epoch of steps: examples shuffled by (seed, epoch), packed, rows grouped ~batch_tokens per step.
    Deterministic, so a resumed run sees exactly the batches it would have seen."""
    rng = random.Random(f"{seed}:{epoch}")
    order = examples[:]
    rng.shuffle(order)
    per_step = max(1, batch_tokens // seq_len)
    # pack within windows of a few steps' worth, so each epoch's shuffle still mixes what a step sees
    window = per_step * seq_len * 8
    rows: list[list[Example]] = []
    chunk: list[Example] = []
    size = 0
    for ex in order:
        chunk.append(ex)
        size += len(ex.ids)
        if size >= window:
            rows += pack_rows(chunk, seq_len)
            chunk, size = [], 0
    if chunk:
        rows += pack_rows(chunk, seq_len)
    rng.shuffle(rows)
    return [collate(rows[i:i + per_step], pad_id) for i in range(0, len(rows), per_step)]

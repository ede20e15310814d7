"""Training batches: all documents tokenized into one stream (BOS doc EOS BOS doc EOS ...), and
random windows of it. The sampler's RNG is part of the checkpoint, so a resumed run sees exactly
the batches the uninterrupted run would have seen."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from kollm.errors import KollmError


def tokenize_stream(tokenizer: object, texts: Sequence[str]) -> np.ndarray:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    parts = []
    for text in tqdm(texts, desc="tokenize", unit="doc", leave=False):
        parts.append(np.asarray([bos, *tokenizer.encode(text, add_special_tokens=False), eos], dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class BatchSampler:
    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int) -> None:
        if len(tokens) < seq_len + 2:
            raise KollmError(
                f"training text is only {len(tokens)} tokens, shorter than one sequence of {seq_len}; "
                "give more text or a smaller max_seq_len"
            )
        self.tokens = torch.from_numpy(tokens)
        self.batch_size, self.seq_len = batch_size, seq_len
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch_size)
        idx = torch.from_numpy(starts)[:, None] + torch.arange(self.seq_len + 1)
        chunk = self.tokens[idx]
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state

"""Tokenizer settings. The special tokens every kollm tokenizer carries live in kollm.special_tokens."""

from __future__ import annotations

from dataclasses import dataclass

from kollm.special_tokens import SPECIAL_TOKENS

METHODS: tuple[str, ...] = ("bbpe", "morpheme-bbpe", "unigram")


@dataclass
class TokenizerConfig:
    method: str = "bbpe"
    vocab_size: int = 4096  # small corpora (the sample is ~0.4 MB) cannot fill a larger vocabulary
    min_frequency: int = 2
    extra_special_tokens: tuple[str, ...] = ()
    sample_size: int = 0  # train on at most this many documents, drawn at random (0 = all)
    threads: int = 0  # 0 = every core
    seed: int = 0

    def special_tokens(self) -> list[str]:
        """kollm's contract first (BOS/EOS/PAD are ids 0, 1, 2 in every kollm tokenizer), then the user's."""
        return list(dict.fromkeys([*SPECIAL_TOKENS, *self.extra_special_tokens]))

"""Tokenizer settings and the special tokens every kollm tokenizer carries."""

from __future__ import annotations

from dataclasses import dataclass

from kollm.data.placeholders import PII_PLACEHOLDERS

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, PAD, *PII_PLACEHOLDERS)
# ChatML-style turn markers, so a chat template can be written later without resizing the model.
CHAT_TOKENS: tuple[str, ...] = ("<|im_start|>", "<|im_end|>")

METHODS: tuple[str, ...] = ("bbpe", "morpheme-bbpe", "unigram")


@dataclass
class TokenizerConfig:
    method: str = "bbpe"
    vocab_size: int = 4096  # small corpora (the sample is ~0.4 MB) cannot fill a larger vocabulary
    min_frequency: int = 2
    chat_tokens: bool = True
    extra_special_tokens: tuple[str, ...] = ()
    sample_size: int = 0  # train on at most this many documents, drawn at random (0 = all)
    threads: int = 0  # 0 = every core
    seed: int = 0

    def special_tokens(self) -> list[str]:
        """BOS/EOS/PAD first (ids 0, 1, 2 in every kollm tokenizer), then placeholders, chat and user tokens."""
        toks = [*SPECIAL_TOKENS, *(CHAT_TOKENS if self.chat_tokens else ()), *self.extra_special_tokens]
        return list(dict.fromkeys(toks))

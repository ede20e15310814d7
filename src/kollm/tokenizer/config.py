from __future__ import annotations

from dataclasses import dataclass

from kollm.data.placeholders import PII_PLACEHOLDERS

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, PAD, *PII_PLACEHOLDERS)


@dataclass
class TokenizerConfig:
    method: str = "bbpe"
    vocab_size: int = 4096  # small corpora (the sample is ~0.4 MB) cannot fill a larger vocabulary
    min_frequency: int = 2

"""Model shape, derived from one dial: depth.

    width      = 64 * depth            (aspect ratio 64, as in nanochat)
    head_dim   = 64                     -> n_heads = depth
    kv_heads   = n_heads                (set lower for grouped-query attention)
    ffn        = 8/3 * width, rounded up to a multiple of 64 (SwiGLU keeps ~ the 4x-MLP parameter count)

Any derived value can be set explicitly to override the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kollm.errors import KollmError


@dataclass
class ModelConfig:
    depth: int = 4
    vocab_size: int = 0  # 0: taken from the tokenizer
    max_seq_len: int = 256
    width: int = 0  # 0: derived from depth
    n_heads: int = 0
    n_kv_heads: int = 0
    ffn_dim: int = 0
    head_dim: int = 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    init_std: float = 0.02

    @property
    def is_resolved(self) -> bool:
        return bool(self.width and self.n_heads and self.n_kv_heads and self.ffn_dim)

    def require_resolved(self) -> None:
        if not self.is_resolved:
            raise ValueError("ModelConfig has underived fields; build models from cfg.resolved()")

    def resolved(self) -> ModelConfig:
        """Fill every 0 with the value the depth rule gives, and check the shape is possible.

        A run resolves its config once (shape errors before any data is read); models, parameter counts and
        FLOP counts take the resolved config and never resolve again.
        """
        if self.depth < 1:
            raise KollmError(f"model depth must be >= 1, got {self.depth}")
        width = self.width or 64 * self.depth
        n_heads = self.n_heads or max(1, width // self.head_dim)
        n_kv = self.n_kv_heads or n_heads
        ffn = self.ffn_dim or 64 * math.ceil(8 * width / 3 / 64)
        if width % n_heads:
            raise KollmError(f"n_heads={n_heads} does not divide width={width}; pick a divisor of the width")
        if n_heads % n_kv:
            raise KollmError(f"n_kv_heads={n_kv} must divide n_heads={n_heads}")
        if self.head_dim % 2:
            raise KollmError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        return ModelConfig(
            depth=self.depth, vocab_size=self.vocab_size, max_seq_len=self.max_seq_len, width=width,
            n_heads=n_heads, n_kv_heads=n_kv, ffn_dim=ffn, head_dim=self.head_dim,
            rope_theta=self.rope_theta, norm_eps=self.norm_eps, tie_embeddings=self.tie_embeddings,
            init_std=self.init_std,
        )

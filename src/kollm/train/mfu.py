"""Model FLOPs utilisation against a matmul peak measured on this machine at start.

A datasheet peak means little on a shared 2-core VM (or with another job on the GPU), so the denominator is
what a large square matmul in the training dtype actually reaches right now. MFU = model FLOPs per second
(6 FLOPs per parameter per token for the matmuls, plus attention's 12*L*T*width) / that peak.
"""

from __future__ import annotations

import time

import torch

from kollm.model import ModelConfig


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 0, seconds: float = 1.0) -> float:
    """Best observed FLOP/s of an n x n matmul (n=1024 on CPU, 8192 on GPU)."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, t_end = 0.0, time.perf_counter() + seconds
    for i in range(1000):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i:  # the first call pays for warm-up
            best = max(best, 2 * n**3 / dt)
        if i >= 2 and time.perf_counter() > t_end:
            break
    return best


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward + backward FLOPs per training token (PaLM appendix B convention)."""
    cfg.require_resolved()
    c = cfg
    attn = c.width * c.n_heads * c.head_dim * 2 + c.width * c.n_kv_heads * c.head_dim * 2
    mlp = 3 * c.width * c.ffn_dim
    matmul_params = c.depth * (attn + mlp) + c.width * c.vocab_size  # the head is a matmul, the embedding is not
    return 6.0 * matmul_params + 12.0 * c.depth * c.n_heads * c.head_dim * seq_len

"""torch.optim.Muon with the Newton-Schulz iteration in a dtype the hardware is fast at, and FSDP2 support.

torch's Muon orthogonalises in bfloat16, which CPUs without AMX emulate ~500x slower than float32 (measured:
Muon steps 15x slower than AdamW at depth 2 on this machine). Same update rule, state layout
("momentum_buffer") and hyperparameters as torch.optim.Muon; only the iteration's dtype differs. Under FSDP2
a gradient is a DTensor shard: the iteration needs the whole matrix, so it is gathered, orthogonalised
(identically on every rank) and each rank keeps its own slice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def newton_schulz(g: Tensor, coeffs: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype) -> Tensor:
    a, b, c = coeffs
    x = g.to(dtype)
    if g.size(0) > g.size(1):
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    if g.size(0) > g.size(1):
        x = x.T
    return x.to(g.dtype)


def _orthogonalise(update: Tensor, group: dict, dtype: torch.dtype) -> Tensor:
    from torch.distributed.tensor import DTensor, distribute_tensor

    args = (group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
    if isinstance(update, DTensor):
        full = newton_schulz(update.full_tensor(), *args)
        return distribute_tensor(full, update.device_mesh, update.placements, src_data_rank=None)
    return newton_schulz(update, *args)


class Muon(torch.optim.Muon):
    def __init__(self, params: object, ns_dtype: torch.dtype = torch.float32, **kw: object) -> None:
        super().__init__(params, **kw)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            self._init_group(group, params, grads, bufs)
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p, g, buf in zip(params, grads, bufs, strict=True):
                buf.lerp_(g, 1 - mom)
                update = g.lerp(buf, mom) if group["nesterov"] else buf
                update = _orthogonalise(update, group, self.ns_dtype)
                a, b = p.shape[:2]
                scale = {"match_rms_adamw": 0.2 * math.sqrt(max(a, b)), "original": math.sqrt(max(1, a / b)),
                         None: math.sqrt(max(1, a / b))}.get(group["adjust_lr_fn"], 1.0)
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * scale)
        return loss

"""torch.optim.Muon with the Newton-Schulz iteration in a dtype the hardware is fast at, and FSDP2 support.

torch's Muon orthogonalises in bfloat16, which CPUs without AMX emulate ~500x slower than float32 (measured:
Muon steps 15x slower than AdamW at depth 2 on this machine). Same update rule, state layout
("momentum_buffer") and hyperparameters as torch.optim.Muon; only the iteration's dtype differs, and
same-shape matrices are orthogonalised together. Under FSDP2 the iteration is split over the ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def newton_schulz(g: Tensor, coeffs: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype) -> Tensor:
    """Orthogonalise a matrix (m, n), or a stack of same-shape matrices (k, m, n) all in one iteration."""
    a, b, c = coeffs
    single = g.dim() == 2
    x = g.to(dtype)[None] if single else g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    if tall:
        x = x.mT
    return (x[0] if single else x).to(g.dtype)


def _split_over_ranks(stack: Tensor, mesh: object, ns: Callable[[Tensor], Tensor]) -> Tensor:
    """Each rank orthogonalises its own slice of the stack, then all ranks exchange results: the iteration
    costs 1/world per rank instead of being repeated on every rank (as nanochat's DistMuon does)."""
    import torch.distributed as dist

    world, rank = mesh.size(), mesh.get_local_rank()
    per = -(-stack.shape[0] // world)  # ceil: the last ranks may get fewer (or no) matrices
    mine = stack[rank * per:(rank + 1) * per]
    local = torch.zeros((per, *stack.shape[1:]), dtype=stack.dtype, device=stack.device)
    if len(mine):
        local[:len(mine)] = ns(mine)
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local, group=mesh.get_group())
    return torch.cat(parts)[:stack.shape[0]]


def orthogonalise_all(updates: list[Tensor], group: dict, dtype: torch.dtype) -> list[Tensor]:
    """Newton-Schulz on every update, batched by shape: a depth-L model has L matrices of each shape, and one
    batched matmul on L of them runs faster than L small ones (measured at width 192: 45 ms vs 59 ms per step).
    A tall matrix is orthogonalised as its transpose (the iteration works on the smaller Gram matrix either
    way), so down_proj joins gate_proj/up_proj in one batch (measured 34 ms -> 29 ms for those 9 at width 192).
    Under FSDP2 an update is a DTensor shard: the iteration needs whole matrices, so they are gathered, each
    rank orthogonalises 1/world of every batch, the results are all-gathered and each rank keeps its slice."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    full = [u.full_tensor() if isinstance(u, DTensor) else u for u in updates]
    wide = [u if u.size(-2) <= u.size(-1) else u.mT for u in full]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, u in enumerate(wide):
        by_shape.setdefault(tuple(u.shape), []).append(i)
    out: list[Tensor] = [torch.empty(0)] * len(full)

    def ns(x: Tensor) -> Tensor:
        return newton_schulz(x, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)

    for idx in by_shape.values():
        stack = torch.stack([wide[i] for i in idx])
        sharded = isinstance(updates[idx[0]], DTensor)
        ortho = _split_over_ranks(stack, updates[idx[0]].device_mesh, ns) if sharded else ns(stack)
        for j, i in enumerate(idx):
            u, o = updates[i], ortho[j] if wide[i] is full[i] else ortho[j].mT
            out[i] = (distribute_tensor(o, u.device_mesh, u.placements, src_data_rank=None)
                      if isinstance(u, DTensor) else o)
    return out


def _lr_scale(adjust_lr_fn: str | None, a: int, b: int) -> float:
    """torch.optim.Muon's per-matrix learning-rate adjustment."""
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(a, b))
    return math.sqrt(max(1, a / b))


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
            torch._foreach_lerp_(bufs, grads, 1 - mom)
            updates = torch._foreach_lerp(grads, bufs, mom) if group["nesterov"] else bufs
            updates = orthogonalise_all(updates, group, self.ns_dtype)
            scales = [_lr_scale(group["adjust_lr_fn"], *p.shape[:2]) for p in params]
            torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_mul_(updates, scales)  # the orthogonalised updates are fresh tensors
            torch._foreach_add_(params, updates, alpha=-lr)
        return loss

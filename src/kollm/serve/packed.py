"""Linear layers with MKL-packed weights, for serving on x86 CPUs.

A decode step is a handful of small-batch GEMMs against large weights; MKL runs them ~1.5x faster when the weight
is packed once into its internal blocked layout instead of re-blocked on every call. Measured here (2 cores):
Gemma-3-270M's layer GEMMs at 16 rows 2-3.5x faster, its 262k-row output head 86 -> 57 ms at 16 rows and
32 -> 24 ms at one (packed for one row); small weights at one or two rows gain nothing, so they keep the plain
call. End to end, 16 streams on Gemma went from 58 to 122 tok/s. Each packed copy is extra memory (the original
weight stays, for the model's other uses such as a tied embedding): for Gemma-3-270M about 4.5 GB in all. Where
torch has no MKL (other CPUs, GPUs), nothing changes.
"""

from __future__ import annotations

import torch
from torch import nn


def mkl_available() -> bool:
    return bool(getattr(torch._C, "has_mkl", False)) and hasattr(torch.ops.mkl, "_mkl_linear")


# Rows each packing serves, measured on Gemma-3-270M's weights (2 cores): padding a batch up to the packed row
# count pays for up to 4x the rows at 16 (8 rows on the 16-row head: 99 -> 58 ms) but only up to 2x at 64 and
# 256 (a decode step of 23 rows padded to 64 took 276 ms, as long as 64 rows).
HINTS = {4: 3, 16: 5, 64: 33}  # packed row count: fewest rows that use it
PREFILL = {256: 129}


class PackedLinear(nn.Module):
    """MKL's packed GEMM is fast only for the row count it was packed for (measured on Gemma's output head: 4
    rows 63 -> 35 ms packed for 4; 8 rows 99 ms plain, 58 ms as 16 padded rows packed for 16; 64 rows 212 ->
    147 ms packed for 64; its 4096 x 640 gate/up GEMM at 64 rows 2.5 -> 1.6 ms, at 256 rows 8.3 -> 6.1 ms). So a
    weight is packed for a few row counts (`hints`: packed rows -> fewest rows that use it) and a batch is padded
    up to the next one; one or two rows keep the plain call."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, hints: dict[int, int] = HINTS) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.out_features, self.in_features = weight.shape
        if not (mkl_available() and weight.device.type == "cpu" and weight.dtype == torch.float32):
            hints = {}  # elsewhere the plain call
        self.hints = dict(sorted(hints.items()))
        self.packed = {h: torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), h) for h in self.hints}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        hint = next((h for h, least in self.hints.items() if least <= rows <= h), None)
        if hint is None:
            return nn.functional.linear(x, self.weight, self.bias)
        if rows < hint:
            flat = torch.cat([flat, flat.new_zeros(hint - rows, self.in_features)])
        elif not flat.is_contiguous():
            flat = flat.contiguous()
        out = torch.ops.mkl._mkl_linear(flat, self.packed[hint], self.weight, self.bias, hint)[:rows]
        return out.view(*x.shape[:-1], self.out_features)


def pack_linears(model: nn.Module) -> int:
    """Replace every float32 nn.Linear on the CPU by a PackedLinear; returns how many were packed."""
    if not mkl_available():
        return 0
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.device.type == "cpu" and child.weight.dtype == torch.float32:
                setattr(parent, name, PackedLinear(child.weight, child.bias))
                n += 1
    return n

"""Linear layers with MKL-packed weights, for serving on x86 CPUs.

A decode step is a handful of small-batch GEMMs against large weights; MKL runs them ~1.5x faster when the weight
is packed once into its internal blocked layout instead of re-blocked on every call. Measured here (2 cores):
Gemma-3-270M's layer GEMMs at 16 rows 2-3.5x faster, its 262k-row output head 86 -> 57 ms at 16 rows and
40 -> 26 ms at one; small weights at one row gain nothing, so they keep the plain call. End to end, 16 streams
on Gemma went from 58 to 122 tok/s. The packed copy is extra memory (the original weight stays, for the model's
other uses such as a tied embedding). Where torch has no MKL (other CPUs, GPUs), nothing changes.
"""

from __future__ import annotations

import torch
from torch import nn


def mkl_available() -> bool:
    return bool(getattr(torch._C, "has_mkl", False)) and hasattr(torch.ops.mkl, "_mkl_linear")


class PackedLinear(nn.Module):
    """MKL's packed GEMM is fast only for the row count it was packed for (measured on Gemma's output head: 4
    rows 63 -> 35 ms packed for 4; 8 rows 99 ms plain, 58 ms as 16 padded rows packed for 16; 64 rows 212 ->
    147 ms packed for 64). So a weight is packed for a few row counts and a batch is padded up to the next one."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        hints = (4, 16, 64) if self.out_features >= 65536 else (4, 16)  # the output head gains most from 64
        self.packed = {h: torch.ops.mkl._mkl_reorder_linear_weight(linear.weight.detach(), h) for h in hints}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        hint = next((h for h in self.packed if h >= rows), None)
        if rows < 3 or hint is None:  # one or two streams, or a prefill chunk: the plain call is as fast
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
                setattr(parent, name, PackedLinear(child))
                n += 1
    return n

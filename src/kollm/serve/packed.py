"""Linear layers for serving on x86 CPUs: the weight's GEMM in the orientation MKL runs fast at small batches.

A decode step is a handful of small-batch GEMMs against large weights. `F.linear(x, W)` asks MKL for x @ W^T: the
big weight is the transposed right-hand operand, which MKL re-blocks on every call, and at 2..16 rows that costs
more than the arithmetic. Asking for the same product the other way round, (W @ x^T)^T, lets MKL stream W as the
left operand and block only the small x. Measured here (2 cores, medians, Gemma-3-270M's weights, ms):

    rows                        1      2      4      8     16     64    256
    head 262k x 640  F.linear  43    100    111    108    123    258    818
                     MKL-packed 25*    75     70     91     90    224    759
                     W @ x^T   44     30     30     54     79    189    594
    gate/up 4096 x 640 linear  0.24   0.54   0.81   0.75   1.00   2.55   8.35
                     MKL-packed 0.24   0.72   0.74   1.01   1.02   2.62   8.31
                     W @ x^T   0.24   0.31   0.37   0.72   0.65   2.04   7.31

(* packed for one row; "MKL-packed" is the weight packed for the next of 4, 16, 64 or 256 rows with the batch
padded up to it, what this file did before.) So every row count above one takes W @ x^T, and no packed copy of
any weight is kept but the one that still wins: a big weight (the output head) packed for one row, the single
stream's case, 44 -> 25 ms a step. Before, packed copies for four row counts took about 4.5 GB for Gemma-3-270M
(bench/serve_memory.py): most of a served model's memory. Where torch has no MKL, one row runs F.linear too.
"""

from __future__ import annotations

import torch
from torch import nn

ONE_ROW_PACK_MIN = 1 << 24  # weights of at least this many elements get the one-row packing (Gemma's head: 168M)


def mkl_available() -> bool:
    return bool(getattr(torch._C, "has_mkl", False)) and hasattr(torch.ops.mkl, "_mkl_linear")


class PackedLinear(nn.Module):
    """y = x W^T + b, computed as (W x^T)^T on a float32 CPU weight (see above), and with a one-row MKL packing of
    a large weight. Outputs are contiguous, like nn.Linear's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.out_features, self.in_features = weight.shape
        self.cpu = weight.device.type == "cpu" and weight.dtype == torch.float32
        self.one_row = None
        if self.cpu and mkl_available() and weight.numel() >= ONE_ROW_PACK_MIN:
            self.one_row = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        if rows == 1 and self.one_row is not None:
            out = torch.ops.mkl._mkl_linear(flat.contiguous(), self.one_row, self.weight, self.bias, 1)
        elif rows == 1 or not self.cpu:
            out = nn.functional.linear(flat, self.weight, self.bias)
        elif self.bias is None:
            out = torch.mm(self.weight, flat.T).T.contiguous()
        else:
            out = torch.addmm(self.bias[:, None], self.weight, flat.T).T.contiguous()
        return out.view(*x.shape[:-1], self.out_features)


def pack_linears(model: nn.Module) -> int:
    """Replace every float32 nn.Linear on the CPU by a PackedLinear; returns how many were replaced."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.device.type == "cpu" and child.weight.dtype == torch.float32:
                setattr(parent, name, PackedLinear(child.weight, child.bias))
                n += 1
    return n

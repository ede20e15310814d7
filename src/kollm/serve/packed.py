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
padded up to it, what this file once did.) So row counts above one take W @ x^T, up to prompt chunks
(below). One row is a matrix-vector product, which MKL runs at about one core's bandwidth (44 ms for the head); an
MKL packing for one row ran it at the machine's (25 ms) but was a second copy of the weight (0.67 GB of
Gemma-3-270M's RSS: the tied head is also the embedding, so the original stays). The same product as a batched
one over row blocks of W, bmm(W.view(b, out / b, in), x^T), is split across the cores with no copy.
`python bench/serve_linear.py` measures them side by side (2 cores, medians; this run was slower throughout than
the table above: compare ratios):

    one row, ms                        F.linear  MKL one-row packed (+ copy)  row blocks
    head 262144 x 640 (Gemma 3)          81.9       52.8  (+640 MB)             47.1
    head 151936 x 896 (Qwen2.5-0.5B)     62.4       42.0  (+519 MB)             37.5
    8192 x 640                            2.36       1.22                        1.38

So weights of at least ONE_ROW_SPLIT_MIN elements take the blocks at one row (below it F.linear is as fast),
and no weight is ever copied here.

Prompt chunks are the other end: at hundreds of rows MKL's own blocking of F.linear catches up, and (W @ x^T)^T
also pays for a transposing copy of its output, so from LINEAR_MIN_ROWS rows on F.linear runs. The second table
of bench/serve_linear.py (ms, 2 cores; the two cross between 256 and 1024 rows, run to run):

    rows                        16     64    256    512   2048
    gate/up 4096 x 640 linear  2.29   5.67  16.6   29.2   89.7
                     W @ x^T   1.03   3.14  12.7   25.6  124.6
    down 640 x 2048    linear  0.55   1.51   5.23   8.73  40.1
                     W @ x^T   0.39   1.26   4.54   8.97  60.2

A prompt chunk of 27 Gemma-3-270M prompts, 2,025 tokens, took 5.5 s before this switch and 3.9 s after.

In between, a big weight's transposing copy is the cost: (W @ x^T)^T of Gemma's head at 64 rows (a decode step of
64 requests) is 216 ms of GEMM and 57 ms of copying the [262144, 64] product into [64, 262144]. Computed in slices
of SLICE rows of W, each slice's product is transposed into place while it is in cache (bench/serve_linear.py,
PackedLinear's row; 2 cores, ms):

    head rows          16     32     64    128    256
    W @ x^T           116    205    347    659   1046
    slices of 2048     89    120    227    422    763

Below SLICED_MIN_ROWS the slices are no faster (a product of a few rows is bound by reading W).
"""

from __future__ import annotations

import torch
from torch import nn

ONE_ROW_SPLIT_MIN = 1 << 22  # weights of at least this many elements run one row as row blocks (Gemma's head)
LINEAR_MIN_ROWS = 512  # from this many rows on (prompt chunks), plain F.linear is as fast or faster (see above)
SLICED_MIN_ROWS = 16  # from this many rows on, a big weight's product runs slice by slice (see above)
SLICE = 2048  # output rows of W per slice: the slice's output, transposed, is still in cache


def _blocks(rows: int) -> int:
    """How many row blocks one-row products split a weight of `rows` output rows into (0: it does not split)."""
    return next((b for b in (64, 32, 16, 8, 4, 2) if rows % b == 0), 0)


class PackedLinear(nn.Module):
    """y = x W^T + b, computed as (W x^T)^T on a float32 CPU weight for 2..LINEAR_MIN_ROWS-1 rows, F.linear for
    more; on a large weight, one row as a batched product over row blocks of W and SLICED_MIN_ROWS or more in
    slices of W (see above). Outputs are contiguous, like nn.Linear's. Holds W itself, never a copy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.out_features, self.in_features = weight.shape
        self.cpu = weight.device.type == "cpu" and weight.dtype == torch.float32
        self.big = self.cpu and weight.is_contiguous() and weight.numel() >= ONE_ROW_SPLIT_MIN  # blocks are views
        blocks = _blocks(self.out_features) if self.big else 0
        self.row_blocks = weight.detach().view(blocks, -1, self.in_features) if blocks else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        if rows == 1 and self.row_blocks is not None:
            blocks = self.row_blocks
            out = torch.bmm(blocks, flat.T.expand(blocks.shape[0], -1, -1)).view(1, -1)
            if self.bias is not None:
                out = out + self.bias
        elif rows == 1 or rows >= LINEAR_MIN_ROWS or not self.cpu:
            out = nn.functional.linear(flat, self.weight, self.bias)
        elif self.big and rows >= SLICED_MIN_ROWS:
            out = flat.new_empty(rows, self.out_features)
            for s in range(0, self.out_features, SLICE):
                w = self.weight[s:s + SLICE]
                part = torch.mm(w, flat.T) if self.bias is None else \
                    torch.addmm(self.bias[s:s + SLICE, None], w, flat.T)
                out[:, s:s + SLICE] = part.T
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

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

MKL runs (W x^T) fast only when x's rows are a multiple of 8 (its kernels' width; the same with
MKL_ENABLE_INSTRUCTIONS=AVX2): 63 rows of Gemma's head cost more than 64, 13 rows as much as 16 and more than
twice 8. Decode batches shrink to any count as requests end, and a speculative check or a few new prompts bring
any count of tokens, so from PAD_FROM_ROWS rows on x is padded with zero rows to a multiple of PAD_ROWS and the
padding's outputs are dropped. bench/serve_linear.py's third table (2 cores, ms, as they are vs padded):

    rows                          7     13     31     42     58     63    123
    head 262144 x 640 as is     66.1  136.5  185.8  198.0  223.0  300.8  418.8
                      padded    58.0   76.0  107.2  154.6  187.5  196.6  410.1
    gate/up 4096 x 640 as is     0.74   1.36   2.30   2.04   2.68   3.48   5.75
                      padded     0.72   0.73   1.22   1.75   2.20   2.58   4.48

Below 7 rows padding costs more than it saves (6 rows of the head: 39 ms as is, 49 padded to 8).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from kollm.serve.sampling import argmax_rows

ONE_ROW_SPLIT_MIN = 1 << 22  # weights of at least this many elements run one row as row blocks (Gemma's head)
LINEAR_MIN_ROWS = 512  # from this many rows on (prompt chunks), plain F.linear is as fast or faster (see above)
SLICED_MIN_ROWS = 16  # from this many rows on, a big weight's product runs slice by slice (see above)
SLICE = 2048  # output rows of W per slice: the slice's output, transposed, is still in cache
PAD_ROWS = 8  # (W x^T)^T runs x padded with zero rows to a multiple of this many (see above) ...
PAD_FROM_ROWS = 7  # ... from this many rows on (below it, padding costs more than it saves)


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
        else:
            out = self._turned(flat)
        return out.view(*x.shape[:-1], self.out_features)

    def argmax(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's argmax of x W^T + b, [rows] (first index on ties, as `argmax_rows`). Where the product runs
        slice by slice, each slice's maxima are kept and the [rows, out] product is never made: no transposing
        copy, no fresh pages for it, no pass over it to find the maxima (Gemma's head at 64 rows: ~180 ms instead
        of ~220, bench/serve_head.py)."""
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        if not (self.big and SLICED_MIN_ROWS <= _pad_rows(rows) and rows < LINEAR_MIN_ROWS):
            return argmax_rows(self.forward(flat))
        best = where = None
        for s, part in self._slices(_padded(flat)):
            value, index = part.max(dim=0)  # the first of equal maxima, as argmax
            if best is None:
                best, where = value, index
                continue
            # strictly greater: on a tie the earlier slice keeps it; a NaN wins once, as argmax takes the first NaN
            take = (value > best) | (value.isnan() & ~best.isnan())
            best, where = torch.where(take, value, best), torch.where(take, index + s, where)
        return where[:rows]

    def _turned(self, flat: torch.Tensor) -> torch.Tensor:
        """(W x^T)^T for 2..LINEAR_MIN_ROWS-1 rows: x padded (see above), on a big weight slice by slice."""
        rows = flat.shape[0]
        padded = _padded(flat)
        if self.big and len(padded) >= SLICED_MIN_ROWS:
            out = flat.new_empty(rows, self.out_features)
            for s, part in self._slices(padded):
                out[:, s:s + SLICE] = part[:, :rows].T
            return out
        part = torch.mm(self.weight, padded.T) if self.bias is None else \
            torch.addmm(self.bias[:, None], self.weight, padded.T)
        return part[:, :rows].T.contiguous()

    def _slices(self, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """(first output row s, W[s:s + SLICE] x^T + b[s:s + SLICE]) over the weight."""
        for s in range(0, self.out_features, SLICE):
            w = self.weight[s:s + SLICE]
            yield s, torch.mm(w, x.T) if self.bias is None else torch.addmm(self.bias[s:s + SLICE, None], w, x.T)


def _pad_rows(rows: int) -> int:
    """How many rows (W x^T) runs for x of `rows` rows: a multiple of PAD_ROWS from PAD_FROM_ROWS on (see above)."""
    return rows if rows < PAD_FROM_ROWS else -(-rows // PAD_ROWS) * PAD_ROWS


def _padded(flat: torch.Tensor) -> torch.Tensor:
    """x with zero rows added up to `_pad_rows` of its rows."""
    rows, padded = flat.shape[0], _pad_rows(flat.shape[0])
    return flat if padded == rows else torch.cat([flat, flat.new_zeros(padded - rows, flat.shape[1])])


def pack_linears(model: nn.Module) -> int:
    """Replace every float32 nn.Linear on the CPU by a PackedLinear; returns how many were replaced."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.device.type == "cpu" and child.weight.dtype == torch.float32:
                setattr(parent, name, PackedLinear(child.weight, child.bias))
                n += 1
    return n

"""The output head, and a cheaper one for rows that only need their argmax.

A greedy step needs one number from the head: which token scores highest. On a CPU the float32 head is the
biggest read of a decode step (Gemma-3-270M's 262k x 640 head is 671 MB of its 1.07 GB), and a decode step is
bound by reading weights. fbgemm's float16 GEMM (`quantized.linear_dynamic_fp16`: float16 weights, float32
inputs, float32 accumulation) reads half the bytes and reuses each converted weight across the rows of a step.
`python bench/serve_head.py` (2 cores, medians, Gemma-3-270M's head on its own hidden states, ms of each row's
argmax):

    rows                          1      2      4      8     16     64
    float32 slices (packed.py)  21.7   22.2   27.8   51.1   71.0  158.3
    float16 + recheck           11.2   12.0   11.6   17.5   35.3  150.5

Its logits are not the float32 ones, but they are close by a bound known in advance, so the argmax stays exact:
each weight rounds to float16 with an error d_r per row, and by Cauchy-Schwarz a row's float16 logit is within
||h|| * (||d_r|| + 2 g ||w_r||) of the float32 one (g: float32 accumulation over the row, for both products;
||d_r|| <= 2^-11 ||w_r|| plus a subnormal term, so one bound serves every row). Every token whose float16 logit
lies within twice that bound of the row's best could be the argmax; those few (1.0-1.25 a row on Gemma-3-270M)
are recomputed in float32, so the argmax is the float32 argmax. `argmax` returns only that token per row: a
caller that samples, masks or reports log-probabilities asks for the logits (`forward`, or `exact_row` after the
fact for one row).

A head without the float16 copy answers `argmax` from its float32 slices (PackedLinear.argmax): the same float32
products, each slice's maxima kept, so the [rows, vocab] logits are never written, transposed or read again.

The float16 copy costs memory (0.5 GiB for Gemma-3-270M: half the head's float32 bytes, and fbgemm pads its
640-wide rows to 1,024) and ~3 s to pack at start-up, so only a big float32 head on a CPU with fbgemm gets one,
and `EngineConfig.argmax_head = False` (kollm eval's choice) skips it (`python bench/serve_head.py` measures it).
"""

from __future__ import annotations

import torch
from torch import nn

from kollm.serve.packed import ONE_ROW_SPLIT_MIN, PackedLinear
from kollm.serve.sampling import argmax_rows

FP16_MIN = ONE_ROW_SPLIT_MIN  # heads of at least this many elements get the float16 copy (smaller: not worth it)
_U = 2.0 ** -24  # float32's unit roundoff
RECHECK_MAX = 64  # tokens to recheck per row, on average, beyond which the step runs the float32 head instead


def _fp16_packable(weight: torch.Tensor) -> bool:
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.numel() < FP16_MIN:
        return False
    if "fbgemm" not in torch.backends.quantized.supported_engines:  # fbgemm is x86's; ARM builds lack it
        return False
    lo, hi = torch.aminmax(weight)  # no temporary the size of the weight
    return bool(max(-lo, hi) < 65504)  # float16's largest finite value


class OutputHead(nn.Module):
    """logits = softcap(h W^T + b), float32 (`forward`), or only each row's argmax (`argmax`: from a float16 copy on
    a big CPU head, exact all the same; see above). Holds W itself plus, when it pays, the float16 copy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, softcap: float = 0.0,
                 fp16: bool = True) -> None:
        super().__init__()
        self.exact = PackedLinear(weight, bias)
        self.weight, self.bias, self.softcap = weight.detach(), bias, softcap
        self.half = None
        self.bound = 0.0  # the largest ||d_r|| + 2 g ||w_r||: times ||h||, the most a float16 logit is off
        self.last: torch.Tensor | None = None  # the hidden rows of the last argmax call (exact_row)
        if fp16 and _fp16_packable(self.weight):
            w = self.weight
            k = w.shape[1]
            g = k * _U / (1 - k * _U)
            # rounding to float16 moves a weight by at most 2^-11 of itself, or 2^-25 below float16's normal range
            # (fbgemm rounds to nearest and keeps subnormals, as torch's .half() does): ||d_r|| <= 2^-11 ||w_r||
            # + 2^-25 sqrt(k); the norms themselves are rounded, hence the small margin
            self.bound = ((2 ** -11 + 2 * g) * float(w.norm(dim=-1).max()) + 2 ** -25 * k ** 0.5) * (1 + 1e-3)
            self.half = torch.ops.quantized.linear_prepack_fp16(w, None)

    @property
    def half_bytes(self) -> int:
        """Memory the float16 copy holds (0: none): fbgemm packs a row's inputs in blocks of 512 (measured:
        Gemma-3-270M's 640 take 1,024, 0.5 GiB for its head)."""
        if self.half is None:
            return 0
        n, k = self.weight.shape
        return n * -(-k // 512) * 512 * 2

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """[rows, vocab] float32 logits of h [rows, hidden]."""
        return self._exact(h)

    def argmax(self, h: torch.Tensor) -> torch.Tensor:
        """Each row's argmax token [rows], that of the float32 logits (first index on ties), from the float16 copy
        where there is one (see above), else from the float32 head's slices (PackedLinear.argmax: no [rows, vocab]
        logits). `exact_row` gives a row's logits afterwards."""
        h = h.float().contiguous()
        self.last = h
        if self.half is None:
            return self.exact.argmax(h) if not self.softcap else argmax_rows(self._exact(h))  # tanh may tie
        logits = torch.ops.quantized.linear_dynamic_fp16(h, self.half)
        if self.bias is not None:
            logits += self.bias
        rows, cols = self.near(logits, h).nonzero(as_tuple=True)
        if len(rows) > RECHECK_MAX * len(h):  # hidden states no bound can narrow (inf, huge): no 0.67 GB gathers
            return argmax_rows(self._exact(h))
        exact = (self.weight[cols] * h[rows]).sum(dim=-1)
        logits[rows, cols] = exact if self.bias is None else exact + self.bias[cols]
        return argmax_rows(self._cap(logits))

    def near(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Which tokens may be the argmax, given float16 `logits` of `h`: within twice the bound of the row's best."""
        return logits >= (logits.amax(dim=-1) - 2 * self.bound * h.norm(dim=-1))[:, None]

    def exact_row(self, i: int) -> torch.Tensor:
        """The exact logits [vocab] of row i of the last `argmax` call (a row the caller must mask or sample)."""
        assert self.last is not None, "exact_row follows an argmax"
        return self._exact(self.last[i:i + 1])[0]

    def _exact(self, h: torch.Tensor) -> torch.Tensor:
        return self._cap(self.exact.forward(h).float())

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.tanh(logits / self.softcap) * self.softcap if self.softcap else logits

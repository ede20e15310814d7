"""MKL-packed linears give what nn.Linear gives at every row count (padded up to a packed row count or not), and
fusing projections into one GEMM leaves the transformers modules computing what they computed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kollm.serve.forward import LAYER_HINTS, _fuse
from kollm.serve.packed import PackedLinear, mkl_available


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9, 16, 17, 40, 64, 65, 128, 129, 200, 256, 300])
def test_packed_linear_matches_plain_at_every_row_count(rows):
    torch.manual_seed(0)
    lin = nn.Linear(96, 80)
    packed = PackedLinear(lin.weight.detach(), lin.bias.detach(), LAYER_HINTS)
    assert bool(packed.packed) == mkl_available()
    x = torch.randn(rows, 96)
    torch.testing.assert_close(packed(x), lin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed(x[None]), lin(x[None]), rtol=1e-5, atol=1e-5)  # any leading shape


def test_fused_projections_share_memory_and_outputs():
    torch.manual_seed(0)
    q, k, v = nn.Linear(32, 48), nn.Linear(32, 16), nn.Linear(32, 16)
    x = torch.randn(5, 32)
    before = [m(x) for m in (q, k, v)]
    fused = _fuse(q, k, v)
    out = fused(x)
    torch.testing.assert_close(out, torch.cat(before, dim=-1), rtol=1e-5, atol=1e-5)
    for m, want in zip((q, k, v), before, strict=True):
        torch.testing.assert_close(m(x), want)  # the module still works, on a view of the fused weight
        assert m.weight.untyped_storage().data_ptr() == fused.weight.untyped_storage().data_ptr()

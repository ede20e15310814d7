"""The serving linears give what nn.Linear gives at every row count (one row as row blocks of W or not, a few rows
as W @ x^T, prompt chunks as F.linear), and fusing projections into one GEMM leaves the transformers modules
computing what they computed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kollm.serve import packed as packed_mod
from kollm.serve.forward import _fuse
from kollm.serve.packed import PackedLinear


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9, 16, 17, 40, 64, 65, 128, 129, 200, 256, 300, 511, 512, 700])
def test_packed_linear_matches_plain_at_every_row_count(rows, bias, monkeypatch):
    monkeypatch.setattr(packed_mod, "ONE_ROW_SPLIT_MIN", 0)  # this small weight runs one row as row blocks too
    monkeypatch.setattr(packed_mod, "SLICE", 32)  # and 16..511 rows in slices of 32, 32 and 16 of its 80 rows
    torch.manual_seed(0)
    lin = nn.Linear(96, 80, bias=bias)
    packed = PackedLinear(lin.weight.detach(), None if lin.bias is None else lin.bias.detach())
    assert packed.row_blocks.shape == (16, 5, 96)  # views of the weight, no copy
    assert packed.row_blocks.untyped_storage().data_ptr() == lin.weight.untyped_storage().data_ptr()
    x = torch.randn(rows, 96)
    out = packed(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, lin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed(x[None]), lin(x[None]), rtol=1e-5, atol=1e-5)  # any leading shape


def test_a_non_contiguous_weight_runs_one_row_as_a_plain_linear(monkeypatch):
    monkeypatch.setattr(packed_mod, "ONE_ROW_SPLIT_MIN", 0)
    torch.manual_seed(0)
    w = torch.randn(96, 80).T  # [80, 96], not contiguous: row blocks cannot be views of it
    packed = PackedLinear(w)
    assert packed.row_blocks is None
    x = torch.randn(1, 96)
    torch.testing.assert_close(packed(x), nn.functional.linear(x, w), rtol=1e-5, atol=1e-5)


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

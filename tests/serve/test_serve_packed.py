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
from kollm.serve.sampling import argmax_rows


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 9, 13, 16, 17, 40, 63, 64, 65, 129, 200, 300, 511, 512, 700])
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


@pytest.mark.parametrize("rows, gemm_rows", [(2, 2), (6, 6), (7, 8), (13, 16), (16, 16), (63, 64), (129, 136)])
@pytest.mark.parametrize("big", [False, True])
def test_a_few_rows_run_padded_to_a_multiple_of_eight(rows, gemm_rows, big, monkeypatch):
    """MKL's W @ x^T is slow when x's rows are not a multiple of 8 (63 rows of Gemma's head: 269 ms vs 188 for
    64, bench/serve_linear.py): the product runs on x padded with zero rows; what comes back has x's rows."""
    if big:
        monkeypatch.setattr(packed_mod, "ONE_ROW_SPLIT_MIN", 0)
        monkeypatch.setattr(packed_mod, "SLICE", 32)
    seen = []
    mm, addmm = torch.mm, torch.addmm
    monkeypatch.setattr(packed_mod.torch, "mm", lambda a, b: seen.append(b.shape[1]) or mm(a, b))
    monkeypatch.setattr(packed_mod.torch, "addmm", lambda c, a, b: seen.append(b.shape[1]) or addmm(c, a, b))
    torch.manual_seed(0)
    lin = nn.Linear(96, 80)
    packed = PackedLinear(lin.weight.detach(), lin.bias.detach())
    x = torch.randn(rows, 96)
    out = packed(x)
    assert set(seen) == {gemm_rows}
    assert out.shape == (rows, 80) and out.is_contiguous()
    torch.testing.assert_close(out, lin(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 2, 9, 16, 17, 63, 64, 130, 600])
def test_argmax_is_the_argmax_of_the_product(rows, bias, monkeypatch):
    """Slice by slice (from 16 rows on a big weight) or from the product: the argmax of what forward gives, first
    index on ties and the first NaN, as argmax_rows."""
    monkeypatch.setattr(packed_mod, "ONE_ROW_SPLIT_MIN", 0)
    monkeypatch.setattr(packed_mod, "SLICE", 32)  # slices of 32, 32 and 16 of the 80 rows
    torch.manual_seed(0)
    w = torch.randn(80, 96)
    w[70] = w[5]  # a tie across slices: 5 wins wherever both are the best
    w[45] = w[40]  # a tie inside a slice
    w[60, 3] = float("nan")  # logit 60 is NaN for every row: argmax_rows takes it
    b = torch.randn(80) if bias else None
    if bias:
        b[70], b[45] = b[5], b[40]
    packed = PackedLinear(w, b)
    x = torch.randn(rows, 96)
    x[0] = w[5] * 10  # aimed at the 5 / 70 tie
    want = argmax_rows(packed(x))
    assert (want == 60).all()  # the NaN
    assert torch.equal(packed.argmax(x), want)
    w[60, 3] = 0.0
    if rows > 1:
        x[1] = w[40] * 10  # aimed at the 40 / 45 tie
    want = argmax_rows(packed(x))
    assert want[0] == 5 and (rows == 1 or want[1] == 40)
    assert torch.equal(packed.argmax(x), want)


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

"""The fused, chunked head + cross-entropy (training path) matches the plain logits -> cross_entropy path,
in value and gradients, including ignored targets, several chunks and a tied head; compiled blocks too."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from kollm.model import KollmLM, ModelConfig
from kollm.model import loss as fused


def _grads(model: KollmLM) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("rows", [16, 100_000])  # many chunks (last one partial) / one chunk
def test_fused_loss_matches_plain_cross_entropy(monkeypatch, tie, rows):
    monkeypatch.setattr(fused, "_chunk_rows", lambda vocab, device: rows)
    cfg = ModelConfig(depth=2, vocab_size=300, max_seq_len=64, tie_embeddings=tie).resolved()
    torch.manual_seed(0)
    model = KollmLM(cfg)
    x = torch.randint(0, 300, (3, 41))
    y = x[:, 1:].clone()
    y[0, :7] = fused.IGNORE  # e.g. a prompt that is not trained on
    y[2, -1] = fused.IGNORE
    plain = F.cross_entropy(model(x[:, :-1]).reshape(-1, 300), y.reshape(-1), ignore_index=fused.IGNORE)
    plain.backward()
    want = _grads(model)
    got_loss = model.loss(x[:, :-1], y)
    got_loss.backward()
    got = _grads(model)
    assert abs(got_loss.item() - plain.item()) < 1e-5
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_all_targets_ignored_gives_zero_loss_and_gradient():
    torch.manual_seed(0)
    model = KollmLM(ModelConfig(depth=1, vocab_size=50, max_seq_len=16).resolved())
    x = torch.randint(0, 50, (2, 16))
    loss = model.loss(x, torch.full_like(x, fused.IGNORE))
    loss.backward()
    assert loss.item() == 0.0
    assert model.lm_head.weight.grad.abs().max().item() == 0.0


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="torch.compile on CPU needs C++")
def test_compiled_blocks_train_like_eager_and_leave_scoring_eager():
    cfg = ModelConfig(depth=2, vocab_size=200, max_seq_len=32).resolved()
    torch.manual_seed(0)
    model = KollmLM(cfg)
    x = torch.randint(0, 200, (2, 33))
    eager = model.loss(x[:, :-1], x[:, 1:])
    eager.backward()
    want = _grads(model)
    model.compile_blocks()
    compiled = model.loss(x[:, :-1], x[:, 1:])
    compiled.backward()
    got = _grads(model)
    assert abs(compiled.item() - eager.item()) < 1e-5
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-3, atol=1e-5, msg=name)
    assert list(model.state_dict()) == list(KollmLM(cfg).state_dict())  # export names unchanged
    model.eval()
    with torch.no_grad():  # scoring/generation shapes vary: they take the eager blocks
        assert model(x[:, :5]).shape == (2, 5, 200)

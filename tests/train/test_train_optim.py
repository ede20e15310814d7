"""Muon (float32 Newton-Schulz), AdamP and AdamW: correct updates, and checkpoints resume them exactly."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.optim._muon as torch_muon
from conftest import korean_texts

from kollm.model import ModelConfig
from kollm.train import TrainConfig, train_model
from kollm.train.adamp import AdamP
from kollm.train.muon import Muon, newton_schulz


@pytest.mark.parametrize("shape", [(48, 128), (128, 48)])
def test_float32_newton_schulz_matches_torch_bf16_version(shape):
    g = torch.randn(*shape)
    coeffs = (3.4445, -4.775, 2.0315)
    ref = torch_muon._zeropower_via_newtonschulz(g, coeffs, 5, 1e-7).float()
    ours = newton_schulz(g, coeffs, 5, 1e-7, torch.float32)
    assert (ref - ours).abs().max() < 0.03  # bf16 rounding in torch's version
    assert ours.dtype == torch.float32


def test_muon_step_matches_per_matrix_update():
    """The batched step (same-shape and transposed matrices orthogonalised together, foreach arithmetic) gives
    the update rule of torch.optim.Muon applied one matrix at a time, with float32 Newton-Schulz."""
    torch.manual_seed(0)
    shapes = [(32, 32), (64, 32), (32, 64), (32, 32), (64, 32)]  # square, tall and wide mixed
    params = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    ref = [p.detach().clone() for p in params]
    opt = Muon(params, lr=0.02, weight_decay=0.1, momentum=0.9, adjust_lr_fn="original")
    bufs = [torch.zeros_like(p) for p in ref]
    for _ in range(3):
        grads = [torch.randn(*s) for s in shapes]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            bufs[i].lerp_(g, 0.1)
            upd = newton_schulz(g.lerp(bufs[i], 0.9), (3.4445, -4.775, 2.0315), 5, 1e-7, torch.float32)
            ref[i] = ref[i] * (1 - 0.02 * 0.1) - 0.02 * max(1, shapes[i][0] / shapes[i][1]) ** 0.5 * upd
    for p, r in zip(params, ref, strict=True):
        torch.testing.assert_close(p.detach(), r, atol=1e-5, rtol=1e-5)


def test_adamp_keeps_scale_invariant_weights_from_growing():
    """f(w) depends on each row's direction only: Adam inflates the norms, AdamP's projection does not."""
    torch.manual_seed(0)
    target = torch.randn(8, 16)
    growth = {}
    for name, cls in (("adam", torch.optim.Adam), ("adamp", AdamP)):
        torch.manual_seed(1)
        w = torch.nn.Parameter(torch.randn(8, 16))
        start = w.norm().item()
        opt = cls([w], lr=0.05)
        for _ in range(100):
            loss = -(torch.nn.functional.normalize(w, dim=1) * target).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        growth[name] = w.norm().item() - start
    assert growth["adamp"] < 0.5 * growth["adam"], growth


@pytest.mark.parametrize("optimizer", ["muon", "adamp", "adamw"])
def test_optimizer_trains_and_resumes_bitwise(tmp_path, tiny_tokenizer, optimizer):
    texts = korean_texts()
    cfg = TrainConfig(optimizer=optimizer, batch_size=4, lr=3e-3, max_steps=10, warmup_steps=2, threads=1,
                      checkpoint_every_steps=5, keep_checkpoints=5, eval_every_s=1e9, sample_tokens=0,
                      tensorboard=False, log_every=1)
    model = ModelConfig(depth=2, max_seq_len=32)
    full = train_model(model, cfg, tiny_tokenizer, texts[:50], texts[50:], tmp_path)
    assert full.final_loss < full.first_loss - 1.0
    shutil.rmtree(tmp_path / "checkpoint" / "step-00000010")
    again = train_model(model, cfg, tiny_tokenizer, texts[:50], texts[50:], tmp_path, resume=True)
    assert again.final_loss == full.final_loss and again.steps == 10

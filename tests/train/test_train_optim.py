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
from kollm.train.muon import newton_schulz


@pytest.mark.parametrize("shape", [(48, 128), (128, 48)])
def test_float32_newton_schulz_matches_torch_bf16_version(shape):
    g = torch.randn(*shape)
    coeffs = (3.4445, -4.775, 2.0315)
    ref = torch_muon._zeropower_via_newtonschulz(g, coeffs, 5, 1e-7).float()
    ours = newton_schulz(g, coeffs, 5, 1e-7, torch.float32)
    assert (ref - ours).abs().max() < 0.03  # bf16 rounding in torch's version
    assert ours.dtype == torch.float32


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

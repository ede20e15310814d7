"""kollm's model and its Hugging Face export agree: same logits through transformers' Auto classes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kollm.errors import KollmError
from kollm.model import KollmLM, ModelConfig, export_hf, load_kollm_from_hf


def _trained(cfg: ModelConfig, steps: int = 5) -> KollmLM:
    """A model moved away from its init, so norms and QK-norm weights are not all ones."""
    torch.manual_seed(0)
    model = KollmLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randint(0, cfg.vocab_size, (4, 32))
        model.loss(x[:, :-1], x[:, 1:]).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("variant", [{}, {"n_kv_heads": 1}, {"tie_embeddings": True}])
def test_hf_reload_gives_same_logits(tmp_path, tiny_tokenizer, variant):
    cfg = ModelConfig(depth=2, vocab_size=len(tiny_tokenizer), max_seq_len=64, **variant).resolved()
    model = _trained(cfg)
    export_hf(model, tiny_tokenizer, tmp_path / "m")
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "generation_config.json"):
        assert (tmp_path / "m" / f).is_file(), f
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    ids = torch.tensor([tok.encode("서울은 대한민국의 수도이다. 한강이 흐른다.")])
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert ours.abs().max() > 0.1  # not a degenerate all-zero comparison
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    again = load_kollm_from_hf(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(again(ids), ours, atol=1e-6, rtol=0)


def test_depth_dial_derives_shape():
    c = ModelConfig(depth=6).resolved()
    assert (c.width, c.n_heads, c.n_kv_heads) == (384, 6, 6)
    assert c.ffn_dim % 64 == 0 and c.ffn_dim >= 8 * c.width / 3
    with pytest.raises(KollmError, match="does not divide"):
        ModelConfig(depth=2, n_heads=3).resolved()


def test_kollm_loads_transformers_models_without_hub_kernels(tiny_model_dir):
    """transformers 5.25 turns Hub kernels on by default, and `model.train()` on a GPU then swapped in layers
    downloaded from the Hub: `kollm tune` failed at its first step on an offline H200 (bench/gpu_check.py). Both
    kollm loaders turn them off, so nothing re-kernelizes when the mode changes."""
    from kollm.model.hf import causal_lm_from_pretrained, load_hf_causal_lm

    served, _ = load_hf_causal_lm(tiny_model_dir)
    tuned = causal_lm_from_pretrained(tiny_model_dir, torch.float32)
    for model in (served, tuned):
        model.train()
        assert model.use_kernels is False and model.kernels_mode is None

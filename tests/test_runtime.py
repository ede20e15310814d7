"""runtime.drop_file_pages: only pages mapped from a weights file are dropped, and the tensors keep their values."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file

from kollm.runtime import drop_file_pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_drops_mapped_file_pages_and_values_stay(tmp_path):
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(vocab_size=512, hidden_size=256, intermediate_size=1024, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)  # safetensors, memory-mapped
    weights = [m.weight.detach() for m in (model.model.layers[0].mlp.gate_proj, model.model.layers[0].mlp.up_proj)]
    before = [w.clone() for w in weights]
    assert drop_file_pages(weights) > 0
    for w, b in zip(weights, before, strict=True):
        assert torch.equal(w, b)  # read back from the file


def test_leaves_other_memory_alone(tmp_path):
    t = torch.randn(1 << 16)
    copy = t.clone()
    assert drop_file_pages([t]) == 0
    assert torch.equal(t, copy)
    save_file({"x": t}, tmp_path / "x.safetensors")  # written, not mapped: nothing to drop
    assert drop_file_pages([t]) == 0


def test_varying_shapes_turn_off_cudnn_attention_on_gpus_only():
    """cuDNN's attention plans each new shape (59 ms on an H200): serving, evaluation and tuning do without it.
    The flag is a setting, so a CPU machine can check it."""
    from kollm.runtime import configure_varying_shapes

    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        configure_varying_shapes(torch.device("cpu"))
        assert torch.backends.cuda.cudnn_sdp_enabled()
        configure_varying_shapes(torch.device("cuda"))
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)

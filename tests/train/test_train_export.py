"""Any checkpoint exports to a HF folder that transformers loads; the latest equals OUT/final."""

from __future__ import annotations

import torch
from conftest import korean_texts, run_kollm
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from kollm.model import ModelConfig
from kollm.train import TrainConfig, train_model
from kollm.train.export import export_checkpoint


def test_export_chosen_and_latest_checkpoint(tmp_path, tiny_tokenizer):
    texts = korean_texts()
    cfg = TrainConfig(batch_size=2, max_steps=4, checkpoint_every_steps=2, keep_checkpoints=5, eval_every_s=1e9,
                      sample_tokens=0, tensorboard=False, threads=1)
    train_model(ModelConfig(depth=1, max_seq_len=32), cfg, tiny_tokenizer, texts[:50], texts[50:], tmp_path)
    latest = load_file(export_checkpoint(tmp_path) / "model.safetensors")
    final = load_file(tmp_path / "final" / "model.safetensors")
    assert all(latest[k].equal(final[k]) for k in final)
    r = run_kollm("train", "export", "--run", str(tmp_path), "--step", "2", "--out", str(tmp_path / "early"))
    assert r.returncode == 0, r.stderr
    early = tmp_path / "early"
    hf = AutoModelForCausalLM.from_pretrained(early).eval()
    assert (early / "tokenizer.json").is_file()
    assert not torch.equal(hf.model.embed_tokens.weight.detach(), final["model.embed_tokens.weight"])


def test_export_of_a_missing_step_is_one_line(tmp_path):
    r = run_kollm("train", "export", "--run", str(tmp_path))
    assert r.returncode == 2 and "holds no complete checkpoint" in r.stderr and "Traceback" not in r.stderr

"""The one-dial rule: depth -> shape -> batch size, learning rate and token horizon; overrides win."""

from __future__ import annotations

import pytest

from kollm.model import ModelConfig
from kollm.train import TrainConfig
from kollm.train.hparams import derive, resolve


def test_depth_rule_holds_across_depths():
    prev = None
    for depth in (1, 2, 4, 8, 12, 16, 20, 24, 32):
        cfg = ModelConfig(depth=depth, vocab_size=32768, max_seq_len=2048).resolved()
        assert (cfg.width, cfg.n_heads, cfg.n_kv_heads) == (64 * depth, depth, depth)
        d = derive(cfg, TrainConfig())
        assert d.horizon_tokens == int(20 * d.params)
        assert d.batch_size & (d.batch_size - 1) == 0  # a power of two, in sequences
        assert 0.5 <= d.batch_size * 2048 / (0.292 * d.compute_flops**0.3271) <= 2.0
        assert d.lr == pytest.approx(0.3118 * d.compute_flops**-0.125)
        if prev:  # bigger models: more compute -> bigger batches, smaller learning rates
            assert d.params > prev.params and d.batch_size >= prev.batch_size and d.lr < prev.lr
        prev = d


def test_overrides_win_and_horizon_is_the_default_limit():
    cfg = ModelConfig(depth=4, vocab_size=4096).resolved()
    t, d = resolve(cfg, TrainConfig())
    assert (t.batch_size, t.lr, t.max_tokens) == (d.batch_size, d.lr, d.horizon_tokens)
    t, _ = resolve(cfg, TrainConfig(batch_size=12, lr=1e-3, time_budget=60.0))
    assert (t.batch_size, t.lr, t.max_tokens, t.micro_batch_size) == (12, 1e-3, 0, 12)
    t, _ = resolve(cfg, TrainConfig(batch_size=64), world=2)
    assert t.micro_batch_size == 32

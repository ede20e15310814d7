"""Training reads packed token shards (memory-mapped), and refuses shards from a bigger vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import korean_texts

from kollm.errors import KollmError
from kollm.model import ModelConfig
from kollm.train import TrainConfig, train_model


def _write_shards(folder, tokenizer, texts, vocab):
    folder.mkdir()
    ends, ids = [], []
    for t in texts:
        ids += tokenizer.encode(t, add_special_tokens=False) + [tokenizer.eos_token_id]
        ends.append(len(ids))
    np.asarray(ids, dtype=np.uint16).tofile(folder / "tokens-00000.bin")
    np.asarray(ends, dtype=np.uint64).tofile(folder / "tokens-00000.idx")
    (folder / "shards.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": vocab, "eos_id": 1}))


def test_train_on_token_shards(tmp_path, tiny_tokenizer):
    texts = korean_texts()
    _write_shards(tmp_path / "shards", tiny_tokenizer, texts[:50], len(tiny_tokenizer))
    cfg = TrainConfig(batch_size=4, max_steps=12, warmup_steps=2, eval_every_s=1e9, sample_tokens=0,
                      tensorboard=False, threads=1)
    res = train_model(ModelConfig(depth=1, max_seq_len=32), cfg, tiny_tokenizer, str(tmp_path / "shards"),
                      texts[50:], tmp_path / "run")
    assert res.steps == 12 and res.final_loss < res.first_loss
    _write_shards(tmp_path / "big", tiny_tokenizer, texts[:5], 50000)
    with pytest.raises(KollmError, match="50000-token vocabulary"):
        train_model(ModelConfig(depth=1, max_seq_len=32), cfg, tiny_tokenizer, str(tmp_path / "big"),
                    texts[50:], tmp_path / "run2")

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


def test_shards_and_jsonl_give_the_same_token_stream(tmp_path):
    """`kollm data run --tokenizer` frames every kept document as training does: BOS doc EOS."""
    import gzip

    from conftest import run_kollm, write_jsonl

    from kollm.data.shards import open_shards
    from kollm.tokenizer import TokenizerConfig, load_tokenizer, save_tokenizer, train_tokenizer
    from kollm.train.data import tokenize_stream

    texts = korean_texts(40)
    save_tokenizer(train_tokenizer(texts, TokenizerConfig(vocab_size=400)), tmp_path / "tok")
    write_jsonl(tmp_path / "raw.jsonl", texts)
    r = run_kollm("data", "run", "--data", str(tmp_path / "raw.jsonl"), "--out", str(tmp_path / "out"),
                  "--tokenizer", str(tmp_path / "tok"), "--workers", "1", "--no-quality", "--no-near-dedup")
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(tmp_path / "tok")
    kept = []
    for f in sorted((tmp_path / "out" / "clean").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            kept += [json.loads(line)["text"] for line in fh]
    shards = open_shards(tmp_path / "out" / "tokens")
    assert shards.num_docs == len(kept) > 0
    for s in shards.shards:
        for i in range(len(s.doc_ends)):
            doc = s.doc(i)
            assert doc[0] == tok.bos_token_id and doc[-1] == tok.eos_token_id
    stream = np.concatenate([s.tokens for s in shards.shards])
    assert int((stream == tok.bos_token_id).sum()) == int((stream == tok.eos_token_id).sum()) == len(kept)
    assert np.array_equal(stream, tokenize_stream(tok, kept, show=False))

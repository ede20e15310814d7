"""`kollm tokenizer extend` on a Llama-style tokenizer and a tiny Llama model built here."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from kollm.errors import KollmError
from kollm.tokenizer.extend import extend

ENGLISH = ["The quick brown fox jumps over the lazy dog.", "Language models read text as tokens."] * 30
KOREAN = ["학교에서 친구들과 함께 공부했습니다.", "서울은 대한민국의 수도입니다. 학교에서 점심을 먹었다."] * 30


def llama_style_tokenizer(out) -> Tokenizer:
    """English-only BPE with Metaspace and byte fallback, like Llama-2/Gemma: Hangul falls back to bytes."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(ENGLISH, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):  # the byte-fallback tokens
        vocab[f"<0x{b:02X}>"] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                     decoders.ByteFallback(), decoders.Fuse()])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            clean_up_tokenization_spaces=False).save_pretrained(out)
    return tok


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    base_dir, model_dir, out = (tmp_path_factory.mktemp(n) for n in ("base", "model", "out"))
    base = llama_style_tokenizer(base_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=base.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(model_dir)
    ext = extend(base_dir, KOREAN, 40, out, model_dir)
    return base, ext, model_dir, out


def test_new_tokens_shorten_korean_and_keep_old_ids(extended):
    base, ext, _, out = extended
    auto = AutoTokenizer.from_pretrained(str(out))
    assert 0 < len(ext.added) <= 40 and len(auto) == base.get_vocab_size() + len(ext.added)
    assert "학" in ext.added  # a syllable the base only had as bytes
    text = KOREAN[0]
    before, after = base.encode(text).ids, auto.encode(text, add_special_tokens=False)
    assert len(after) < len(before) / 2
    assert auto.decode(after) == text
    assert max(after) >= ext.first_new_id
    english = ENGLISH[0]
    assert auto.encode(english, add_special_tokens=False) == base.encode(english).ids  # old ids unchanged


def test_model_rows_are_mean_of_sub_tokens(extended):
    base, ext, model_dir, out = extended
    old = AutoModelForCausalLM.from_pretrained(str(model_dir))
    new = AutoModelForCausalLM.from_pretrained(str(out))
    n = ext.first_new_id + len(ext.added)
    assert new.get_input_embeddings().weight.shape[0] == n == new.config.vocab_size
    assert new.get_output_embeddings().weight.shape[0] == n
    old_in, new_in = old.get_input_embeddings().weight, new.get_input_embeddings().weight
    assert torch.equal(new_in[: old_in.shape[0]], old_in)
    for i, tok in enumerate(ext.added):
        sub = [t.id for t in base.model.tokenize(tok)]
        torch.testing.assert_close(new_in[ext.first_new_id + i], old_in[sub].mean(0))
        torch.testing.assert_close(new.get_output_embeddings().weight[ext.first_new_id + i],
                                   old.get_output_embeddings().weight[sub].mean(0))
    ids = AutoTokenizer.from_pretrained(str(out))(KOREAN[1], return_tensors="pt")["input_ids"]
    assert new(ids).logits.shape[-1] == n


def test_byte_level_base(tmp_path):
    """GPT-2/Llama-3 style byte-level BPE: new tokens are merges of byte symbols."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(ENGLISH, trainers.BpeTrainer(vocab_size=300,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(tmp_path / "base")
    ext = extend(tmp_path / "base", KOREAN, 30, tmp_path / "out")
    auto = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    ids = auto.encode(KOREAN[0], add_special_tokens=False)
    assert len(ids) < len(tok.encode(KOREAN[0]).ids) and auto.decode(ids) == KOREAN[0]
    assert len(ext.added) == 30


def test_rejects_non_bpe(tmp_path):
    tok = Tokenizer(models.Unigram())
    tok.train_from_iterator(ENGLISH, trainers.UnigramTrainer(vocab_size=50))
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(KollmError, match="supports BPE"):
        extend(tmp_path, KOREAN, 10, tmp_path / "out")


def test_extend_cli(extended, tmp_path):
    import io
    import sys
    from contextlib import redirect_stdout

    from kollm.cli import main

    _, _, model_dir, _ = extended
    corpus = tmp_path / "ko.txt"
    corpus.write_text("\n\n".join(KOREAN), encoding="utf-8")
    base_dir = tmp_path / "base"
    llama_style_tokenizer(base_dir)
    argv, sys.argv = sys.argv, ["kollm", "tokenizer", "extend", "--base", str(base_dir), "--model", str(model_dir),
                                "--new-tokens", "20", "--out", str(tmp_path / "out"), "--data", str(corpus)]
    out = io.StringIO()
    try:
        with redirect_stdout(out), pytest.raises(SystemExit) as done:
            main()  # click ends with SystemExit(0) on success
    finally:
        sys.argv = argv
    assert done.value.code == 0
    assert "added 20 tokens" in out.getvalue()
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).config.vocab_size == len(
        AutoTokenizer.from_pretrained(str(tmp_path / "out")))

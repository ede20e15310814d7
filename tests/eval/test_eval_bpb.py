"""bits-per-byte: every token scored once, same number through kollm and transformers, any HF model."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import korean_texts, run_kollm, write_jsonl
from transformers import LlamaConfig, LlamaForCausalLM

from kollm.eval.bpb import hf_bits_per_byte
from kollm.model import load_kollm_from_hf
from kollm.model.hf import load_hf_causal_lm
from kollm.model.score import bits_per_byte, windows


@pytest.mark.parametrize("n,ctx", [(2, 4), (10, 3), (10, 4), (37, 8), (300, 64)])
def test_windows_score_each_token_exactly_once(n, ctx):
    ids = list(range(n))
    got = [t for inp, tgt in windows(ids, ctx) for t in tgt if t != -100]
    assert got == ids[1:]
    for inp, tgt in windows(ids, ctx):
        assert len(inp) == len(tgt) <= ctx
        assert all(t == -100 or t == inp[i + 1] if i + 1 < len(inp) else True for i, t in enumerate(tgt))


class _NoBos:
    """A Qwen-like tokenizer: EOS but no BOS."""

    bos_token_id, eos_token_id = None, 1

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [2 + i % 5 for i, _ in enumerate(text)]


def test_without_bos_the_first_token_is_scored_after_eos():
    """As lm-eval's HFLM (`prefix_token_id`): EOS stands in for BOS, so no byte goes unscored."""
    from kollm.model.score import text_nll

    seen = []

    def uniform(x):
        seen.append(x.tolist())
        return torch.zeros(*x.shape, 8)

    nll, n_bytes = text_nll(uniform, _NoBos(), ["가나다"], ctx=16)
    assert seen == [[[1, 2, 3]]] and n_bytes == 9  # EOS, then the text: inputs predict 2, 3, 4
    assert nll == pytest.approx(3 * math.log(8))  # all three tokens predicted


def test_without_bos_or_eos_is_a_user_error():
    from kollm.errors import KollmError
    from kollm.model.score import text_nll

    tok = _NoBos()
    tok.eos_token_id = None
    with pytest.raises(KollmError, match="neither a BOS nor an EOS"):
        text_nll(lambda x: torch.zeros(*x.shape, 8), tok, ["가"], ctx=16)


def test_kollm_and_transformers_agree(tiny_model_dir):
    texts = korean_texts(6)
    ours = bits_per_byte(load_kollm_from_hf(tiny_model_dir), load_hf_causal_lm(tiny_model_dir)[1], texts, 64)
    model, tok = load_hf_causal_lm(tiny_model_dir)
    theirs = hf_bits_per_byte(model, tok, texts, 64)
    assert math.isfinite(ours) and 0 < ours < 8
    assert abs(ours - theirs) < 1e-4


def test_uniform_model_scores_log2_vocab_per_token(tiny_model_dir):
    """A model with all-zero logits predicts uniformly: bpb = tokens * log2(V) / bytes, exactly."""
    model, tok = load_hf_causal_lm(tiny_model_dir)
    texts = korean_texts(3)
    uniform = lambda x: torch.zeros(*x.shape, len(tok))  # noqa: E731
    from kollm.model.score import text_nll

    nll, n_bytes = text_nll(uniform, tok, texts, ctx=16)
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    assert nll / math.log(2) / n_bytes == pytest.approx(n_tokens * math.log2(len(tok)) / n_bytes, rel=1e-6)


@pytest.mark.slow  # 19 s on 2 cores
def test_eval_cli_on_a_non_kollm_model(tmp_path, tiny_tokenizer):
    """`kollm eval` takes any HF causal-LM folder: here a tiny Llama built by the test."""
    cfg = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    tiny_tokenizer.save_pretrained(tmp_path / "llama")
    data = write_jsonl(tmp_path / "val.jsonl", korean_texts(4))
    r = run_kollm("eval", "--model", str(tmp_path / "llama"), "--data", str(data), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    bpb = float(r.stdout.split("val bits-per-byte:")[1].split()[0])
    # an untrained model is close to uniform over its vocabulary: far above a trained one, but finite
    assert math.isfinite(bpb) and bpb > 1.0
    r = run_kollm("serve", "generate", "--model", str(tmp_path / "llama"), "--prompt", "서울은",
                  "--max-new-tokens", "4")
    assert r.returncode == 0 and r.stdout.startswith("서울은"), r.stderr[-2000:]

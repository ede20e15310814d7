"""llama.cpp runs kollm's GGUF export: same token ids as the HF tokenizer, same greedy tokens as transformers."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kollm.interop import export_gguf

pytest.importorskip("xllamacpp", reason="llama.cpp tests need xllamacpp (pip install -e '.[test]')")
from llamacpp_server import hf_greedy, llama_server  # noqa: E402 - after the skip check

pytestmark = pytest.mark.slow

# Hangul, conjoining jamo, emoji (ZWJ family, flags, skin tone), mixed scripts, PII placeholders, chat markers,
# whitespace runs, CRLF, digits - the cases where a re-implemented pre-tokenizer drifts first.
KOREAN_SET = [
    "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "\u1112\u1161\u11ab\u1100\u1173\u11af 자모로 쓴 한글",
    "가족 👨‍👩‍👧‍👦 이모지 🙂🇰🇷 👍🏽",
    "Mixed 한국어 English 日本語 中文 Русский 123,456원 3.14",
    "연락처: <|phone|> 이메일 <|email|> 주민번호 <|rrn|> 계좌<|account|>끝",
    "공백  \n\n\t 여러개   끝  ",
    "<|im_start|>user\n안녕하세요<|im_end|>\n<|im_start|>assistant\n",
    "ㅋㅋㅋ ㅎㅎ 😂😂 ㅠㅠ",
    "  앞 공백과 뒤 공백  ",
    "tab\there\r\nCRLF 줄바꿈\r\n",
    "KTX를 타면 서울에서 부산까지 2시간 30분 정도 걸린다.",
    "'s 'll 'd don't 그건 I'm",
]


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return (AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(str(tiny_model_dir)))


@pytest.fixture(scope="module")
def ggufs(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    return {t: export_gguf(tiny_model_dir, out / f"m-{t}.gguf", t) for t in ("f32", "f16", "q8_0")}


def test_llamacpp_tokenizes_like_hf(hf, ggufs):
    _, tok = hf
    with llama_server(ggufs["f16"]) as server:
        got = {text: server.tokenize(text) for text in KOREAN_SET}
        # PII placeholders are USER_DEFINED: llama.cpp keeps them whole even without parse_special
        pii = server.tokenize(KOREAN_SET[4], parse_special=False)
    want = {text: tok(text, add_special_tokens=False)["input_ids"] for text in KOREAN_SET}
    bad = [t for t in KOREAN_SET if got[t] != want[t]]
    print(f"llama.cpp tokenizer agreement: {len(KOREAN_SET) - len(bad)}/{len(KOREAN_SET)}")
    assert not bad, {t: (want[t], got[t]) for t in bad}
    assert pii == want[KOREAN_SET[4]]


@pytest.mark.parametrize("out_type", ["f32", "f16"])
def test_llamacpp_greedy_matches_transformers(hf, ggufs, out_type):
    model, tok = hf
    # the tiny model's context is 64 tokens (llama.cpp caps n_ctx there): prompt <= 24, then 32 new tokens
    prompts = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]][:24] for t in KOREAN_SET[:4]]
    with llama_server(ggufs[out_type]) as server:
        got = [server.greedy(p, 32) for p in prompts]
    want = [hf_greedy(model, p, 32) for p in prompts]
    same = sum(g == w for g, w in zip(got, want, strict=True))
    print(f"{out_type}: greedy 32-token agreement {same}/{len(prompts)}")
    assert got == want


def _random_layout(kind, tiny_model_dir, folder):
    """A tiny randomly initialised Llama or Qwen2 with kollm's tokenizer: checks q/k permutation and biases."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=400, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  initializer_range=0.2, bos_token_id=0, eos_token_id=1, pad_token_id=2, tie_word_embeddings=False)
    model = (LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else
             Qwen2ForCausalLM(Qwen2Config(**common)))
    if kind == "qwen2":
        with torch.no_grad():  # Qwen2 has q/k/v biases; make them matter
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_other_layouts_run_in_llamacpp(kind, hf, tiny_model_dir, tmp_path):
    model = _random_layout(kind, tiny_model_dir, tmp_path / kind)
    _, tok = hf
    gguf_file = export_gguf(tmp_path / kind, tmp_path / f"{kind}.gguf", "f32")
    prompt = [0, *tok(KOREAN_SET[0], add_special_tokens=False)["input_ids"]][:16]
    with llama_server(gguf_file) as server:
        got = server.greedy(prompt, 16)
    assert got == hf_greedy(model, prompt, 16)

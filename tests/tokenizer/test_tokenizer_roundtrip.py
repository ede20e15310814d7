"""Exact round-trip and transformers portability for every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from kollm.data.sources import read_texts, sample_corpus_files
from kollm.tokenizer import METHODS, TokenizerConfig, load_tokenizer, save_tokenizer, train_tokenizer

VAL = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "ko-docs-val.jsonl"
FALLBACK = [
    "한국어 문장을 토큰으로 나눕니다. 학교에서 친구들과 공부했다.",
    "서울특별시는 대한민국의 수도이며, 인구는 약 940만 명이다.",
    "오늘 날씨가 맑아서 공원에 산책하러 갔습니다!  Python 3.11 을 씁니다.",
] * 20


def small_corpus() -> list[str]:
    texts = read_texts(sample_corpus_files())
    return texts[:60] or FALLBACK


@pytest.fixture(scope="module", params=METHODS)
def trained(request, tmp_path_factory):
    tok = train_tokenizer(small_corpus(), TokenizerConfig(method=request.param, vocab_size=1000))
    out = tmp_path_factory.mktemp(request.param)
    hf = save_tokenizer(tok, out)
    return request.param, tok, hf, out


# Korean-heavy alphabet: syllables, conjoining jamo (U+1100..), compatibility jamo (U+3130..), hanja,
# emoji with skin-tone modifiers and ZWJ, variation selectors, whitespace runs, Latin, digits; plus
# strings that tokenizers treat specially (the SentencePiece space mark, GPT-2's space byte, specials).
KOREAN_CHARS = st.one_of(
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),
    st.characters(min_codepoint=0x3130, max_codepoint=0x318F),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.sampled_from(["👍", "🏽", "\u200d", "👩", "\ufe0f", "🇰", "🇷", "😀"]),
    st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\u3000", "\xa0", "▁", "Ġ", "<|bos|>"]),
    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(s=st.lists(KOREAN_CHARS, max_size=60).map("".join))
def test_roundtrip_korean_strings(trained, s):
    _, tok, hf, _ = trained
    ids = hf.encode(s)
    assert hf.decode(ids) == s
    assert tok.decode(tok.encode(s, add_special_tokens=False).ids, skip_special_tokens=False) == s


@SETTINGS
@given(s=st.text(max_size=60))  # any Unicode scalar value (no lone surrogates: not valid text)
def test_roundtrip_any_unicode(trained, s):
    _, _, hf, _ = trained
    assert hf.decode(hf.encode(s)) == s


def test_encode_adds_no_bos_eos_and_ids_fixed(trained):
    _, _, hf, _ = trained
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (0, 1, 2)
    ids = hf.encode("안녕하세요")
    assert ids and hf.bos_token_id not in ids and hf.eos_token_id not in ids
    assert hf.encode("<|email|>로 연락") [0] == hf.convert_tokens_to_ids("<|email|>")
    assert "<|im_start|>" in hf.get_vocab()


def test_autotokenizer_matches_kollm_encoder(trained):
    method, tok, _, out = trained
    saved = json.loads((out / "tokenizer.json").read_text())
    assert saved["pre_tokenizer"]["type"] == "ByteLevel"  # no Kiwi or custom code needed at inference
    auto = AutoTokenizer.from_pretrained(str(out))
    texts = read_texts([VAL]) if VAL.is_file() else small_corpus()
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert auto.encode(text) == ids, method
        assert auto.decode(ids) == text
    assert len(load_tokenizer(out)) == tok.get_vocab_size()


@pytest.mark.skipif(not VAL.is_file(), reason="shared corpora absent")
def test_roundtrip_val_corpus(trained):
    _, _, hf, _ = trained
    texts = read_texts([VAL])
    batch = hf(texts, add_special_tokens=False)["input_ids"]
    bad = [t[:40] for t, ids in zip(texts, batch, strict=True) if hf.decode(ids) != t]
    assert not bad

"""Kiwi boundaries guide the merges of morpheme-bbpe, but inference needs no Kiwi."""

from __future__ import annotations

from kollm.tokenizer import TokenizerConfig, train_tokenizer
from kollm.tokenizer.morpheme import encode_with_kiwi, split_morphemes


def test_boundaries_keep_contracted_syllables_and_glue_spaces():
    text = "대화 상자를 사용하여 만들었다. 대한 예를 했다"
    pieces = next(split_morphemes([text], progress=False))
    assert "".join(pieces) == text
    assert " 상자" in pieces and "를" in pieces  # space stays with the next morpheme
    assert " 사용" in pieces and "하" in pieces
    assert " 대한" in pieces  # 대하 + ᆫ share the syllable 한: no cut inside it
    assert " 했" in pieces  # 하 + 었 -> 했
    assert not any(p.isspace() for p in pieces)


def test_merges_never_cross_morpheme_boundaries():
    text = ["학교에서 공부했다. 학교에서 놀았다. 집에서 학교에서 공부했다."] * 50
    plain = train_tokenizer(text, TokenizerConfig(method="bbpe", vocab_size=400))
    morph = train_tokenizer(text, TokenizerConfig(method="morpheme-bbpe", vocab_size=400))

    def pieces(tok, s):
        return [tok.decode([i]) for i in tok.encode(s, add_special_tokens=False).ids]

    assert " 학교에서" in pieces(plain, " 학교에서")  # plain BPE learns the whole eojeol
    assert pieces(morph, " 학교에서") == [" 학교", "에서"]  # morpheme-bbpe: noun + particle
    # Kiwi-free inference gives the same ids as Kiwi-split inference on the training text.
    assert [morph.encode(t, add_special_tokens=False).ids for t in text[:3]] == encode_with_kiwi(morph, text[:3])


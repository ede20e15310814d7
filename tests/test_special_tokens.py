"""The special-token contract's shared pieces: the BOS rule and how tokenizer_config.json spells a token."""

from __future__ import annotations

from kollm.special_tokens import BOS, encode_with_bos, token_text


class _Tok:
    """Just what encode_with_bos reads from a transformers tokenizer."""

    def __init__(self, bos: int | None) -> None:
        self.bos_token_id = bos

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert add_special_tokens is False  # BOS is placed by the rule, never by the tokenizer's post-processor
        return [10 + ord(c) % 50 for c in text]


def test_bos_first_when_the_tokenizer_defines_one():
    assert encode_with_bos(_Tok(bos=0), "가나") == [0, *_Tok(0).encode("가나", add_special_tokens=False)]
    assert encode_with_bos(_Tok(bos=None), "가나") == _Tok(None).encode("가나", add_special_tokens=False)  # Qwen
    assert encode_with_bos(_Tok(bos=7), "") == [7]


def test_bos_rule_on_a_kollm_tokenizer(tiny_tokenizer):
    ids = encode_with_bos(tiny_tokenizer, "서울역")
    assert ids[0] == tiny_tokenizer.convert_tokens_to_ids(BOS) == 0
    assert ids[1:] == tiny_tokenizer.encode("서울역", add_special_tokens=False)


def test_token_text_reads_both_spellings():
    assert token_text("<|bos|>") == "<|bos|>"
    assert token_text({"content": "<bos>", "lstrip": False}) == "<bos>"
    assert token_text(None) is None and token_text({"lstrip": False}) is None and token_text(3) is None

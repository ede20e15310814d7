"""The output processor (serve/output.py) on a real byte-level tokenizer: pushed token by token, outputs join to
exactly the decoded text, stop strings cut where they begin, and with PII masks nothing personal ever leaves: not in
text, not in a token, not in bytes, not when a number is split across tokens, begun in the prompt or cut short."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from kollm.data.pii import people_spans
from kollm.serve.output import Output, token_string
from kollm.serve.utf8 import Utf8Guard


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def pieces(tok):
    return Utf8Guard(tok, len(tok)).pieces


def encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def run(pieces, ids: list[int], prompt: list[int] = (), stop=(), mask=False, cut=False, special=()):
    out = Output(pieces, special, stop, mask)
    got = out.begin(prompt)
    for t in ids:
        got += out.push(t)
        if out.stopped:
            break
    return got + out.finish(cut=cut), out


def shown(text: str, start: int, cut: bool = False) -> str:
    """What people see of text[start:] (text[:start] is the prompt), masked over the whole text at once."""
    out, last = [], start
    for s, e, label in people_spans(text, start or None, cut):
        if e > start:
            out += [text[last:max(s, last)], label]
            last = e
    return "".join(out) + text[last:]


KOREAN = st.text(st.sampled_from(list("가나다한국어서울의 날씨좋아요😀🇰🇷 \n.,!?-@abcXYZ0123456789")), max_size=60)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=KOREAN)
def test_tokens_join_to_the_decoded_text_and_never_hold_a_broken_character(tok, pieces, text):
    ids = encode(tok, text)
    toks, _ = run(pieces, ids)
    assert "".join(t.text for t in toks) == tok.decode(ids) == text
    assert b"".join(t.bytes for t in toks) == text.encode("utf-8")
    for t in toks:
        assert "\ufffd" not in t.text and "\ufffd" not in t.token
        assert t.token == token_string(pieces[t.id])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=KOREAN, stop=st.lists(st.text(st.sampled_from(list("가나 \n.0-a😀")), min_size=1, max_size=3),
                                  max_size=3))
def test_stop_strings_cut_where_they_begin_and_never_leak(tok, pieces, text, stop):
    ids = encode(tok, text)
    toks, out = run(pieces, ids, stop=stop)
    got = "".join(t.text for t in toks)
    # the processor stops at the first token that completes a stop string: the text ends where the earliest
    # stop string seen so far begins ("0a0" in tokens "0a", "0" with stops "a" and "0a0": "a" ends it first)
    seen = text
    for k in range(1, len(ids) + 1):
        prefix = b"".join(pieces[i] for i in ids[:k]).decode("utf-8", "ignore")
        if any(s in prefix for s in stop):
            seen = prefix
            break
    hits = [seen.find(s) for s in stop if s in seen]
    if hits:
        assert out.stopped and got == text[:min(hits)]
    else:
        assert got == text
    for s in stop:
        assert s not in got


def test_a_stream_releases_held_text_as_soon_as_it_cannot_be_a_stop(tok, pieces):
    out = Output(pieces, (), ["끝."], False)
    seen = ""
    for t in encode(tok, "서울 날씨 끝났다"):
        seen += "".join(x.text for x in out.push(t))
    assert seen == "서울 날씨 끝났다"[:len(seen)] and "서울 날씨" in seen  # "끝" waited only for the next character
    assert seen + "".join(x.text for x in out.finish()) == "서울 날씨 끝났다"


CASES = [  # (prompt, output): the repros and their kin
    ("연락처:", " 010-9876-5432 로 연락 주세요"),
    ("연락처:", " 010-9876-543"),  # cut by max_tokens
    ("동생 전화번호는 010-", "1234-5679입니다"),  # continues a number begun in the prompt
    ("주민등록번호: 8", "50315-1234567"),
    ("주민등록번호: 8", "50315-0170488"),  # no valid RRN: a long digit run all the same
    ("메일:", " kim.minsu@example.co.kr 입니다"),
    ("카드", " 4111 1111 1111 1111 결제"),
    ("계좌", " 110-123-456789 로 보내"),
    ("번호", " ０１０－１２３４－５６７８ 전각"),
    ("", "<|phone|>로 연락"),  # a placeholder the model wrote
]


@pytest.mark.parametrize(("prompt", "text"), CASES)
def test_masks_hide_numbers_in_text_tokens_and_bytes(tok, pieces, prompt, text):
    ids, pids = encode(tok, text), encode(tok, prompt)
    for cut in (False, True):
        toks, _ = run(pieces, ids, prompt=pids, mask=True, cut=cut)
        got = "".join(t.text for t in toks)
        assert got == shown(prompt + text, len(prompt), cut)
        assert b"".join(t.bytes for t in toks) == got.encode("utf-8")  # joined bytes are the masked text
        assert not re.search(r"\d", got.replace("０", "0")) and "@" not in got and "<|" not in got, got
        for t in toks:  # no token shows a digit of a masked number, nor its bytes
            if t.label is not None:
                assert t.token in ("", t.label) or t.label in t.token
                assert not re.search(rb"[0-9]|\xef\xbc", t.bytes)
        assert any(t.label for t in toks)


def test_masked_streams_never_let_a_digit_out_before_the_number_is_whole(tok, pieces):
    text = "문의는 010-1234-5678 으로 주시고 메일은 kim.minsu@example.co.kr 입니다. 감사합니다"
    out = Output(pieces, (), (), True)
    chunks = [out.push(t) for t in encode(tok, text)] + [out.finish()]
    want = "문의는 [전화번호] 으로 주시고 메일은 [이메일] 입니다. 감사합니다"
    assert "".join(t.text for c in chunks for t in c) == want
    for c in chunks:
        for t in c:
            assert not re.search(r"[0-9@]", t.text) and not re.search(rb"[0-9@]", t.bytes), t


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(prompt=st.text(st.sampled_from(list("번호는:주민 0123456789-")), max_size=12),
       text=st.text(st.sampled_from(list("0123456789- 입니다.계좌ab@x")), max_size=40), cut=st.booleans())
def test_incremental_masks_equal_masking_the_whole_text(tok, pieces, prompt, text, cut):
    """Masks computed window by window as tokens arrive are the masks of the whole text at once."""
    toks, _ = run(pieces, encode(tok, text), prompt=encode(tok, prompt), mask=True, cut=cut)
    assert "".join(t.text for t in toks) == shown(prompt + text, len(prompt), cut)


def test_an_echoed_prompt_has_zero_width_special_tokens_and_true_offsets(tok, pieces):
    bos = tok.convert_tokens_to_ids("<|bos|>")
    prompt = [bos, *encode(tok, "서울은 대한민국의 수도 😀")]
    out = Output(pieces, {bos}, (), False)
    toks = out.begin(prompt, echo=True)
    toks += out.push(encode(tok, " 한강")[0]) + out.finish()
    text = "".join(t.text for t in toks)
    assert text.startswith("서울은") and toks[0].token == "<|bos|>" and toks[0].text == ""
    at = 0
    for t in toks:
        assert text[at:at + len(t.text)] == t.text
        if t.text and not t.token.startswith("bytes:") and t.id != bos:
            assert t.token == t.text  # a whole-character token sits at its offset
        at += len(t.text)

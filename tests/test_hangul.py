"""kollm.hangul: the keyboard-mode pass of query correction (the layout itself is tested in tests/data/test_typos.py,
against a table written out there)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO

from kollm.hangul import from_keys, mode_switches, pick_switches, switch_candidates, switch_keyboard_mode, to_keys


def test_spans_are_what_the_other_mode_shows_for_the_same_keys():
    assert mode_switches("dkdlvhs 케이스") == [(0, 7, "아이폰")]
    assert mode_switches("ㅑㅔㅁㅇ 거치대") == [(0, 4, "ipad")]
    assert mode_switches("게이밍 헤드셋 7.1cosjf") == [(11, 16, "채널")]  # a run inside a word with digits
    assert mode_switches("사과 5ㅏㅎ") == [(4, 6, "kg")]
    assert mode_switches("ssd 1ㅅㅠ 외장 dlqnf") == [(5, 7, "tb"), (11, 16, "이불")]


def test_correct_text_and_most_english_words_are_no_candidates():
    # English words mostly leave lone jamo in Korean mode (usb -> ㅕ뉴), and Korean typed right has no lone jamo
    for text in ("usb 허브 4포트", "hdmi 케이블 2m", "아기 로션 순한", "lego 테크닉", "galaxy 버즈", "1kg", "a3",
                 "27인치 QHD 모니터"):  # QHD would compose into 뽕: capitals are an acronym
        assert mode_switches(text) == [], text


def test_every_switch_types_the_same_keys():
    for text in ("dkdlvhs", "rkddkwl 패딩", "ㅜㅑㅏㄷ 에어포스", "ckfiddyd thdvndrn"):
        for start, end, alt in mode_switches(text):
            assert to_keys(alt).lower() == to_keys(text[start:end]).lower()
            assert from_keys(to_keys(alt)) == from_keys(to_keys(text[start:end]))


def _prefers_hangul(texts: list[str]) -> list[float]:
    """A scorer for the pass's own logic: a text is likelier the fewer Latin letters and lone jamo it holds."""
    return [-len(re.findall(r"[A-Za-zㄱ-ㅣ]", t)) + 0.5 * len(re.findall(r"[a-z]{3,}", t)) for t in texts]


def test_a_span_is_switched_only_when_the_judge_says_so():
    assert switch_keyboard_mode("alsl wptmqrl dnjsfnadyd", _prefers_hangul) == "미니 제습기 원룸용"
    assert switch_keyboard_mode("ㅜㅑㅏㄷ 에어포스", _prefers_hangul) == "nike 에어포스"
    assert switch_keyboard_mode("아기 로션", _prefers_hangul) == "아기 로션"
    calls: list[list[str]] = []
    assert switch_keyboard_mode("dkrl 로션", lambda t: calls.append(t) or [0.0, 0.0]) == "dkrl 로션"  # a tie keeps
    assert calls == [["dkrl 로션", "아기 로션"]]
    assert switch_keyboard_mode("dkrl 로션", lambda t: [0.0, 1.0], margin=2.0) == "dkrl 로션"
    assert switch_keyboard_mode("아기 로션", lambda t: calls.append(t) or []) == "아기 로션"  # nothing to ask
    assert len(calls) == 1


def test_each_span_is_judged_against_the_text_as_typed_and_all_together():
    text = "dkrl ㅑㅔㅁㅇ 케이스"
    assert switch_candidates(text) == [text, "아기 ㅑㅔㅁㅇ 케이스", "dkrl ipad 케이스", "아기 ipad 케이스"]
    assert pick_switches(text, [-10.0, -5.0, -4.0, -9.0]) == "아기 ipad 케이스"  # each alone reads likelier
    assert pick_switches(text, [-10.0, -11.0, -4.0, -5.0]) == "dkrl ipad 케이스"
    assert pick_switches(text, [-10.0, -11.0, -12.0, -3.0]) == "아기 ipad 케이스"  # only together (a whole query)
    assert pick_switches(text, [-10.0, -11.0, -12.0, -13.0]) == text
    assert switch_candidates("dkrl 로션") == ["dkrl 로션", "아기 로션"]  # one span: no "all" candidate
    with pytest.raises(ValueError, match="3 scores for 4"):
        pick_switches(text, [0.0, 1.0, 2.0])


@pytest.mark.slow
def test_gemma_judges_the_held_out_keyboard_mode_queries(gemma_dir):
    """Gemma-3-270M (not tuned) as the judge, on the hand-written held-out keyboard-mode queries: most are switched
    back exactly, and no already-correct held-out query is touched."""
    import torch

    from kollm.model.hf import load_hf_causal_lm
    from kollm.tune.validate import text_logprobs

    model, tok = load_hf_causal_lm(str(gemma_dir))
    judge = lambda texts: text_logprobs(model, tok, texts, torch.device("cpu"))  # noqa: E731
    heldout = REPO / "src/kollm/eval/tasks/data/query_correction_heldout.jsonl"
    rows = [json.loads(line) for line in heldout.read_text(encoding="utf-8").splitlines()]
    mode = [r for r in rows if r["error_type"] in ("english_mode", "korean_mode")]
    right = sum(switch_keyboard_mode(r["typo"], judge).replace(" ", "") == r["correct"].replace(" ", "")
                for r in mode)
    assert right >= 0.6 * len(mode), f"{right}/{len(mode)}"
    for r in rows:
        if r["error_type"] == "unchanged":
            assert switch_keyboard_mode(r["typo"], judge) == r["typo"]

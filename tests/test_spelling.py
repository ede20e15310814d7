"""kollm.spelling: the spelling pass of query correction (its tables are also what tests/data/test_typos.py checks
typo synthesis against)."""

from __future__ import annotations

import difflib
import random

import pytest

from kollm.spelling import (
    KIWI_PRIOR,
    LOANWORDS,
    MISSPELLINGS,
    TABLE_PRIOR,
    _split_halves,
    fix_spelling,
    keep_close,
    pick_spelling,
    spelling_candidates,
)


def test_every_table_slip_synthesized_is_a_candidate_back():
    """What typo synthesis makes from a table, the pass offers to undo: the correct text is among the candidates,
    with the table's prior."""
    from kollm.data.typos import apply_error

    for kind, table in (("misspelling", [(c, (w,)) for c, w in MISSPELLINGS]), ("loanword", LOANWORDS)):
        for correct, _ in table:
            text = f"{correct.lstrip('^')} 추천"
            typo = apply_error(text, kind, random.Random(0))
            if typo is None:  # a "^" entry needs a following word, or the pair only applies inside one
                continue
            cands, priors = spelling_candidates(typo)
            assert text in cands, (typo, text, cands)
            assert priors[cands.index(text)] == TABLE_PRIOR


def test_kiwi_offers_dictionary_words_and_nothing_for_what_it_cannot_read():
    cands, priors = spelling_candidates("되지고기 목살")
    assert cands[0] == "되지고기 목살" and priors[0] == 0.0
    assert "돼지고기 목살" in cands and priors[cands.index("돼지고기 목살")] == KIWI_PRIOR
    assert "냉장고 세척" in spelling_candidates("냉장고 새척")[0]  # ㅐ/ㅔ (Kiwi's own typo model)
    assert "게임용 노트북 추천" in spelling_candidates("게임용 노트북 추쳔")[0]  # j -> u (kollm's: typo_model)
    assert "무선 이어폰 추천" in spelling_candidates("무선 이어폰 추처")[0]  # the final's key missed
    assert "세탁기 청소법" in spelling_candidates("세탁기 청소벚")[0]  # a neighbouring key for a final
    for text in ("배달 음식 야식 추 천", "냉장고 새척", "매 트리스"):  # one slip undone: one place changed
        for cand in spelling_candidates(text)[0][1:]:
            ops = difflib.SequenceMatcher(None, text, cand, autojunk=False).get_opcodes()
            assert sum(op != "equal" for op, *_ in ops) == 1, (text, cand)
    # half a word split by a stray space is the corrector's to join, not a slip to respell (매 -> 미)
    assert spelling_candidates("매 트리스") == (["매 트리스"], [0.0])
    assert "물병 세척" in spelling_candidates("물병 새척")[0]  # a slip next to a joined word is still undone
    assert spelling_candidates("iphone 15 pro") == (["iphone 15 pro"], [0.0])  # no Hangul: nothing to ask
    assert spelling_candidates("1234") == (["1234"], [0.0])
    # 않 only after -지: 안 before a verb is no slip for it
    assert "끈적이지 않는 선크림" in spelling_candidates("끈적이지 안는 선크림")[0]
    assert "끈적이지않는 선크림" in spelling_candidates("끈적이지안는 선크림")[0]
    for text in ("소리안나는 마우스", "안 새는 물병"):
        assert not any("않" in c for c in spelling_candidates(text)[0])
    for text in ("냉장고 세척", "돼지고기 목살", "무선 이어폰"):  # correct text: any candidate differs in letters
        assert all(c.replace(" ", "") != text.replace(" ", "") for c in spelling_candidates(text)[0][1:])


def test_split_halves_are_one_syllable_words_the_spacing_joins():
    assert _split_halves("매 트리스", "매트리스") == [(0, 1)]
    assert _split_halves("전세 대출 조 건", "전세 대출 조건") == [(6, 7), (8, 9)]
    assert _split_halves("차 키 케이스", "차 키 케이스") == []  # kept apart: words of their own
    assert _split_halves("자전 거 헬멧", "자전거 헬멧") == [(3, 4)]  # only the one-syllable side
    assert _split_halves("c타 입", "c 타입") == [(3, 4)]
    assert _split_halves("매 트리스", "메트리스") == []  # other letters: no alignment, nothing kept from it


def test_the_likeliest_with_its_prior_wins_and_a_tie_keeps_the_text():
    cands, priors = ["케찹 소스", "케첩 소스", "캐찹 소스"], [0.0, TABLE_PRIOR, KIWI_PRIOR]
    assert pick_spelling(cands, priors, [-20.0, -27.0, -10.0]) == "캐찹 소스"  # Kiwi's by 10 nats (> 6)
    assert pick_spelling(cands, priors, [-20.0, -27.0, -17.0]) == "케첩 소스"  # the table's, 7 nats less likely
    assert pick_spelling(cands, priors, [-20.0, -29.0, -17.0]) == "케찹 소스"  # neither clears its prior
    assert pick_spelling(cands, [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]) == "케찹 소스"
    with pytest.raises(ValueError, match="2 scores for 3"):
        pick_spelling(cands, priors, [0.0, 1.0])
    calls = []
    assert fix_spelling("iphone", lambda t: calls.append(t) or []) == "iphone" and calls == []
    assert fix_spelling("케찹 소스", lambda t: [0.0] * len(t)) == "케첩 소스"
    assert fix_spelling("케찹 소스", lambda t: [0.0, -9.0, *[0.0] * (len(t) - 2)]) == "케찹 소스"


@pytest.mark.parametrize(("query", "corrected", "kept"), [
    ("유모챠 추천", "유모차 추천", "유모차 추천"),  # one jamo: a slip undone
    ("무선이어 폰 추천", "무선 이어폰 추천", "무선 이어폰 추천"),  # spacing is free
    ("되지 저금통", "돼지 저금통", "돼지 저금통"),
    ("에어후라이어 종이 포일", "에어프라이어 종이 포장", "에어프라이어 종이 포일"),  # 후->프 (2) kept, 일->장 (3) not
    ("버티컬 마우스 무섬 저소음", "버티컬 마우스 무선 소음", "버티컬 마우스 무섬 저소음"),  # one place of 3
    ("버티컬 마우스 무섬 저소음", "버티컬 마우스 무선 저소음", "버티컬 마우스 무선 저소음"),
    ("nike 에어포스", "nike air max 2019", "nike 에어포스"),  # a rewrite, not a correction
    ("소리안나는 마우스", "소리 없는 마우스", "소리안나는 마우스"),
    ("요가링 필라테스", "요가링 필라테스", "요가링 필라테스"),
    ("요가링", "", "요가링"),  # no answer is no correction
    ("ipone 케이스", "iphone 케이스", "iphone 케이스"),  # other characters count one each
])
def test_keep_close_keeps_the_small_edits_of_a_correction(query, corrected, kept):
    assert keep_close(query, corrected) == kept


def test_keep_close_weighs_a_place_as_a_whole_and_puts_spacing_back_with_it():
    assert keep_close("케잌 추천", "케이크 추천") == "케잌 추천"  # 잌->이 and 크 added: 3 jamo in one place
    assert keep_close("케잌 추천", "케이크 추천", max_edits=3) == "케이크 추천"
    # a place put back takes the query's spacing up to the next unchanged syllable
    assert keep_close("무섬 저소음", "무선 소음") == "무섬 저소음"
    rng = random.Random(0)
    syllables = "가나다라마바사아자차카타파하각낙닥"
    for _ in range(200):  # never more than the two texts' characters, and the query itself when nothing is small
        q = "".join(rng.choice(syllables + " ") for _ in range(rng.randrange(1, 12))).strip() or "가"
        c = "".join(rng.choice(syllables + " ") for _ in range(rng.randrange(1, 12))).strip() or "나"
        out = keep_close(q, c, max_edits=0)
        assert out.replace(" ", "") == q.replace(" ", "")
        assert set(keep_close(q, c).replace(" ", "")) <= set(q + c)


@pytest.mark.slow
def test_gemma_judges_synthesized_spelling_slips(gemma_dir):
    """Gemma-3-270M (not tuned) as the judge, on synthesized pairs (seed 7, as kollm/spelling.py's numbers): most
    vowel slips and table slips are undone, and no correct query is touched."""
    import torch

    from kollm.data.config import DataConfig
    from kollm.data.typos import clean_queries_from_corpus, make_pairs
    from kollm.model.hf import load_hf_causal_lm
    from kollm.tune.validate import text_logprobs

    model, tok = load_hf_causal_lm(str(gemma_dir))

    def judge(texts: list[str]) -> list[float]:
        with torch.no_grad():
            return text_logprobs(model, tok, texts, torch.device("cpu"))

    rows = make_pairs(clean_queries_from_corpus(), DataConfig(typo_pairs_per_query=3, typo_seed=7))
    random.Random(1).shuffle(rows)
    for kind, least in (("vowel", 0.8), ("misspelling", 0.8), ("loanword", 0.8), ("unchanged", 1.0)):
        picked = [r for r in rows if r["errors"] == ([kind] if kind != "unchanged" else [])][:20]
        right = sum(fix_spelling(r["typo"], judge).replace(" ", "") == r["correct"].replace(" ", "") for r in picked)
        assert right >= least * len(picked), (kind, right, len(picked))

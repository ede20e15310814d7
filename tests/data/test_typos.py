"""Korean typo synthesis (`kollm data typos`): each error type makes what it says, deterministically; the recipe's
rates are honoured; bad recipes are one-line errors; and the hand-written held-out set is sound and unseen."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, run_kollm

from kollm.config import read_recipe
from kollm.data.config import DataConfig
from kollm.data.typos import (
    ERROR_TYPES,
    UNCHANGED,
    apply_error,
    check_typo_config,
    clean_queries_from_corpus,
    make_pairs,
    read_queries,
)
from kollm.errors import KollmError
from kollm.hangul import decompose, from_keys, to_keys
from kollm.spelling import LOANWORDS, MISSPELLINGS

HELDOUT = REPO / "src/kollm/eval/tasks/data/query_correction_heldout.jsonl"

# The keyboard as the tests know it, written out again (not imported) so a wrong table in the code fails here.
ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
LAYOUT = {"아이폰": "dkdlvhs", "추천": "cncjs", "있는": "dlTsms", "괜찮아": "rhoscksgdk", "닭가슴살": "ekfrrktmatkf",
          "꽃다발": "Rhcekqkf", "의자": "dmlwk", "값": "rkqt"}


def _adjacent(a: str, b: str) -> bool:
    """Neighbours on the QWERTY grid (case aside: Shift+F is still ㄹ, so a slip from R (ㄲ) to F reads back as f)."""
    (ra, ia), (rb, ib) = [next((r, row.index(k.lower())) for r, row in enumerate(ROWS) if k.lower() in row)
                          for k in (a, b)]
    if ra == rb:
        return abs(ia - ib) == 1
    # staggered rows: a key touches the two keys above it (same index and one right) and below (one left, same)
    return (rb == ra - 1 and ib in (ia, ia + 1)) or (rb == ra + 1 and ib in (ia - 1, ia))


def _diff(typo: str, correct: str) -> list[int]:
    assert len(typo) == len(correct), (typo, correct)
    return [i for i, (a, b) in enumerate(zip(typo, correct, strict=True)) if a != b]


def _one_replacement(typo: str, correct: str, table: list[tuple[str, str]]) -> bool:
    for right, wrong in table:
        pattern = r"(?<!\S)" + re.escape(right[1:]) if right.startswith("^") else re.escape(right)
        for m in re.finditer(pattern, correct):
            if typo == correct[:m.start()] + wrong + correct[m.end():]:
                return True
    return False


# ---- what each type must make ------------------------------------------------------------------------------------
def check_keyboard(typo: str, correct: str) -> None:
    a, b = to_keys(typo), to_keys(correct)
    assert len(a) == len(b)
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    assert len(diff) == 1 and _adjacent(a[diff[0]], b[diff[0]]), (typo, correct, a, b)


TENSE = {"ㄱ": "ㄲ", "ㄷ": "ㄸ", "ㅂ": "ㅃ", "ㅅ": "ㅆ", "ㅈ": "ㅉ"}


def check_jamo_drop_double(typo: str, correct: str) -> None:
    diff = _diff(typo, correct)
    assert len(diff) == 1, (typo, correct)
    i = diff[0]
    (c1, v1, f1), (c2, v2, f2) = decompose(correct[i]), decompose(typo[i])
    dropped_final = (c1, v1) == (c2, v2) and f1 and (f2 == "" or (len(f2) == 1 and f2 != f1 and to_keys(f1)
                                                                  .startswith(to_keys(f2))))
    prev = decompose(correct[i - 1]) if i else None
    shift_held = (v1, f1) == (v2, f2) and TENSE.get(c1) == c2 and prev and (prev[2] or prev[1]) in "ㄲㄸㅃㅆㅉㅒㅖ"
    final_again = (v1, f1) == (v2, f2) and c1 == "ㅇ" and prev and prev[2] == c2
    assert dropped_final or shift_held or final_again, (typo, correct)


def check_english_mode(typo: str, correct: str) -> None:
    words = list(zip(typo.split(" "), correct.split(" "), strict=True))
    changed = [(t, c) for t, c in words if t != c]
    assert changed
    for t, c in changed:  # typed in English mode: the keys of the word, Latin letters in it as they were
        assert not re.search(r"[ㄱ-ㅣ가-힣]", t) and to_keys(c) == t, (t, c)
        assert re.search(r"[A-Za-z]", c) or from_keys(t) == c  # and the IME gives the word back


def check_korean_mode(typo: str, correct: str) -> None:
    words = list(zip(typo.split(" "), correct.split(" "), strict=True))
    changed = [(t, c) for t, c in words if t != c]
    assert changed
    for t, c in changed:  # typed in Korean mode: every letter became a jamo, and they are the same keys
        assert not re.search(r"[A-Za-z]", t) and re.search(r"[A-Za-z]", c), (t, c)
        # (Shift+A is ㅁ like a: only Q W E R T O P have a jamo of their own with Shift)
        assert to_keys(t) == "".join(k if k in "QWERTOP" else k.lower() for k in to_keys(c)), (t, c)


VOWEL_PAIRS = {frozenset(p) for p in ("ㅐㅔ", "ㅒㅖ", "ㅚㅙ", "ㅚㅞ", "ㅙㅞ")}


def check_vowel(typo: str, correct: str) -> None:
    diff = _diff(typo, correct)
    assert len(diff) == 1
    (c1, v1, f1), (c2, v2, f2) = decompose(correct[diff[0]]), decompose(typo[diff[0]])
    assert (c1, f1) == (c2, f2)
    assert frozenset((v1, v2)) in VOWEL_PAIRS or (frozenset((v1, v2)) == frozenset("ㅓㅕ") and c1 in "ㅈㅉㅊ")


BATCHIM_PAIRS = {("ㅆ", "ㅅ"), ("ㅈ", "ㅅ"), ("ㅊ", "ㅅ"), ("ㅌ", "ㅅ"), ("ㄷ", "ㅅ"), ("ㅍ", "ㅂ"), ("ㄲ", "ㄱ"),
                 ("ㅋ", "ㄱ"), ("ㄺ", "ㄱ"), ("ㄻ", "ㅁ"), ("ㄼ", "ㄹ"), ("ㄳ", "ㄱ"), ("ㄵ", "ㄴ"), ("ㅄ", "ㅂ"),
                 ("ㄶ", "ㄴ"), ("ㅀ", "ㄹ"), ("ㄾ", "ㄹ"), ("ㅂ", "ㅁ"), ("ㄱ", "ㅇ"), ("ㄷ", "ㄴ")}


def check_batchim(typo: str, correct: str) -> None:
    diff = _diff(typo, correct)
    assert len(diff) == 1
    (c1, v1, f1), (c2, v2, f2) = decompose(correct[diff[0]]), decompose(typo[diff[0]])
    assert (c1, v1) == (c2, v2) and (f1, f2) in BATCHIM_PAIRS, (typo, correct)


def check_misspelling(typo: str, correct: str) -> None:
    assert _one_replacement(typo, correct, list(MISSPELLINGS)), (typo, correct)


def check_loanword(typo: str, correct: str) -> None:
    assert _one_replacement(typo, correct, [(c, w) for c, ws in LOANWORDS for w in ws]), (typo, correct)


def _spaces_only(typo: str, correct: str) -> None:
    assert typo.replace(" ", "") == correct.replace(" ", "")


def check_spacing_drop(typo: str, correct: str) -> None:
    _spaces_only(typo, correct)
    assert typo.count(" ") < correct.count(" ")
    it = iter(correct)
    assert all(ch in it for ch in typo)  # typo is correct with some of its spaces taken out


def check_spacing_insert(typo: str, correct: str) -> None:
    _spaces_only(typo, correct)
    assert typo.count(" ") == correct.count(" ") + 1
    i = next(i for i in range(len(typo)) if i >= len(correct) or typo[i] != correct[i])
    assert typo[i] == " " and decompose(typo[i - 1]) and decompose(typo[i + 1]), typo


CHECKS = {"keyboard": check_keyboard, "jamo_drop_double": check_jamo_drop_double, "english_mode": check_english_mode,
          "korean_mode": check_korean_mode, "vowel": check_vowel, "batchim": check_batchim,
          "misspelling": check_misspelling, "loanword": check_loanword, "spacing_drop": check_spacing_drop,
          "spacing_insert": check_spacing_insert}

# queries each type can apply to (and some it cannot, which must give no pair of that type)
QUERIES = {
    "keyboard": ["무선 이어폰 추천", "캠핑 의자", "꽃다발 배달"],
    "jamo_drop_double": ["로봇청소기 추천", "할인 쿠폰", "했던 제품", "닭가슴살 도시락"],
    "english_mode": ["아이폰 케이스", "무선 청소기 추천", "있는 그대로"],
    "korean_mode": ["iphone 케이스", "nike 운동화", "갤럭시s23 필름", "usb 허브 c타입"],
    "vowel": ["세탁기 세제", "돼지고기 앞다리", "전기 요금", "예쁜 휴대폰 케이스", "계란 한 판"],
    "batchim": ["젖병 소독기", "꽃집 배달", "국물 요리", "입문용 기타", "닭가슴살 샐러드", "있는 그대로",
                "닭볶음탕 맛있는 곳"],
    "misspelling": ["메모리폼 베개", "김치찌개 밀키트", "며칠 걸려요", "안 새는 텀블러", "결제 취소"],
    "loanword": ["스테인리스 냄비", "오렌지 주스", "초콜릿 선물", "리모컨 건전지", "커피숍 창업"],
    "spacing_drop": ["무선 이어폰 추천", "여름 원피스", "아기 물티슈 캡형 대용량"],
    "spacing_insert": ["블루투스스피커", "무선 이어폰", "헬멧"],
}
NOT_APPLICABLE = {"korean_mode": "무선 이어폰", "english_mode": "usb c", "loanword": "무선 이어폰",
                  "spacing_drop": "헬멧", "spacing_insert": "usb c", "misspelling": "무선 이어폰", "batchim": "아이",
                  "vowel": "아이", "jamo_drop_double": "아이", "keyboard": "usb c"}


def only(kind: str, **kw) -> DataConfig:
    return DataConfig(**{"typo_rates": {kind: 1.0}, "typo_unchanged": 0.0, "typo_pairs_per_query": 3, **kw})


def test_keys_and_ime_composition():
    for word, keys in LAYOUT.items():
        assert to_keys(word) == keys and from_keys(keys) == word
    assert from_keys("iphone") == "ㅑㅔㅙㅜㄷ"  # the IME joins ㅗ+ㅐ into ㅙ even without an initial
    assert from_keys("galaxy") == "ㅎ밈툐" and from_keys("nike") == "ㅜㅑㅏㄷ" and from_keys("LG") == "ㅣㅎ"
    assert from_keys(to_keys("갤럭시s23")) == "갤럭신23"  # in Korean mode the s joins the syllable before
    for q in clean_queries_from_corpus():
        if not re.search(r"[A-Za-z]", q):
            assert from_keys(to_keys(q)) == q


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_each_type_makes_what_it_says(kind):
    queries = QUERIES[kind]
    rows = make_pairs(queries, only(kind, typo_seed=7))
    assert rows == make_pairs(queries, only(kind, typo_seed=7))  # same seed, same pairs
    one = [make_pairs(queries, only(kind, typo_seed=s, typo_pairs_per_query=1)) for s in range(7, 20)]
    assert any(got != one[0] for got in one[1:])  # seeds matter
    assert {r["correct"] for r in rows} == set(queries)  # the correct side is the input itself
    for r in rows:
        assert r["errors"] == [kind] and r["typo"] != r["correct"]
        CHECKS[kind](r["typo"], r["correct"])
    assert make_pairs([NOT_APPLICABLE[kind]], only(kind)) == []  # cannot apply: no pair, never a false label
    for r in make_pairs(clean_queries_from_corpus(), only(kind)):  # and on every shipped query it applies to
        assert r["errors"] == [kind] and r["typo"] != r["correct"]
        CHECKS[kind](r["typo"], r["correct"])


def test_documented_examples():
    def all_typos(query: str, kind: str) -> set[str]:  # every typo of `kind` that 20 seeds make
        return {r["typo"] for s in range(20) for r in make_pairs([query], only(kind, typo_seed=s))}

    assert all_typos("아이폰", "english_mode") == {"dkdlvhs"}
    assert all_typos("추천", "jamo_drop_double") == {"추처"}  # a dropped final, never 추천ㅇ
    assert all_typos("할인", "jamo_drop_double") == {"하인", "할이", "할린"}
    assert all_typos("했다", "jamo_drop_double") == {"해다", "했따"}  # Shift held from ㅆ into ㄷ
    assert all_typos("iphone", "korean_mode") == {"ㅑㅔㅙㅜㄷ"}
    assert all_typos("스테인리스", "loanword") == {"스텐", "스뎅", "스텐레스"}
    assert all_typos("꽃다발", "batchim") == {"꼿다발"}
    assert all_typos("같은 옷", "batchim") == set()  # before ㅇ the final is heard (같은 [가튼]): no confusion
    assert all_typos("내 베개", "vowel") == {"네 베개", "내 배개", "내 베게"}
    assert all_typos("회색 저고리", "vowel") == {"홰색 저고리", "훼색 저고리", "회섹 저고리", "회색 져고리"}
    assert all_typos("며칠 걸려요", "misspelling") == {"몇일 걸려요"}
    assert all_typos("안 되는 이유", "misspelling") == {"않 되는 이유", "안 돼는 이유"}
    assert all_typos("캠핑용 커피숍 케첩", "loanword") == {"캠핑용 커피샵 케첩", "캠핑용 커피숍 케찹"}


def test_unchanged_rows_equal_their_input():
    cfg = DataConfig(typo_unchanged=1.0, typo_pairs_per_query=1)
    rows = make_pairs(["  무선 이어폰 추천 ", "오렌지 주스"], cfg)
    assert rows == [{"typo": "무선 이어폰 추천", "correct": "무선 이어폰 추천", "errors": [UNCHANGED]},
                    {"typo": "오렌지 주스", "correct": "오렌지 주스", "errors": [UNCHANGED]}]
    nfd = unicodedata.normalize("NFD", "추천")
    assert make_pairs([nfd], cfg)[0]["correct"] == "추천"  # NFC, like the corpus


def test_pairs_do_not_depend_on_order_or_company():
    qs = clean_queries_from_corpus()[:60]
    cfg = DataConfig(typo_seed=3)
    rows = make_pairs(qs, cfg)
    by_query = {q: [r for r in rows if r["correct"] == q] for q in qs}
    assert make_pairs([qs[10]], cfg) == by_query[qs[10]]
    back = make_pairs(list(reversed(qs)), cfg)
    assert sorted(map(json.dumps, back)) == sorted(map(json.dumps, rows))
    for got in by_query.values():
        assert len(got) == 3 and len({r["typo"] for r in got}) == 3  # distinct pairs
        assert sum(r["errors"] == [UNCHANGED] for r in got) <= 1 and all(1 <= len(r["errors"]) <= 2 for r in got)


def test_recipe_rates_are_honoured():
    both = [q for q in clean_queries_from_corpus()
            if all(apply_error(q, k, random.Random(0)) for k in ("vowel", "spacing_drop"))]
    assert len(both) > 150

    def pairs(**kw) -> list[dict]:  # one pair per query: no duplicate is dropped, so nothing skews the shares
        return [r for seed in range(5) for r in make_pairs(both, DataConfig(typo_seed=seed, typo_pairs_per_query=1,
                                                                             **kw))]

    rows = pairs(typo_rates={"spacing_drop": 0.9, "vowel": 0.3}, typo_unchanged=0.2)
    typos = [r for r in rows if r["errors"] != [UNCHANGED]]
    share = {k: sum(k in r["errors"] for r in typos) / len(typos) for k in ("spacing_drop", "vowel")}
    assert 0.85 < share["spacing_drop"] < 0.95 and 0.24 < share["vowel"] < 0.36, share
    assert 0.15 < 1 - len(typos) / len(rows) < 0.25
    assert {e for r in rows for e in r["errors"]} == {"spacing_drop", "vowel", UNCHANGED}  # nothing unasked for
    # rates summing below 1 are scaled up (every pair has an error) in proportion
    rows = pairs(typo_rates={"spacing_drop": 0.3, "vowel": 0.1}, typo_unchanged=0.0)
    assert all(len(r["errors"]) == 1 for r in rows)
    assert 0.68 < sum(r["errors"] == ["spacing_drop"] for r in rows) / len(rows) < 0.82
    # the defaults, on the shipped queries: every type shows up, some pairs have two errors
    rows = make_pairs(clean_queries_from_corpus(), DataConfig())
    counts = Counter(e for r in rows for e in r["errors"])
    assert set(counts) == {*ERROR_TYPES, UNCHANGED}
    assert 0.17 < counts[UNCHANGED] / len(rows) < 0.23
    assert 0.05 < sum(len(r["errors"]) == 2 for r in rows) / len(rows) < 0.4


@pytest.mark.parametrize("values, message", [
    ({"typo_rates": {"vowl": 0.2}}, "unknown error type 'vowl'"),
    ({"typo_rates": {"vowel": 1.5}}, "not a probability"),
    ({"typo_rates": {"vowel": -0.1}}, "not a probability"),
    ({"typo_rates": {"vowel": "high"}}, "not a probability"),
    ({"typo_rates": {"vowel": True}}, "not a probability"),
    ({"typo_rates": 0.3}, "must be a table"),
    ({"typo_rates": {"unchanged": 0.2}}, "typo_unchanged"),
    ({"typo_rates": {"vowel": 0, "keyboard": 0.0}}, "rate > 0"),
    ({"typo_unchanged": 1.2}, "typo_unchanged"),
    ({"typo_pairs_per_query": 0}, "give 1 or more"),
])
def test_bad_recipe_values_are_one_line_errors(values, message):
    with pytest.raises(KollmError, match=re.escape(message)) as e:
        make_pairs(["무선 이어폰"], DataConfig(**values))
    assert "\n" not in str(e.value)


def test_recipe_section_carries_the_rates(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[data]\ntypo_rates = {keyboard = 0.5, loanword = 1}\ntypo_unchanged = 0.1\n")
    cfg = read_recipe(recipe, "data typos", {"data": DataConfig})["data"]
    assert check_typo_config(cfg) == {"keyboard": 0.5, "loanword": 1.0} and cfg.typo_unchanged == 0.1
    recipe.write_text("[data]\ntypo_rates = {keyboard = 2}\n")
    with pytest.raises(KollmError, match="keyboard = 2 is not a probability"):
        check_typo_config(read_recipe(recipe, "data typos", {"data": DataConfig})["data"])


def test_reading_queries(tmp_path):
    (tmp_path / "a.txt").write_text("무선 이어폰 추천\n 캠핑 의자 \n\n무선 이어폰 추천\n", encoding="utf-8")
    rows = [{"typo": "쥬스", "correction": "오렌지 주스", "text": "검색어: 쥬스\n교정: 오렌지 주스"},
            {"product": "수분 토너 300ml", "text": "좋아요. 재구매합니다."},
            {"text": "텀블러\n" + unicodedata.normalize("NFD", "추천")}]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_queries([tmp_path / "a.txt", tmp_path / "b.jsonl"]) == [
        "무선 이어폰 추천", "캠핑 의자", "오렌지 주스", "수분 토너 300ml", "텀블러", "추천"]
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(KollmError, match="empty"):
        read_queries([tmp_path / "empty.txt"])
    (tmp_path / "c.jsonl").write_text('{"title": "x"}\n', encoding="utf-8")
    with pytest.raises(KollmError, match='no string "correction", "product" or "text"'):
        read_queries([tmp_path / "c.jsonl"])


def test_clean_queries_from_the_shipped_corpus():
    qs = clean_queries_from_corpus()
    assert "네일숍 예약" in qs and "네일샵 예약" not in qs  # the correction side, never the typo
    assert "수분결 히알루론 토너 300ml" in qs  # a product name from reviews.jsonl
    assert len(qs) == len(set(qs)) > 500 and all(q == unicodedata.normalize("NFC", q).strip() for q in qs)
    assert not any(q.startswith(("검색어:", "교정:")) for q in qs)


def test_cli_end_to_end(tmp_path):
    data = tmp_path / "q.txt"
    data.write_text("무선 이어폰 추천\n스테인리스 텀블러\n김치찌개 밀키트\n아이폰 15 케이스\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    recipe = tmp_path / "r.toml"
    recipe.write_text("[data]\ntypo_rates = {spacing_drop = 0.6, loanword = 0.6}\ntypo_unchanged = 0.25\n")
    args = ("data", "typos", "--data", str(data), "--out", str(out), "--recipe", str(recipe), "--seed", "5",
            "--pairs-per-query", "2")
    proc = run_kollm(*args)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    cfg = DataConfig(typo_rates={"spacing_drop": 0.6, "loanword": 0.6}, typo_unchanged=0.25, typo_seed=5,
                     typo_pairs_per_query=2)
    assert rows == make_pairs(read_queries([data]), cfg)
    assert {r["correct"] for r in rows} == set(data.read_text(encoding="utf-8").split("\n")) - {""}
    assert {e for r in rows for e in r["errors"]} <= {"spacing_drop", "loanword", UNCHANGED}
    stats = json.loads((tmp_path / "pairs.stats.json").read_text())
    assert stats["pairs"] == len(rows) and stats["errors"]["spacing_drop"] == sum("spacing_drop" in r["errors"]
                                                                                 for r in rows)
    assert f"{len(rows)} pairs" in proc.stdout and "spacing_drop" in proc.stdout
    first = out.read_bytes()
    assert run_kollm(*args).returncode == 0 and out.read_bytes() == first  # deterministic

    recipe.write_text("[data]\ntypo_rates = {vowel = 1.5}\n")
    bad = run_kollm(*args)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "not a probability" in bad.stderr


# ---- the held-out evaluation set ---------------------------------------------------------------------------------
def _heldout() -> list[dict]:
    return [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines()]


def test_heldout_set_is_well_formed():
    rows = _heldout()
    assert len(rows) >= 180
    assert [r["id"] for r in rows] == [f"qh-{i:04d}" for i in range(1, len(rows) + 1)]
    counts = Counter(r["error_type"] for r in rows)
    assert set(counts) == {*ERROR_TYPES, UNCHANGED} and min(counts.values()) >= 12, counts
    assert counts[UNCHANGED] >= 30 and counts[UNCHANGED] / len(rows) >= 0.15
    for r in rows:
        assert set(r) == {"id", "typo", "correct", "error_type"}
        for side in (r["typo"], r["correct"]):
            assert side == unicodedata.normalize("NFC", side).strip() and "  " not in side
        assert 2 <= len(r["correct"].split()) <= 5, r
        assert (r["typo"] == r["correct"]) == (r["error_type"] == UNCHANGED), r
        if r["error_type"] in CHECKS and r["error_type"] not in ("misspelling", "loanword"):
            CHECKS[r["error_type"]](r["typo"], r["correct"])  # each label says what the typo is
    assert len({r["correct"].replace(" ", "") for r in rows}) == len(rows)  # one row per query


def _nospace(s: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFC", s))


def test_heldout_set_is_not_in_any_training_source():
    seen = {_nospace(q) for q in clean_queries_from_corpus()}
    for line in (REPO / "src/kollm/eval/tasks/data/query_correction.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        seen |= {_nospace(r["query"]), _nospace(r["target"])}
    for line in (REPO / "src/kollm/studio/builtin/search-query-correction.jsonl").read_text(encoding="utf-8") \
            .splitlines():
        r = json.loads(line)
        seen |= {_nospace(r["inputs"]["query"]), _nospace(r["expected"])}
    assert len(seen) > 900
    overlap = [r["correct"] for r in _heldout() if _nospace(r["correct"]) in seen]
    assert not overlap, overlap


def test_heldout_file_is_documented():
    readme = (Path(HELDOUT).parent / "README.md").read_text(encoding="utf-8")
    assert "query_correction_heldout.jsonl" in readme

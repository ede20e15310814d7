"""Korean metrics: normalisation edge cases (spacing, NFC/NFD, conjoining jamo, particles, emoji, empty)
and small values worked out by hand."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kollm.metrics import (
    char_edit_distance,
    char_similarity,
    chrf,
    contains,
    exact_match,
    has_pii,
    is_json,
    keywords_present,
    korquad_normalize,
    length_ok,
    macro_f1,
    matches_regex,
    morphemes,
    normalize,
    qa_exact_match,
    qa_f1,
    rouge_l,
)

HANGUK_NFD = unicodedata.normalize("NFD", "한국")  # the same as conjoining jamo: ᄒ ᅡ ᆫ ᄀ ᅮ ᆨ
HAN_JAMO = "\u1112\u1161\u11ab"  # ᄒ + ᅡ + ᆫ


# --- normalisation ---------------------------------------------------------------------------------------
def test_normalize_composes_conjoining_jamo_and_nfd():
    assert HANGUK_NFD == "\u1112\u1161\u11ab\u1100\u116e\u11a8" and len(HANGUK_NFD) == 6
    assert normalize(HAN_JAMO) == "한"
    assert normalize(HANGUK_NFD) == "한국"


def test_normalize_keeps_compatibility_jamo():
    # ㅋㅋ / ㅎㅏㄴ are letters typed on their own (chat laughter, spelled-out jamo), not a syllable.
    assert normalize("ㅋㅋ") == "ㅋㅋ"
    assert normalize("ㅎㅏㄴ") != "한"


def test_normalize_whitespace_and_invisibles():
    assert normalize("  서울\t\n역\u00a0앞\u3000광장  ") == "서울 역 앞 광장"
    assert normalize("서울\u200b역\ufeff") == "서울역"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert normalize(f"가족 {family}") == f"가족 {family}"  # the ZWJs of an emoji sequence survive


def test_invisibles_are_the_corpus_normalisers():
    """One list (data.normalize.INVISIBLE): ZWNJ and the soft hyphen go here as in corpora, so a model trained on
    the cleaned text and a reference copied with them score the same; ZWJ stays in both."""
    from kollm.data.normalize import INVISIBLE, normalize_text

    assert "\u200c" in INVISIBLE and "\u00ad" in INVISIBLE and "\u200d" not in INVISIBLE
    for ch in INVISIBLE:
        assert normalize(f"한{ch}국어") == normalize_text(f"한{ch}국어", html=False) == "한국어"
    assert exact_match("서울\u200c역", "서울역", spacing=True) == 1.0
    assert normalize("a\u200db") == normalize_text("a\u200db", html=False) == "a\u200db"


# --- exact match -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred,ref",
    [("서울 역", "서울역"), ("서울역", " 서 울 역 "), ("아이폰 15 프로", "아이폰15프로"), ("좋아요 👍", "좋아요👍")],
)
def test_exact_match_ignores_spacing_by_default(pred, ref):
    assert exact_match(pred, ref) == 1.0


def test_exact_match_with_spacing():
    assert exact_match("서울 역", "서울역", spacing=True) == 0.0
    assert exact_match("서울  역", " 서울 역", spacing=True) == 1.0


def test_exact_match_nfc_nfd_and_jamo():
    assert exact_match(HANGUK_NFD, "한국") == 1.0
    assert exact_match(HAN_JAMO + "국", "한국", spacing=True) == 1.0
    assert exact_match("한국", "한굴") == 0.0


def test_exact_match_empty():
    assert exact_match("", "") == 1.0
    assert exact_match("", "가") == 0.0
    assert exact_match("   ", "") == 1.0


# --- edit distance ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "a,b,d",
    [
        ("아이폰", "아이펀", 1),  # one syllable, although two jamo differ
        ("하", "한", 1),  # a dropped batchim is one edit, not a jamo edit
        ("kitten", "sitting", 3),
        ("", "갤럭시", 3),
        ("갤럭시", "", 3),
        ("삼성전쟈", "삼성전자", 1),
        ("서울역", "서울 역", 1),  # a space is a character
        ("👍", "👎", 1),
        ("가나다", "가나다", 0),
    ],
)
def test_char_edit_distance(a, b, d):
    assert char_edit_distance(a, b) == d
    assert char_edit_distance(b, a) == d


def test_char_edit_distance_counts_syllables_not_bytes_or_jamo():
    assert char_edit_distance(HANGUK_NFD, "한국") == 0
    assert char_edit_distance("한국", "영국") == 1  # 3 UTF-8 bytes and 2 jamo differ in 한/영


def test_char_similarity():
    assert char_similarity("아이폰", "아이펀") == pytest.approx(2 / 3)
    assert char_similarity("", "") == 1.0
    assert char_similarity("가나", "") == 0.0
    assert char_similarity("가나", "다라") == 0.0


# --- KorQuAD ---------------------------------------------------------------------------------------------
def test_korquad_normalize_follows_official_script():
    assert korquad_normalize("《훈민정음》") == "훈민정음"
    assert korquad_normalize("‘KTX’ (고속철도).") == "ktx 고속철도"
    assert korquad_normalize(HANGUK_NFD) == "한국"


def test_qa_exact_match():
    assert qa_exact_match("《훈민정음》", ["훈민정음"]) == 1.0
    assert qa_exact_match("KTX", "ktx") == 1.0
    assert qa_exact_match("1443년", ["1446년", "1443년"]) == 1.0
    assert qa_exact_match("1444년", ["1446년", "1443년"]) == 0.0
    # The official script keeps single spaces for EM; only its F1 ignores spacing.
    assert qa_exact_match("서울 역", "서울역") == 0.0
    assert qa_f1("서울 역", "서울역") == 1.0


def test_qa_f1_by_hand():
    # chars 세종대왕 vs 세종: 2 shared; P = 2/4, R = 2/2, F1 = 2/3
    assert qa_f1("세종대왕", "세종") == pytest.approx(2 / 3)
    # a bag of characters, not a sequence: order does not matter
    assert qa_f1("종세", "세종") == 1.0
    # particles attached: 학교에 vs 학교: P = 2/3, R = 1, F1 = 0.8
    assert qa_f1("학교에", "학교") == pytest.approx(0.8)
    # the best gold counts
    assert qa_f1("세종대왕", ["이성계", "세종대왕"]) == 1.0
    assert qa_f1("가나", "다라") == 0.0
    assert qa_f1("", "가") == 0.0
    assert qa_f1(HANGUK_NFD, "한국") == 1.0


def test_qa_needs_a_gold():
    with pytest.raises(ValueError, match="gold"):
        qa_f1("가", [])


# --- morphemes, ROUGE-L, chrF ----------------------------------------------------------------------------
def test_morphemes_ignore_spacing_and_punctuation():
    assert morphemes("학교에 갔다") == morphemes("학교 에 갔다") == ["학교", "에", "가", "었", "다"]
    assert morphemes("좋아요.") == morphemes("좋아요")
    assert morphemes("") == morphemes("   ") == []


@pytest.mark.parametrize(
    "a,b",
    [
        ("학교에 갔다", "학교 에 갔다"),
        ("친구랑 밥을 먹었어", "친구 랑 밥 을 먹었어"),
        (HANGUK_NFD + "에 왔다", "한국에 왔다"),
    ],
)
def test_rouge_l_particles_attached_or_not(a, b):
    assert rouge_l(a, b) == 1.0


def test_rouge_l_by_hand():
    # 오늘/날씨/가/좋/어요 vs 내일/날씨/가/흐리/어요: LCS 날씨 가 어요 = 3 of 5 each side, F1 = 0.6
    assert morphemes("오늘 날씨가 좋아요.") == ["오늘", "날씨", "가", "좋", "어요"]
    assert rouge_l("오늘 날씨가 좋아요.", "내일 날씨가 흐려요!") == pytest.approx(0.6)
    # 나/는/사과/를/먹/었/다 vs 나/는/배/를/먹/었/다: LCS 6 of 7, F1 = 6/7
    assert rouge_l("나는 사과를 먹었다", "나는 배를 먹었다") == pytest.approx(6 / 7)


def test_rouge_l_edges():
    assert rouge_l("배송이 빨라요 👍", "배송이 빨라요 👍") == 1.0
    assert rouge_l("", "") == 1.0
    assert rouge_l("", "배송") == 0.0
    assert rouge_l("고양이", "자동차") == 0.0


def test_chrf_by_hand():
    # n=1: hyp {a,b} vs ref {a,b,c}: P 1, R 2/3; n=2: {ab} vs {ab,bc}: P 1, R 1/2; n>=3: hyp too short, skipped.
    # P = 1, R = 7/12; F2 = 5PR / (4P + R) = (35/12) / (55/12) = 7/11
    assert chrf("ab", "abc") == pytest.approx(7 / 11)
    # n=1: P 2/3, R 1; n=2: P 1/2, R 1; P = 7/12, R = 1; F2 = (35/12) / (28/12 + 1) = 0.875
    assert chrf("고양이", "고양") == pytest.approx(0.875)


def test_chrf_edges():
    assert chrf("서울 역", "서울역") == 1.0  # whitespace removed
    assert chrf(HANGUK_NFD, "한국") == 1.0
    assert chrf("가나다", "라마바") == 0.0
    assert chrf("", "") == 1.0
    assert chrf("", "가") == 0.0
    assert chrf("가", "") == 0.0


# (hypothesis, reference): summaries, paraphrases, spacing and particle variants, word-order changes, typos,
# numbers, English and emoji inside Korean, one-syllable sides (effective order < 6), no overlap, identical
CHRF_PAIRS = [
    ("배송이 빠르고 포장이 꼼꼼해요", "배송이 빠르고 포장도 꼼꼼해서 만족스러워요"),
    ("서울은 대한민국의 수도이다", "대한민국의 수도는 서울이다"),
    ("오늘 날씨가 맑습니다", "오늘은 날씨가 아주 맑아요"),
    ("가격 대비 성능이 좋아요", "가성비가 좋은 제품입니다"),
    ("사이즈가 작아서 교환했어요", "사이즈가 생각보다 작아 교환 신청했습니다"),
    ("무선 이어폰 최대 50% 할인", "무선 이어폰 최대 50% 할인 기획전"),
    ("아이폰 15 케이스", "아이폰15 케이스"),
    ("나이키 운동화", "나이키 런닝화"),
    ("삼성 갤럭시 S24 울트라 자급제", "갤럭시 S24 울트라 자급제 삼성"),
    ("색상이 사진과 달라요 😢", "사진이랑 색이 좀 달라요"),
    ("한글은 세종대왕이 창제했다", "한글은 1443년 세종대왕이 창제한 문자이다"),
    ("KTX로 서울에서 부산까지 2시간 30분", "서울에서 부산까지 KTX를 타면 2시간 반 걸린다"),
    ("맛있어요", "맛있습니다"),
    ("가", "가나다"),
    ("고양이", "고양"),
    ("한", "한"),
    ("가나다", "라마바"),
    ("강아지 사료 대용량", "고양이 모래 소용량"),
    ("택배가 하루 만에 도착했어요", "택배가 하루 만에 도착했어요"),
    ("품질은 좋은데 배송이 느려요", "배송은 느리지만 품질은 좋아요"),
    ("Python으로 작은 언어 모델을 학습했다", "파이썬으로 작은 언어모델을 훈련했다"),
    ("겨울 패딩 최대 70% 세일", "겨울 아우터 특가 최대 70%"),
    ("환불 받고 싶어요", "반품하고 환불 요청합니다"),
    ("여름 휴가 필수템 모음전", "여름휴가 필수 아이템 모음"),
    ("재구매 의사 있어요", "재구매할게요"),
    ("", "가"),
    ("가", ""),
]


def test_chrf_equals_sacrebleu_on_korean():
    """The hand-written chrF is sacrebleu's sentence chrF2 (lm-eval ships sacrebleu) on NFC Korean text."""
    import sacrebleu

    assert len(CHRF_PAIRS) >= 20
    for hyp, ref in CHRF_PAIRS:
        theirs = sacrebleu.sentence_chrf(hyp, [ref]).score / 100
        assert chrf(hyp, ref) == pytest.approx(theirs, abs=1e-12), (hyp, ref)


def test_chrf_differs_from_sacrebleu_only_where_intended():
    """Normalised input (NFD, invisible characters) and two empty strings: see chrf's docstring."""
    import sacrebleu

    nfd_hyp, ref = unicodedata.normalize("NFD", "포장이 꼼꼼해요"), "포장도 꼼꼼해서 좋아요"
    assert sacrebleu.sentence_chrf(nfd_hyp, [ref]).score / 100 != pytest.approx(chrf(nfd_hyp, ref))
    assert chrf(nfd_hyp, ref) == pytest.approx(sacrebleu.sentence_chrf("포장이 꼼꼼해요", [ref]).score / 100)
    assert chrf("서울\u200b역", "서울역") == 1.0 and sacrebleu.sentence_chrf("서울\u200b역", ["서울역"]).score < 100
    assert chrf("", "") == 1.0 and sacrebleu.sentence_chrf("", [""]).score == 0.0


# --- macro-F1 (multiple-choice tasks) ---------------------------------------------------------------------
def test_macro_f1_by_hand():
    # class 0: TP 2, FP 1, FN 0 -> 4/5; class 1: TP 1, FP 0, FN 1 -> 2/3; mean 11/15
    assert macro_f1([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert macro_f1([0, 1, 2], [0, 1, 2]) == 1.0
    assert macro_f1(["부정", "긍정"], ["긍정", "부정"]) == 0.0


def test_macro_f1_class_never_predicted_scores_zero():
    """Always answering 긍정 (1) on balanced data: accuracy 0.5, but class 0 (never predicted) has F1 0, so the
    mean is (0 + 2/3) / 2 = 1/3."""
    golds, preds = [0, 1, 0, 1], [1, 1, 1, 1]
    assert macro_f1(golds, preds) == pytest.approx(1 / 3)
    # a gold class missing from the predictions of a 3-way task: (1 + 1 + 0) / 3
    assert macro_f1([0, 1, 2], [0, 1, 1]) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_macro_f1_classes_default_to_those_seen_and_labels_widen_them():
    # only classes 0 and 1 occur: a 7-way task scored on 2 items is averaged over those 2 (scikit-learn's rule)
    assert macro_f1([0, 1], [0, 1]) == 1.0
    assert macro_f1([0, 1], [0, 1], labels=range(4)) == pytest.approx(0.5)


def test_macro_f1_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        macro_f1([], [])
    with pytest.raises(ValueError, match="one prediction per gold"):
        macro_f1([0, 1], [0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30))
def test_macro_f1_equals_scikit_learn(pairs):
    """The number lm-eval's kobest_* tasks report (sklearn f1_score, average="macro")."""
    import warnings

    from sklearn.metrics import f1_score

    golds, preds = [g for g, _ in pairs], [p for _, p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when a class is never predicted; it scores it 0 as we do
        want = f1_score(golds, preds, average="macro")
    assert macro_f1(golds, preds) == pytest.approx(want)


def test_lm_eval_aggregation_takes_numpy_pairs():
    """lm-eval's multiple_choice scoring gives each item as (gold index, numpy argmax)."""
    import numpy as np

    from kollm.eval.tasks.utils import macro_f1_score

    items = [(0, np.int64(1)), (1, np.int64(1)), (0, np.int64(1)), (1, np.int64(1))]
    assert macro_f1_score(items) == pytest.approx(1 / 3)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12))
def test_character_scores_in_unit_interval(a, b):
    for score in (char_similarity(a, b), chrf(a, b), qa_f1(a, b), qa_exact_match(a, b), exact_match(a, b)):
        assert 0.0 <= score <= 1.0
    assert char_similarity(a, a) == 1.0


@settings(max_examples=25, deadline=None)
@given(
    st.text(alphabet="가나다라마 은는이가을를에서 .!", max_size=15), st.text(alphabet="가나다라 은는을에 ", max_size=15)
)
def test_rouge_l_in_unit_interval(a, b):
    assert 0.0 <= rouge_l(a, b) <= 1.0


# --- reference-free checks -------------------------------------------------------------------------------
def test_length_ok_counts_nfc_characters():
    assert len(HANGUK_NFD) == 6
    assert length_ok(HANGUK_NFD, 2, 2)
    assert length_ok("  한국  ", 2, 2)  # the ends are stripped
    assert not length_ok("한국", 3, 10)
    assert not length_ok("한국어", 0, 2)
    assert length_ok("", 0, 0)


def test_keywords_present():
    assert keywords_present("지금 무료배송 이벤트", ["무료 배송", "이벤트"])
    assert keywords_present("IPHONE 특가", ["iPhone"])
    assert keywords_present("한국 여행 특가", [HANGUK_NFD])
    assert not keywords_present("지금 무료배송", ["무료배송", "1+1"])
    assert keywords_present("아무 글", [])


@pytest.mark.parametrize(
    "text",
    [
        "문의는 010-1234-5678로 주세요",
        "hong.gildong@example.com 으로 보내 주세요",
        "고객센터 1588-1234",
        "연락처 ０１０－１２３４－５６７８",  # full-width digits
    ],
)
def test_has_pii_positive(text):
    assert has_pii(text)


@pytest.mark.parametrize(
    "text",
    ["봄맞이 무선 청소기 최대 30% 할인, 19,900원부터!", "2024년 12월 25일 단 하루", "", "아이폰 15 프로 256GB"],
)
def test_has_pii_negative(text):
    assert not has_pii(text)


# --- Studio assertions -----------------------------------------------------------------------------------
def test_contains():
    assert contains("배송이 정말 빨라요", "정말 빨라")
    assert not contains("배송이 정말빨라요", "정말 빨라")
    assert contains("배송이 정말빨라요", "정말 빨라", spacing=False)
    assert contains(HANGUK_NFD + " 여행", "한국")
    assert contains("아무 글", "")


def test_matches_regex():
    assert matches_regex("가격은 19,900원입니다", r"\d{1,3}(,\d{3})*원")
    assert not matches_regex("가격 미정", r"\d+원")
    assert matches_regex(HANGUK_NFD + "어", r"^한국")  # NFD text is matched as NFC
    assert matches_regex("한국어", unicodedata.normalize("NFD", "^한국"))  # and so is an NFD pattern


@pytest.mark.parametrize("pattern", ["(", "[가-", "*원"])
def test_matches_regex_bad_pattern(pattern):
    with pytest.raises(ValueError, match="invalid regular expression") as e:
        matches_regex("아무 글", pattern)
    assert repr(pattern) in str(e.value) and "position" in str(e.value)


@pytest.mark.parametrize(
    "text,ok",
    [
        ('{"요약": "배송이 빠름", "점수": 5}', True),
        ('  ["가", "나"]\n', True),
        ('"문자열"', True),
        ("3.5", True),
        ('{"요약": "배송이 빠름"', False),
        ("{'요약': 1}", False),  # single quotes are Python, not JSON
        ("NaN", False),
        ('{"x": Infinity}', False),
        ('```json\n{"a": 1}\n```', False),
        ("", False),
    ],
)
def test_is_json(text, ok):
    assert is_json(text) is ok

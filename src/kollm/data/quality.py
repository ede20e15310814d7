"""Data step: Korean language and quality filters.

The repetition, punctuation, word-length and stop-word rules are datatrove's Gopher and FineWeb
filters with FineWeb-2's thresholds for Korean (`kor_Hang.yml`); "words" there are Kiwi morphemes,
as in FineWeb-2. datatrove's own Korean tokenizer asks for a Kiwi model that kiwipiepy 0.24 no
longer ships, so kollm passes its own (below). The Hangul share, length bounds and spam list are
kollm's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.word_tokenizers import WordTokenizer

from kollm.kiwi import kiwi

# FineWeb-2, configs/kor_Hang.yml
KOR_HANG = {
    "dup_line_frac": 0.374,
    "top_n_grams": ((2, 0.282), (3, 0.228), (4, 0.185)),
    "dup_n_grams": ((5, 0.201), (6, 0.184), (7, 0.168), (8, 0.154), (9, 0.14), (10, 0.127)),
    "line_punct_thr": 0.062,
    "new_line_ratio": 0.196,
    "min_avg_word_length": 1,
    "max_avg_word_length": 6,
    "max_non_alpha_words_ratio": 0.791,
    "stop_words": ["의", "다", "이", "는", "에", "을", "한", "년", "하", "은", "를", "했", "고", "에서", "가", "있",
                   "으로", "인", "월", "로", "되"],
}

# Words that mark gambling, adult and loan spam in Korean web text; one or two can be innocent
# (a news story about 도박), so a document is spam only with `spam_min_hits` distinct ones.
SPAM_WORDS = (
    "카지노", "바카라", "토토사이트", "먹튀", "슬롯머신", "홀덤", "온라인바둑이", "사설토토", "꽁머니",
    "야동", "성인용품", "출장안마", "출장마사지", "조건만남", "폰팅", "무료충전",
    "작업대출", "무직자대출", "당일대출", "신용불량자대출", "급전", "대출문의",
    "비아그라", "시알리스", "흥신소", "카톡문의", "텔레그램문의", "수익보장", "원금보장",
)
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")


class KiwiWords(WordTokenizer):
    """Kiwi morphemes as datatrove "words"; the last text is remembered since three filters ask."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[str, list] | None = None

    def _tokens(self, text: str) -> list:
        if self._last is None or self._last[0] is not text:
            # very long digit runs make Kiwi slow and say nothing about the language
            self._last = (text, kiwi().tokenize(re.sub(r"[0-9,]{20,}", " ", text)))
        return self._last[1]

    def word_tokenize(self, text: str) -> list[str]:
        return [t.form for t in self._tokens(text) if t.form.strip()]

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.text for s in kiwi().split_into_sents(text)]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(s.start, s.end) for s in kiwi().split_into_sents(text)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}


def hangul_share(text: str) -> float:
    letters = len(_LETTER.findall(text))
    return len(_HANGUL.findall(text)) / letters if letters else 0.0


@dataclass
class QualityRules:
    min_chars: int = 200
    max_chars: int = 1_000_000
    min_hangul_share: float = 0.3  # of letters; Korean pages quote English UI terms and names
    spam_words: tuple[str, ...] = SPAM_WORDS
    spam_min_hits: int = 3
    fineweb2: bool = True  # the Gopher/FineWeb filters with kor_Hang thresholds
    thresholds: dict = field(default_factory=lambda: dict(KOR_HANG))


def build_checks(rules: QualityRules) -> list[tuple[str, Callable]]:
    """(name, check) pairs; a check returns True to keep or (False, reason)."""
    checks: list[tuple[str, Callable]] = []

    def length(doc) -> bool | tuple[bool, str]:  # noqa: ANN001 - a datatrove Document
        n = len(doc.text)
        if n < rules.min_chars:
            return False, "too_short"
        return (False, "too_long") if n > rules.max_chars else True

    def hangul(doc) -> bool | tuple[bool, str]:  # noqa: ANN001
        return True if hangul_share(doc.text) >= rules.min_hangul_share else (False, "low_hangul_share")

    def spam(doc) -> bool | tuple[bool, str]:  # noqa: ANN001
        squashed = doc.text.replace(" ", "")  # spammers space words out to dodge lists
        hits = sum(1 for w in rules.spam_words if w in squashed)
        return (False, "spam_words") if hits >= rules.spam_min_hits else True

    checks += [("length", length), ("hangul", hangul), ("spam", spam)]
    if rules.fineweb2:
        t, words = rules.thresholds, KiwiWords()
        rep = GopherRepetitionFilter(
            dup_line_frac=t["dup_line_frac"], top_n_grams=t["top_n_grams"], dup_n_grams=t["dup_n_grams"],
            language=words,
        )
        fw = FineWebQualityFilter(
            line_punct_thr=t["line_punct_thr"], new_line_ratio=t["new_line_ratio"], language=words
        )
        gq = GopherQualityFilter(
            min_avg_word_length=t["min_avg_word_length"], max_avg_word_length=t["max_avg_word_length"],
            max_non_alpha_words_ratio=t["max_non_alpha_words_ratio"], stop_words=t["stop_words"], language=words,
        )
        checks += [("gopher_rep", rep.filter), ("fineweb", fw.filter), ("gopher", gq.filter)]
    return checks

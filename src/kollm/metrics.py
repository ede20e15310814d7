"""Korean text metrics shared by tuning (validation), the few-shot tasks (lm-eval) and the Studio test sets.

Every function is pure and takes raw strings; Korean text is normalised to NFC here, at the boundary,
so NFD input or conjoining jamo ("\u1112\u1161\u11ab") score the same as precomposed syllables ("한").
Scores are floats in [0, 1] (1 = perfect; `macro_f1` takes class labels, not text); checks (length, keywords,
PII, contains, regex, JSON) are bools.
Where both sides are empty after normalisation, the similarity scores call them identical (1.0), except the
KorQuAD F1, which keeps the official script's behaviour (0.0).
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

from kollm.data.normalize import INVISIBLE
from kollm.kiwi import kiwi

# Characters that render as nothing but break exact comparisons: the corpus normaliser's list (ZWJ stays).
_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))


def normalize(text: str) -> str:
    """NFC (which also composes conjoining jamo into syllables), invisible characters dropped,
    every run of whitespace (tabs, newlines, NBSP, ideographic space) made one space, ends stripped."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return " ".join(text.split())


def _nospace(text: str) -> str:
    return "".join(normalize(text).split())


def exact_match(pred: str, ref: str, spacing: bool = False) -> float:
    """1.0 if equal after `normalize`, else 0.0. Korean spacing (띄어쓰기) varies between writers
    ("서울 역" / "서울역"), so by default spaces are ignored; `spacing=True` makes them count."""
    if spacing:
        return float(normalize(pred) == normalize(ref))
    return float(_nospace(pred) == _nospace(ref))


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edits (insert, delete, substitute one item) that turn sequence a into b."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))  # two rows suffice: O(len(b)) memory
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_edit_distance(pred: str, ref: str) -> int:
    """Levenshtein distance over NFC characters (a Hangul syllable is one character, not 3 bytes or 2-3 jamo).
    Both sides are `normalize`d first, so a space is a character but a run of spaces is one."""
    return levenshtein(normalize(pred), normalize(ref))


def cer(pred: str, ref: str) -> float:
    """Character error rate, as OCR and speech recognition report it: `char_edit_distance` / the reference's
    length after `normalize` (a line break and a space are the same character). 0 is perfect; it can pass 1
    when the prediction is much longer than the reference. An empty reference scores 0 against an empty
    prediction, else 1."""
    n = len(normalize(ref))
    if n == 0:
        return 0.0 if not normalize(pred) else 1.0
    return char_edit_distance(pred, ref) / n


def char_similarity(pred: str, ref: str) -> float:
    """1 - distance / max(len) in [0, 1]; two empty strings are identical (1.0)."""
    longest = max(len(normalize(pred)), len(normalize(ref)))
    return 1.0 if longest == 0 else 1.0 - char_edit_distance(pred, ref) / longest


# --- KorQuAD 1.0 ---------------------------------------------------------------------------------------
# Mirrors the official KorQuAD 1.0 script (evaluate-v1.0.py from korquad.github.io, itself adapted from the
# SQuAD v1.1 script; copies read at github.com/nojiyoon/korbert_finetuning/evaluate-v1.0.py and
# github.com/nakjun/Llama-3.2-1B-Instruct-KorQuAD-Finetune/evaluate-v1.0.py):
#   normalize_answer: the quote/bracket marks ' " 《 》 < > 〈 〉 ( ) ‘ ’ become spaces, then lower(),
#     then every ASCII `string.punctuation` character is deleted, then whitespace is collapsed to single spaces;
#   exact match: the normalised strings are equal (single spaces still count there);
#   F1: over the bag of characters of the normalised strings with whitespace removed (Counter intersection,
#     not a longest common subsequence); 0 when nothing is shared;
#   both are the max over the gold answers.
# The one addition here is NFC first, so NFD or jamo-composed input is not penalised.
_KORQUAD_MARKS = str.maketrans(dict.fromkeys("'\"《》<>〈〉()‘’", " "))
_ASCII_PUNCT = str.maketrans("", "", string.punctuation)


def korquad_normalize(text: str) -> str:
    """The official KorQuAD 1.0 `normalize_answer` (after NFC)."""
    text = unicodedata.normalize("NFC", text).translate(_KORQUAD_MARKS).lower().translate(_ASCII_PUNCT)
    return " ".join(text.split())


def _korquad_f1(pred: str, gold: str) -> float:
    p = list(korquad_normalize(pred).replace(" ", ""))
    g = list(korquad_normalize(gold).replace(" ", ""))
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _golds(golds: str | Iterable[str]) -> list[str]:
    out = [golds] if isinstance(golds, str) else list(golds)
    if not out:
        raise ValueError("need at least one gold answer")
    return out


def qa_exact_match(pred: str, golds: str | Iterable[str]) -> float:
    """KorQuAD 1.0 exact match: 1.0 if `pred` equals any gold answer after `korquad_normalize`."""
    p = korquad_normalize(pred)
    return float(any(p == korquad_normalize(g) for g in _golds(golds)))


def qa_f1(pred: str, golds: str | Iterable[str]) -> float:
    """KorQuAD 1.0 character F1 in [0, 1], the best over the gold answers."""
    return max(_korquad_f1(pred, g) for g in _golds(golds))


# --- morpheme / character overlap -----------------------------------------------------------------------
# Sentence punctuation and brackets carry no content; "좋아요." and "좋아요" should summarise the same.
_DROP_TAGS = frozenset({"SF", "SP", "SS", "SSO", "SSC", "SE", "SO"})


def morphemes(text: str) -> list[str]:
    """Kiwi morpheme forms of `text`, punctuation dropped. Whitespace does not matter to the analysis,
    so "학교에" and "학교 에" both give ["학교", "에"]."""
    text = normalize(text)
    if not text:
        return []
    return [t.form for t in kiwi().tokenize(text) if t.tag not in _DROP_TAGS]


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 (longest common subsequence) over Kiwi morphemes, in [0, 1].
    Whitespace words would count "학교에" and "학교 에" as different; morphemes do not."""
    p, r = morphemes(pred), morphemes(ref)
    if not p and not r:
        return 1.0
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _char_ngrams(text: str, n: int) -> Counter:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(pred: str, ref: str, order: int = 6, beta: float = 2.0) -> float:
    """chrF in [0, 1] (sacrebleu's score / 100): character 1..6-gram precision and recall, whitespace removed,
    each averaged over the orders both sides are long enough for (sacrebleu 2.x's "effective order"),
    then combined as F-beta with beta = 2 (recall weighs more).

    Equal to `sacrebleu.sentence_chrf(pred, [ref]).score / 100` (chrF2: char order 6, word order 0, no
    whitespace, no eps smoothing; tests/test_metrics.py checks it on Korean pairs) except, on purpose:
    both sides are normalised first (NFC, invisible characters dropped), so NFD text or conjoining jamo score
    like their precomposed form where sacrebleu sees other characters; and two empty strings score 1.0 (this
    module's rule for identical texts) where sacrebleu gives 0."""
    hyp, gold = _nospace(pred), _nospace(ref)
    if not hyp and not gold:
        return 1.0
    precisions, recalls = [], []
    for n in range(1, order + 1):
        h, g = _char_ngrams(hyp, n), _char_ngrams(gold, n)
        if not h or not g:
            continue
        match = sum((h & g).values())
        precisions.append(match / sum(h.values()))
        recalls.append(match / sum(g.values()))
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if p + r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (beta**2 * p + r)


# --- classification (multiple-choice tasks) ----------------------------------------------------------------
def macro_f1(golds: Sequence[Hashable], preds: Sequence[Hashable],
             labels: Iterable[Hashable] | None = None) -> float:
    """Unweighted mean over classes of F1 = 2TP / (2TP + FP + FN), in [0, 1].

    The classes are `labels`, or else every class that occurs as a gold or a prediction: scikit-learn's
    `f1_score(average="macro")`, which lm-eval's KoBEST tasks (and so Polyglot-Ko's published COPA F1) use. A
    class with gold items that is never predicted scores 0 and pulls the mean down: that is the point, a model
    that always answers "긍정" gets accuracy 0.5 on balanced data but macro-F1 1/3. A class with no gold, no
    prediction (only possible through `labels`) also scores 0, as scikit-learn's zero_division default does.
    """
    if len(golds) != len(preds):
        raise ValueError(f"macro_f1 needs one prediction per gold label (got {len(golds)} golds, {len(preds)} preds)")
    if not golds:
        raise ValueError("macro_f1 needs at least one item")
    classes = list(dict.fromkeys(labels)) if labels is not None else list(dict.fromkeys([*golds, *preds]))
    tp: Counter = Counter(g for g, p in zip(golds, preds, strict=True) if g == p)
    gold_n, pred_n = Counter(golds), Counter(preds)
    # 2TP + FP + FN = (TP + FP) + (TP + FN) = predicted + gold count of the class
    scores = [2 * tp[c] / (pred_n[c] + gold_n[c]) if pred_n[c] + gold_n[c] else 0.0 for c in classes]
    return sum(scores) / len(scores) if scores else 0.0


# --- reference-free checks (promotion copy) -------------------------------------------------------------
def length_ok(text: str, min_chars: int, max_chars: int) -> bool:
    """`min_chars` <= number of characters after `normalize` (spaces included) <= `max_chars`."""
    return min_chars <= len(normalize(text)) <= max_chars


def keywords_present(text: str, keywords: Iterable[str]) -> bool:
    """Every keyword occurs in `text`, ignoring spacing, Unicode form and Latin case
    ("무료 배송" is found in "무료배송", "iPhone" in "IPHONE")."""
    hay = _nospace(text).casefold()
    return all(_nospace(k).casefold() in hay for k in keywords)


def has_pii(text: str) -> bool:
    """True if kollm's PII detectors (RRN, phone, e-mail, card, business/bank number) find anything."""
    # Imported here: the kollm.data package pulls in the corpus pipeline, which a metric user does not need.
    from kollm.data.pii import mask_pii

    counts: Counter = Counter()
    mask_pii(normalize(text), counts)
    return sum(counts.values()) > 0


# --- Studio assertions ----------------------------------------------------------------------------------
def contains(pred: str, needle: str, spacing: bool = True) -> bool:
    """`needle` occurs in `pred` after `normalize`; with `spacing=False` spaces are ignored on both sides."""
    if spacing:
        return normalize(needle) in normalize(pred)
    return _nospace(needle) in _nospace(pred)


def matches_regex(pred: str, pattern: str) -> bool:
    """`re.search(pattern, pred)` on NFC text. A pattern that does not compile raises ValueError."""
    try:
        compiled = re.compile(unicodedata.normalize("NFC", pattern))
    except re.error as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e.msg} at position {e.pos}") from e
    return compiled.search(normalize(pred)) is not None


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN/Infinity, which JSON (RFC 8259) does not.
    raise ValueError(f"{name} is not valid JSON")


def is_json(pred: str) -> bool:
    """`pred` (surrounding whitespace aside) is one valid JSON value: strict, no code fences, no NaN."""
    try:
        json.loads(pred.strip(), parse_constant=_reject_constant)
    except ValueError:  # json.JSONDecodeError is a ValueError
        return False
    return True

"""Hangul as typed: syllables <-> jamo, the 2-beolsik (두벌식) keyboard on QWERTY keys, and switching text typed in
the wrong keyboard mode back (`dkdlvhs` -> 아이폰, `ㅑㅔㅁㅇ` -> ipad).

One place for this, used by typo synthesis (data/typos.py makes the slips) and by query correction (which undoes
keyboard-mode slips before the model sees the query: a 270M model cannot learn the QWERTY-to-jamo arithmetic from
a few thousand pairs, and the arithmetic is exact). Hangul syllables are split and built with the Unicode
arithmetic (U+AC00 + (initial*21 + vowel)*28 + final); no jamo library is needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# ---- Hangul syllables <-> jamo (compatibility jamo, U+3131..) ----------------------------------------------------
CHO = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
JUNG = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
JONG = ("", *"ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ")
_BASE, _LAST = 0xAC00, 0xD7A3


def decompose(ch: str) -> tuple[str, str, str] | None:
    """(initial, vowel, final or "") of a Hangul syllable; None for anything else."""
    code = ord(ch) - _BASE
    if not 0 <= code <= _LAST - _BASE:
        return None
    return CHO[code // 588], JUNG[code % 588 // 28], JONG[code % 28]


def compose(cho: str, jung: str, jong: str = "") -> str:
    return chr(_BASE + (CHO.index(cho) * 21 + JUNG.index(jung)) * 28 + JONG.index(jong))


def is_syllable(ch: str) -> bool:
    return _BASE <= ord(ch) <= _LAST


# ---- the 2-beolsik layout on the QWERTY keys ---------------------------------------------------------------------
QWERTY = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
BEOLSIK = ("ㅂㅈㄷㄱㅅㅛㅕㅑㅐㅔ", "ㅁㄴㅇㄹㅎㅗㅓㅏㅣ", "ㅋㅌㅊㅍㅠㅜㅡ")
KEY_JAMO = {k: j for keys, jamo in zip(QWERTY, BEOLSIK, strict=True) for k, j in zip(keys, jamo, strict=True)}
KEY_JAMO |= {"Q": "ㅃ", "W": "ㅉ", "E": "ㄸ", "R": "ㄲ", "T": "ㅆ", "O": "ㅒ", "P": "ㅖ"}  # with Shift
JAMO_KEY = {j: k for k, j in KEY_JAMO.items()}
# Jamo typed as two keys: compound vowels and compound finals.
SPLIT = {"ㅘ": "ㅗㅏ", "ㅙ": "ㅗㅐ", "ㅚ": "ㅗㅣ", "ㅝ": "ㅜㅓ", "ㅞ": "ㅜㅔ", "ㅟ": "ㅜㅣ", "ㅢ": "ㅡㅣ",
         "ㄳ": "ㄱㅅ", "ㄵ": "ㄴㅈ", "ㄶ": "ㄴㅎ", "ㄺ": "ㄹㄱ", "ㄻ": "ㄹㅁ", "ㄼ": "ㄹㅂ", "ㄽ": "ㄹㅅ", "ㄾ": "ㄹㅌ",
         "ㄿ": "ㄹㅍ", "ㅀ": "ㄹㅎ", "ㅄ": "ㅂㅅ"}
JOIN = {v: k for k, v in SPLIT.items()}


def to_keys(text: str) -> str:
    """The QWERTY keys typed for `text` on a 2-beolsik keyboard (아이폰 -> dkdlvhs); other characters stay."""
    out = []
    for ch in text:
        parts = decompose(ch)
        jamo = "".join(parts) if parts else ch
        for j in jamo:
            out.append("".join(JAMO_KEY[x] for x in SPLIT.get(j, j)) if j in JAMO_KEY or j in SPLIT else j)
    return "".join(out)


def from_keys(text: str) -> str:
    """What a 2-beolsik IME shows for these keys (dkdlvhs -> 아이폰, iphone -> ㅑㅔㅙㅜㄷ): letters become jamo and
    are composed into syllables; a consonant after a vowel is held as a final until the next key shows whether it
    starts the next syllable (가+ㄴ+ㅏ = 가나); characters that are not letters end the syllable and stay."""
    out: list[str] = []
    cho = jung = jong = ""

    def flush() -> None:
        nonlocal cho, jung, jong
        out.append(compose(cho, jung, jong) if cho and jung else cho + jung)  # a lone jamo stays as it is
        cho = jung = jong = ""

    for ch in text:
        j = KEY_JAMO.get(ch) or (KEY_JAMO.get(ch.lower()) if ch.isascii() else None)  # Shift+A is still ㅁ
        if j is None:
            flush()
            out.append(ch)
        elif j in JUNG:
            if jong:  # the final moves on to start this vowel's syllable (a compound final gives up its second part)
                keep, move = SPLIT[jong] if jong in SPLIT else ("", jong)
                jong = keep
                flush()
                cho, jung = move, j
            elif jung and jung + j in JOIN:
                jung = JOIN[jung + j]
            elif cho and not jung:
                jung = j
            else:
                flush()
                jung = j
        elif cho and jung and not jong and j in JONG:
            jong = j
        elif jong and jong + j in JOIN:
            jong = JOIN[jong + j]
        else:
            flush()
            cho = j
    flush()
    return "".join(out)


def neighbours(key: str) -> list[str]:
    """Keys touching `key` on a staggered QWERTY board (each row sits half a key right of the one above)."""
    for r, row in enumerate(QWERTY):
        i = row.find(key.lower())
        if i < 0:
            continue
        near = [(r, i - 1), (r, i + 1), (r - 1, i), (r - 1, i + 1), (r + 1, i - 1), (r + 1, i)]
        got = [QWERTY[rr][ii] for rr, ii in near if 0 <= rr < 3 and 0 <= ii < len(QWERTY[rr])]
        return [k.upper() if key.isupper() else k for k in got]  # Shift still held
    return []


# ---- text typed in the wrong keyboard mode -----------------------------------------------------------------------
LONE_JAMO = re.compile(r"[ㄱ-ㅣ]")  # a jamo no syllable took: what Korean mode shows for most English keys
_LATIN = re.compile(r"[A-Za-z]{2,}")
_HANGUL = re.compile(r"[가-힣ㄱ-ㅣ]+")


def mode_switches(text: str) -> list[tuple[int, int, str]]:
    """Spans of `text` that may have been typed in the wrong keyboard mode, with what the other mode shows for the
    same keys, as (start, end, switched), in order. A Latin run is a candidate when it is not all capitals and its
    keys compose into whole syllables (most English words leave lone jamo: usb -> ㅕ뉴); a Hangul run when it holds
    a lone jamo, which Korean typed right never does (ㅑㅔㅁㅇ -> ipad, 1ㅏㅎ -> 1kg). Whether to switch is for a
    language model to say (`switch_keyboard_mode`): `sk` composes into 나, and 챈 is cos typed in Korean mode."""
    spans = []
    for m in _LATIN.finditer(text):
        if m.group().isupper():  # an acronym (QHD, LED): Korean in English mode is lowercase but for Shift-jamo
            continue
        hangul = from_keys(m.group())
        if not LONE_JAMO.search(hangul):
            spans.append((m.start(), m.end(), hangul))
    for m in _HANGUL.finditer(text):
        if LONE_JAMO.search(m.group()):
            spans.append((m.start(), m.end(), to_keys(m.group()).lower()))  # the case the user meant is lost
    return sorted(spans)


def _switched(text: str, spans: list[tuple[int, int, str]]) -> str:
    for start, end, alt in reversed(spans):  # from the last span back, so the earlier spans' offsets still hold
        text = text[:start] + alt + text[end:]
    return text


def switch_candidates(text: str) -> list[str]:
    """The texts a language model scores, in one batch, for `pick_switches`: `text`, `text` with each
    `mode_switches` span switched alone, and, where there are several spans, all of them switched (a query typed
    whole in the wrong mode: each word alone, among the others still unswitched, may not read likelier)."""
    spans = mode_switches(text)
    alone = [_switched(text, [span]) for span in spans]
    return [text, *alone, *([_switched(text, spans)] if len(spans) > 1 else [])]


def pick_switches(text: str, scores: list[float], margin: float = 0.0) -> str:
    """`text` as switched by the scores of its `switch_candidates`: all spans when switching all of them reads
    likelier than `text` and than any one switched alone; otherwise each span whose switch alone reads likelier
    than `text` by more than `margin` nats."""
    spans = mode_switches(text)
    n = len(spans) + (len(spans) > 1)
    if len(scores) != n + 1:
        raise ValueError(f"{len(scores)} scores for {n + 1} candidates")
    if len(spans) > 1 and scores[-1] > max(scores[:-1]) + margin:
        return _switched(text, spans)
    alone = scores[1:len(spans) + 1]
    return _switched(text, [span for span, score in zip(spans, alone, strict=True) if score > scores[0] + margin])


def switch_keyboard_mode(text: str, logprob: Callable[[list[str]], list[float]], margin: float = 0.0) -> str:
    """`text` with its keyboard-mode slips switched back where the language model agrees: `logprob` scores a list
    of texts (log-probability of each whole text, nats), e.g. an in-process model (tune/validate.py:
    text_logprobs) or a server's echoed prompt logprobs (studio/client.py: text_logprobs)."""
    candidates = switch_candidates(text)
    return text if len(candidates) == 1 else pick_switches(text, logprob(candidates), margin)

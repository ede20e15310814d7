"""Mask Korean personal data with placeholder tokens (`<|rrn|>`, `<|phone|>`, ...), or for people with labels
(`[전화번호]`, ...).

Patterns run on a copy of the text where full-width digits and separators are folded to ASCII;
folding keeps every character at its index, so the spans found on the copy are cut from the original.
Checksums (Luhn for cards, the NTS weights for business numbers, the RRN check digit) decide
ambiguous bare digit runs; where a number has no checksum (RRNs issued from October 2020, bank
accounts) its layout or a nearby keyword has to vouch for it.

Corpus masking (`mask_pii`) wants precision: a date or a price masked by mistake is lost training text. What a
served model shows people (`people_spans`, `mask_for_people`) wants the opposite: when in doubt, mask. There a long
digit run no rule recognises is hidden too, and so is a shorter one cut by the edge of an output (the length
limit, or digits continuing a number the prompt began), since a cut number escapes every pattern above.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date

from kollm.special_tokens import PII_LABELS, PII_PLACEHOLDERS, UNSURE_PII_LABEL

RRN, PHONE, EMAIL, CARD, BRN, ACCOUNT = PII_PLACEHOLDERS

# Full-width digits/hyphen/space/plus/parentheses/dot -> ASCII, one character for one character.
_FOLD = str.maketrans(
    "０１２３４５６７８９－‐‑‒–—−　＋（）．＠",
    "0123456789------- +().@",
)

_D = r"(?<!\d)(?<!\d[-.])"  # no digit (or digit-) directly before
_E = r"(?![\d])(?!-\d)"  # no digit (or -digit) directly after: never cut a longer number in two
_S = r"[ \-.]?"  # one optional separator: hyphen, space or dot

_RRN_RE = re.compile(rf"{_D}(\d{{2}})(\d{{2}})(\d{{2}})(\s?-\s?|\s)?([1-8])(\d{{5}}|\*{{5}})(\d|\*)(?![\d*])")
_CARD_RE = re.compile(
    rf"{_D}(?:\d{{4}}([ \-])\d{{4}}\1\d{{4}}\1\d{{4}}(?:\1\d{{1,3}})?"  # 16(-19) digits in fours
    rf"|\d{{4}}([ \-])\d{{6}}\2\d{{4,5}}"  # Amex 4-6-5 and Diners 4-6-4
    rf"|[2-69]\d{{12,18}}){_E}"  # bare 13-19 digits starting with an issuer digit
)
_BRN_RE = re.compile(rf"{_D}(\d{{3}})([ \-]?)(\d{{2}})\2(\d{{5}}){_E}")
_PHONE_RE = re.compile(
    rf"{_D}(?:"
    rf"(?:\+82[ \-]?(?:\(0\)[ \-]?)?0?|\(0?)"  # +82 or an opening parenthesis around the area code
    rf"(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70|50[2-8])\)?{_S}\d{{3,4}}{_S}\d{{4}}"
    rf"|0(?:1[016789]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70|50[2-8])(?:\)|{_S})\d{{3,4}}{_S}\d{{4}}"
    rf"|1(?:5[4-9]|6[0-9]|8[0-9])\d-\d{{4}}"  # nationwide numbers: 1588-1234, 1644-, 1800-
    rf"){_E}"
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?![A-Za-z0-9.-]*[A-Za-z0-9])"  # not \b: Hangul right after the address (…com입니다) is a word char
)
# Bank accounts have no checksum. These hyphen layouts are each used by a big bank and by little else
# (6-2-6 KB, 3-3-6 Shinhan, 4-3-6 Woori, 3-6-5 Hana, 3-4-4-2 NH, 4-2-7 Kakao, 3-6-2-3 IBK);
# any other 10-14 digit hyphenated run needs a banking word just before it.
_ACCOUNT_LAYOUTS = {(6, 2, 6), (3, 3, 6), (4, 3, 6), (3, 6, 5), (3, 4, 4, 2), (4, 2, 7), (3, 6, 2, 3), (3, 2, 6)}
_ACCOUNT_RE = re.compile(rf"{_D}\d{{2,6}}(?:-\d{{2,7}}){{2,3}}{_E}")
_BANK_WORDS = re.compile(
    r"(계좌|입금|송금|이체|예금주|은행|뱅크|농협|국민|신한|우리|하나|기업|카카오|토스|새마을|우체국|수협|신협|씨티|SC제일)"
)
_RRN_WORDS = re.compile(r"(주민|등록번호|생년월일)")
_BRN_WORDS = re.compile(r"(사업자|등록번호|법인)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _rrn_check(digits: str) -> bool:
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    s = sum(int(d) * w for d, w in zip(digits[:12], weights, strict=True))
    return (11 - s % 11) % 10 == int(digits[12])


def brn_valid(digits: str) -> bool:
    """The National Tax Service check digit of a 10-digit business registration number."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    w = (1, 3, 7, 1, 3, 7, 1, 3, 5)
    s = sum(int(d) * k for d, k in zip(digits[:9], w, strict=True)) + int(digits[8]) * 5 // 10
    return (10 - s % 10) % 10 == int(digits[9])


def _context(text: str, start: int, words: re.Pattern, width: int = 20) -> bool:
    return bool(words.search(text, max(0, start - width), start))


def _rrn_ok(m: re.Match, text: str) -> bool:
    yy, mm, dd, sep, g, mid, last = m.groups()
    century = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}[g]
    try:
        date(century + int(yy), int(mm), int(dd))
    except ValueError:
        return False
    if "*" in mid + last:  # a half-masked number (900101-1******) still gives birth date and sex away
        return bool(sep)
    digits = f"{yy}{mm}{dd}{g}{mid}{last}"
    # Numbers issued since October 2020 have no check digit, so a valid one only adds confidence:
    # with a hyphen the date and sex digit are evidence enough; a bare 13-digit run needs more.
    return bool(sep and "-" in sep) or _rrn_check(digits) or _context(text, m.start(), _RRN_WORDS)


def _card_ok(m: re.Match, text: str) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 13 <= len(digits) <= 19 and digits[0] in "234569" and _luhn(digits)


def _brn_ok(m: re.Match, text: str) -> bool:
    digits = m.group(1) + m.group(3) + m.group(4)
    if not brn_valid(digits):
        return False
    # 1 in 10 random 10-digit runs passes the checksum, so a bare run needs a keyword too.
    return bool(m.group(2)) or _context(text, m.start(), _BRN_WORDS)


def _phone_ok(m: re.Match, text: str) -> bool:
    first, _, second = m.group().partition("-")
    # 1592-1598 is a span of years, not the nationwide number 1592-xxxx.
    if first.isdigit() and len(first) == 4 and first[0] == "1" and second.isdigit():
        return not (0 < int(second) - int(first) < 400 or text.startswith("년", m.end()))
    return True


def _account_ok(m: re.Match, text: str) -> bool:
    groups = tuple(len(g) for g in m.group().split("-"))
    if not 10 <= sum(groups) <= 14:
        return False
    return groups in _ACCOUNT_LAYOUTS or _context(text, m.start(), _BANK_WORDS)


# Order matters: the first pattern to claim a span keeps it (a card number is not also an account).
_RULES: tuple[tuple[str, re.Pattern, Callable[[re.Match, str], bool] | None], ...] = (
    (EMAIL, _EMAIL_RE, None),
    (RRN, _RRN_RE, _rrn_ok),
    (CARD, _CARD_RE, _card_ok),
    (BRN, _BRN_RE, _brn_ok),
    (PHONE, _PHONE_RE, _phone_ok),
    (ACCOUNT, _ACCOUNT_RE, _account_ok),
)


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """Spans (start, end, placeholder) of personal data in `text`, sorted and non-overlapping."""
    folded = text.translate(_FOLD)
    taken: list[tuple[int, int, str]] = []
    for placeholder, pattern, ok in _RULES:
        for m in pattern.finditer(folded):
            s, e = m.span()
            if any(s < te and ts < e for ts, te, _ in taken):
                continue
            if ok is None or ok(m, folded):
                taken.append((s, e, placeholder))
    return sorted(taken)


def mask_pii(text: str, counts: Counter | None = None) -> str:
    """`text` with each piece of personal data replaced by its placeholder; `counts` tallies them."""
    spans = find_pii(text)
    if not spans:
        return text
    out, last = [], 0
    for s, e, ph in spans:
        out += [text[last:s], ph]
        last = e
        if counts is not None:
            counts[ph] += 1
    out.append(text[last:])
    return "".join(out)


# ---- for people: what a served output or a Studio app shows ---------------------------------------------------
# Digits joined by up to two separators at a time: 010-1234-5678, 010 1234 5678, 02)123-4567, 82 10-1234-5678.
_NUMBER_RUN = re.compile(r"\d(?:[ \-.()+]{0,2}\d)*")
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PII_PLACEHOLDERS))
LONG_RUN = 9  # digits in a run hidden wherever it is: dates (8), times and prices stay readable
CUT_RUN = 4  # digits in a run hidden when an output's edge cuts it ("8503" cut from an RRN is a birth month)


def people_spans(text: str, start: int | None = None, cut_end: bool = False) -> list[tuple[int, int, str]]:
    """Spans (start, end, label) of `text` to hide from people, sorted and non-overlapping: personal data
    (`find_pii`), placeholders a model wrote (`<|phone|>`), and numbers in doubt: runs of LONG_RUN digits or more,
    and runs of CUT_RUN or more that cross `start` (the rest of a number the prompt began: `text[:start]` is the
    prompt) or, with `cut_end`, reach the end of `text` (cut by the length limit)."""
    spans = [(s, e, PII_LABELS[ph]) for s, e, ph in find_pii(text)]
    spans += [(m.start(), m.end(), PII_LABELS[m.group()]) for m in _PLACEHOLDER.finditer(text)]
    folded = text.translate(_FOLD)
    for m in _NUMBER_RUN.finditer(folded):
        s, e = m.span()
        digits = sum(c.isdigit() for c in m.group())
        crosses = start is not None and s < start < e
        if not (digits >= LONG_RUN or digits >= CUT_RUN and (crosses or cut_end and e == len(text))):
            continue
        label = PII_LABELS["<|phone|>"] if m.group().startswith(("0", "82")) else UNSURE_PII_LABEL
        covered = sorted((max(s, ts), min(e, te)) for ts, te, _ in spans if ts < e and s < te)
        at = s
        for cs, ce in [*covered, (e, e)]:  # the run's parts no other span holds
            if any(c.isdigit() for c in folded[at:cs]):
                spans.append((at, cs, label))
            at = max(at, ce)
    return sorted(spans)


def mask_for_people(text: str) -> str:
    """`text` with personal data, placeholders and doubtful numbers replaced by labels (`[전화번호]`)."""
    out, last = [], 0
    for s, e, label in people_spans(text):
        out += [text[last:s], label]
        last = e
    out.append(text[last:])
    return "".join(out)

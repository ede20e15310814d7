"""Data step: join lines broken in the middle of a sentence.

Text converted from HTML or PDF breaks lines wherever the markup had an inline element:

    ...오른쪽 버튼으로 누른 다음
    속성
    을 선택합니다.

A break is joined when the line before cannot end a sentence and either the line after starts
with a particle or ending (joined without a space: 속성 + 을 -> 속성을) or the line before ends in
a form that needs a continuation (다음, -하고, -면, a particle, a comma; joined with a space).
Titles and list items ("관련 주제") end in a noun and stay on their own line.

Two ways to tell those forms apart, measured in bench/data.py on planted breaks:
`rules` (suffix lists, fast) and `kiwi` (Kiwi's morpheme tags at the break).
"""

from __future__ import annotations

import re

from kollm.kiwi import kiwi

# A line ending in terminal punctuation (or a closing quote/bracket after it) ends its sentence.
_ENDS_SENTENCE = re.compile(r"[.!?。…:;][\"'”’」』)\]]*$")
_STARTS_WITH_PARTICLE = re.compile(
    r"^(?:을|를|이|가|은|는|의|에|에서|에게|으로|로|와|과|도|만|까지|부터|이나|나|처럼|보다|이라는|라는|"
    r"이라고|라고|입니다|합니다|됩니다|하는|한|할|하여|하고|하면|이며|며)(?=[\s.,!?]|$)"
)
_NEEDS_MORE = re.compile(
    r"(?:다음|하고|하면|하여|해서|위해|위하여|에서|으로|에게|및|또는|그리고|그러나|하지만|경우|때|"
    r"을|를|의|에|와|과|는|은|이|가|면|서|며|고|려면|도록|,)$"
)
_PARTICLE_TAGS = ("J", "E", "XS", "VCP")  # morphemes that attach to the word before
_OPEN_TAGS = ("J", "EC", "ETM", "MAJ", "SP", "SO")  # morphemes after which a sentence must go on


def _decide_rules(a: str, b: str) -> str | None:
    """"" to join without a space, " " to join with one, None to keep the line break."""
    if _ENDS_SENTENCE.search(a):
        return None
    if _STARTS_WITH_PARTICLE.match(b):
        return ""
    if _NEEDS_MORE.search(a) or (b[:1].islower() and b[:1].isascii()):
        return " "
    return None


def _decide_kiwi(pairs: list[tuple[str, str]]) -> list[str | None]:
    out: list[str | None] = [None] * len(pairs)
    todo = [i for i, (a, _) in enumerate(pairs) if not _ENDS_SENTENCE.search(a)]
    if not todo:
        return out
    # The break glued without a space: a morpheme of the next line that attaches (a particle or
    # ending) shows up as J*/E*/XS* starting exactly at the break.
    glued = [pairs[i][0][-12:] + pairs[i][1][:12] for i in todo]
    for i, text, toks in zip(todo, glued, kiwi().tokenize(glued), strict=True):
        a = pairs[i][0][-12:]
        at_break = [t for t in toks if t.start == len(a)]
        before = [t for t in toks if t.end <= len(a)]
        if at_break and at_break[0].tag.startswith(_PARTICLE_TAGS) and a[-1:].isalnum():
            out[i] = ""
        elif before and before[-1].tag.startswith(_OPEN_TAGS) and before[-1].end == len(a):
            out[i] = " "
        elif text[len(a) : len(a) + 1].islower() and text[len(a) : len(a) + 1].isascii():
            out[i] = " "
    return out


def repair_lines(text: str, method: str = "rules") -> str:
    """`text` with mid-sentence line breaks joined; blank lines (paragraphs) are kept."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    pairs = [(lines[i], lines[i + 1]) for i in range(len(lines) - 1)]
    if method == "kiwi":
        decisions = _decide_kiwi(pairs)
    else:
        decisions = [_decide_rules(a, b) for a, b in pairs]
    out = [lines[0]]
    for (a, b), d in zip(pairs, decisions, strict=True):
        if d is None or not a or not b:
            out.append("\n")
        else:
            out.append(d)
        out.append(b)
    return "".join(out)

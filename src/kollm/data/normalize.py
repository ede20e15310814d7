"""Data step: Unicode NFC, invisible characters out, whitespace tidied, HTML turned into text."""

from __future__ import annotations

import re
import unicodedata

# Characters that render as nothing but break word matching: zero-width space, zero-width non-joiner, word joiner,
# BOM, soft hyphen. The one list: metrics.py drops the same ones, so corpora and scores agree on what text is.
# ZWNJ goes: it shapes Persian or Hindi letters, never Hangul, so in Korean text it is only debris between syllables.
# ZWJ stays: emoji sequences (man + ZWJ + woman + ZWJ + girl) need it.
INVISIBLE = "\u200b\u200c\u2060\ufeff\u00ad"
# Corpora also lose C0/C1 controls (tab and newline aside); metrics leave those to their whitespace split.
_DROPPED = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{INVISIBLE}]")
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")
_HTML = re.compile(r"<(?:!doctype|html|body|div|p|br|span|table|li|a\s)[\s>/]", re.I)


def looks_like_html(text: str) -> bool:
    return bool(_HTML.search(text[:4096]))


def html_to_text(html: str) -> str:
    """Main text of an HTML page (boilerplate such as menus dropped), or "" when there is none."""
    import trafilatura  # slow to import; only HTML documents pay for it

    return trafilatura.extract(html, favor_recall=True, include_comments=False, include_tables=True) or ""


def nfc(text: str) -> str:
    """The corpus boundary: NFC (so 한 typed as conjoining jamo equals the precomposed syllable), \n newlines."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def normalize_text(text: str, html: bool = True) -> str:
    """`nfc`, invisible characters out, whitespace tidied (the pipeline's normalise stage)."""
    if html and looks_like_html(text):
        text = html_to_text(text)
    text = nfc(text)
    text = _DROPPED.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()

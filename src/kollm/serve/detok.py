"""Token ids -> text pieces that are always valid, whole characters.

A byte-level tokenizer can end a token in the middle of a Hangul syllable (3 UTF-8 bytes): decoding then gives
U+FFFD. The stream holds such a tail back until the next token completes it, and `finish` drops a character
left incomplete when generation stops (max_tokens), so no client ever sees U+FFFD from a split syllable. Text
that could be the start of a stop string is held back too, so a stop string never leaks into a stream.

With a PII `mask` (`kollm serve --mask-pii`), text is released only up to the last character that cannot be part
of a phone, card, account, RRN or e-mail (a Hangul syllable, most punctuation): a number split across tokens is
masked whole before any of it leaves, and the emitted text is the masked text.
"""

from __future__ import annotations

import string
from collections.abc import Callable

# characters a PII span can hold (digits, separators, e-mail characters, full-width forms): held back while trailing
_PII_CHARS = frozenset(string.digits + string.ascii_letters + "-‐‑‒–—−+().@_%* \u3000０１２３４５６７８９－＋（）．＠")


class TextStream:
    def __init__(self, tokenizer: object, stop: list[str] | None = None,
                 mask: Callable[[str], str] | None = None) -> None:
        self.tokenizer, self.stop, self.mask = tokenizer, [s for s in (stop or []) if s], mask
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already handed out
        self.stopped = False

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """Add a generated token; the new text that is safe to emit ("" while held back). Sets `stopped` when a
        stop string appeared (the text ends before it)."""
        self.ids.append(token)
        text = self._text()
        for s in self.stop:
            at = text.find(s, max(0, self.sent - len(s) + 1))
            if at >= 0:
                self.stopped = True
                return self._emit(text[:at], None, final=True)
        safe = len(text)
        while safe > self.sent and text[safe - 1] == "\ufffd":  # an unfinished UTF-8 sequence
            safe -= 1
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, safe - self.sent), 0, -1):
                if text[safe - k:safe] == s[:k]:
                    hold = max(hold, k)
                    break
        return self._emit(text, safe - hold)

    def finish(self) -> str:
        """What is left when generation ends: all held-back text but an incomplete last character."""
        if self.stopped:
            return ""
        return self._emit(self._text().rstrip("\ufffd"), None, final=True)

    def _emit(self, text: str, upto: int | None, final: bool = False) -> str:
        upto = len(text) if upto is None else upto
        if self.mask is not None:
            while not final and upto > 0 and text[upto - 1] in _PII_CHARS:
                upto -= 1
            text = self.mask(text[:upto])
            upto = len(text)
        out = text[self.sent:upto]
        self.sent = max(self.sent, upto)
        return out

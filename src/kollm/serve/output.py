"""One request's output as clients see it: token ids -> released text, stop strings, PII masks, and each token as
logprobs show it.

Text is decoded from each token's bytes (`Utf8Guard.pieces`, the same bytes the UTF-8 guard reasons about) by an
incremental UTF-8 decoder, so a token costs its own bytes, never a re-decode of the whole output. Tokens leave in
order, each with the text it completes (`Token.text`); the texts join to exactly the output text:
- a character split over tokens belongs to the token that completes it; one still unfinished at the end is dropped,
  so no client ever sees U+FFFD from a split syllable;
- text that could still become a stop string is held back, and the output ends where a stop string begins;
- with a PII mask (`kollm serve --mask-pii`), a trailing run of characters that could still belong to a phone,
  card, account, RRN or e-mail is held back, and released text is masked over the prompt's tail and the output
  together (`data.pii.people_spans`): a number the prompt began, one split across tokens and one cut by the length
  limit are hidden whole. A token inside a masked span shows as its share of the masked text (the label on the
  span's first token, "" after it), with those bytes; its top alternatives show as the label.

`begin` takes the prompt: as context for the masks, or (echo) as the first tokens of the text, special tokens
(BOS) zero-width, so `text_offset` and `bytes` stay true to the returned text.
"""

from __future__ import annotations

import codecs
import string
from collections.abc import Container, Sequence
from dataclasses import dataclass

from kollm.data.pii import people_spans

# characters a PII span can hold (digits, separators, e-mail characters, full-width forms) and any whitespace (an
# RRN may be split by a newline): a trailing run of these is held back while masking
_HELD = frozenset(string.digits + string.ascii_letters + "-‐‑‒–—−+().@_%*" + "０１２３４５６７８９－＋（）．＠")
_CONTEXT = 64  # characters before new text that the PII rules may look at (keywords sit within 20)


def _held(c: str) -> bool:
    return c in _HELD or c.isspace()


@dataclass
class Token:
    """A generated (or, with echo, prompt) token as it leaves the engine."""

    id: int
    text: str  # the output text this token completes ("" while a character is unfinished, or past a stop)
    logprob: float | None = None
    top: dict[int, float] | None = None  # the `logprobs` most likely alternatives, by id
    token: str = ""  # as logprobs show it: its text, OpenAI's "bytes:\\xNN" when not whole characters, or masked
    bytes: bytes = b""  # its bytes (masked: the masked text's)
    label: str | None = None  # masked: what each alternative at this position shows


def token_string(data: bytes) -> str:
    """A token's bytes as logprobs show them: the text, or OpenAI's `bytes:\\xNN...` when they are not whole
    characters (a byte-level token holding part of a Hangul syllable)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


@dataclass
class _Pending:
    id: int
    a: int  # the characters of `raw` this token completes: raw[a:b]
    b: int
    logprob: float | None
    top: dict[int, float] | None


class Output:
    def __init__(self, pieces: Sequence[bytes], special: Container[int] = (), stop: Sequence[str] = (),
                 mask: bool = False) -> None:
        self.pieces, self.special, self.mask = pieces, special, mask
        self.stop = [s for s in stop if s]
        # per stop string: for each character c, the prefix lengths k (longest first) whose last character is c,
        # so the held-back tail is found by checking only prefixes that end like the text does
        self._ends = [{c: sorted((k for k in range(1, len(s)) if s[k - 1] == c), reverse=True) for c in set(s)}
                      for s in self.stop]
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.raw = ""  # decoded text, unmasked: the prompt's tail (context for the masks), then the output
        self.stop_from = 0  # stop strings are looked for from here on
        self.searched = 0  # raw[:searched] held no stop string
        self.released = 0  # raw[:released] has left
        self.settled = 0  # masks are known for raw[:settled]
        self.run = 0  # start of the trailing run of held characters (len(raw) when there is none)
        self.end: int | None = None  # where a stop string cut the output
        self.stopped = False
        self.pending: list[_Pending] = []
        self.spans: list[list] = []  # [start, end, label, shown] in raw coordinates, not yet wholly released

    # ---- input -------------------------------------------------------------------------------------------
    def begin(self, prompt: Sequence[int], echo: bool = False) -> list[Token]:
        """The prompt: context for the masks, or with `echo` the text's first tokens (special ones zero-width)."""
        if echo:
            for t in prompt:
                self._add(t, None, None, skip=t in self.special)
            self.stop_from = self.searched = len(self.raw)
            return self._release(final=False)
        if self.mask:  # only the masks look back into the prompt
            tail = b"".join(self.pieces[t] for t in prompt[-_CONTEXT:] if t not in self.special)
            self.raw = tail.decode("utf-8", errors="replace").lstrip("\ufffd")[-_CONTEXT:]
            self.stop_from = self.searched = self.released = self.settled = len(self.raw)
            self.run = self._back_off(len(self.raw), 0)
        return []

    def push(self, token: int, logprob: float | None = None, top: dict[int, float] | None = None) -> list[Token]:
        """A generated token; returns the tokens this releases (none while text is held back). Sets `stopped` when
        a stop string appeared: the output ends where it begins, and everything left is released."""
        self._add(token, logprob, top)
        if self.stop:
            frm = max(self.stop_from, self.searched - max(map(len, self.stop)) + 1)
            self.searched = len(self.raw)
            hits = [at for s in self.stop if (at := self.raw.find(s, frm)) >= 0]
            if hits:
                self.end, self.stopped = min(hits), True
                return self._release(final=True)
        return self._release(final=False)

    def finish(self, cut: bool = False) -> list[Token]:
        """Generation ended: release everything (an unfinished last character is dropped). `cut`: by the length
        limit, so a number at the very end may be the start of a longer one."""
        return [] if self.stopped else self._release(final=True, cut=cut)

    def _add(self, token: int, logprob: float | None, top: dict[int, float] | None, skip: bool = False) -> None:
        a = len(self.raw)
        new = "" if skip else self._dec.decode(self.pieces[token])
        if new:
            i = self._back_off(len(new), 0, new)
            if i:  # a character that cannot be in PII ends the previous run
                self.run = a + i
            self.raw += new
        self.pending.append(_Pending(token, a, len(self.raw), logprob, top))

    # ---- release -----------------------------------------------------------------------------------------
    def _back_off(self, i: int, floor: int, text: str | None = None) -> int:
        """The start of the run of held characters that ends at text[i] (raw by default), not below `floor`."""
        text = self.raw if text is None else text
        while i > floor and _held(text[i - 1]):
            i -= 1
        return i

    def _stop_hold(self) -> int:
        """How many characters at the end of the output could be the start of a stop string."""
        hold, free = 0, len(self.raw) - max(self.released, self.stop_from)
        for s, ends in zip(self.stop, self._ends, strict=True):
            for k in ends.get(self.raw[-1:], ()):
                if hold < k <= free and self.raw.endswith(s[:k]):
                    hold = k
                    break
        return hold

    def _release(self, final: bool, cut: bool = False) -> list[Token]:
        if final:
            limit = len(self.raw) if self.end is None else self.end
        else:
            limit = len(self.raw) - self._stop_hold()
            if self.mask and limit > self.run:
                limit = self.run
            elif self.mask:  # a stop hold cut into the run: back off to where it starts
                limit = self._back_off(limit, self.released)
        limit = max(limit, self.released)
        if self.mask and (limit > self.settled or final):
            self._find_spans(limit, cut)
        out: list[Token] = []
        while self.pending and (final or self.pending[0].b <= limit):
            p = self.pending.pop(0)
            a, b = min(p.a, limit), min(p.b, limit)
            out.append(self._token(p, a, b))
            self.released = max(self.released, b)
        if final:
            self.released = limit
        if self.spans:
            self.spans = [x for x in self.spans if x[1] > self.released]
        return out

    def _find_spans(self, limit: int, cut: bool) -> None:
        known = min(self.settled, limit)
        w = max(0, known - _CONTEXT)
        # where the generated text begins (after the prompt's tail, or after the echoed prompt)
        start = self.stop_from - w if w < self.stop_from else None
        for s, e, label in people_spans(self.raw[w:limit], start, cut_end=cut):
            s, e = s + w, e + w
            if e > known and not any(x[0] < e and s < x[1] for x in self.spans):  # new, and not in the prompt
                self.spans.append([s, e, label, False])
        self.spans.sort()
        self.settled = max(self.settled, limit)

    def _token(self, p: _Pending, a: int, b: int) -> Token:
        data = self.pieces[p.id]
        text, at, label = "", a, None
        for span in self.spans:
            s, e, lab, shown = span
            if not (s < b and a < e or a == b and s <= a < e):  # overlaps, or a piece of a character inside
                continue
            label = label or lab
            text += self.raw[at:max(s, at)]
            if not shown:
                text += lab
                span[3] = True
            at = max(at, min(e, b))
        if label is None:
            return Token(p.id, self.raw[a:b], p.logprob, p.top, token_string(data), data)
        text += self.raw[at:b]
        return Token(p.id, text, p.logprob, p.top, text, text.encode("utf-8"), label)

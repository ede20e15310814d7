"""Valid UTF-8 by construction: at each step, mask the tokens whose bytes would make the output invalid.

A byte-level vocabulary holds tokens that are pieces of a character (the first byte of 한, or its last two),
and a sampler can pick a piece that does not fit what came before (a stray continuation byte, a new lead byte
while a character is unfinished). The output would then hold U+FFFD forever. For every token we know its bytes
(byte-level BPE: the GPT-2 byte alphabet; SentencePiece: `<0xHH>` byte-fallback tokens, text otherwise), so for
each decoder state (bytes still owed, and the range the next byte must fall in) we precompute which tokens are
allowed and the state they leave.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cached_property

import torch

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


# Decoder states: (continuation bytes owed, lowest and highest allowed next byte). The narrowed ranges after
# E0, ED, F0 and F4 are what rule out overlong forms, surrogates and code points past U+10FFFF (RFC 3629).
STATES: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (1, 0x80, 0xBF), (2, 0x80, 0xBF), (3, 0x80, 0xBF),
    (2, 0xA0, 0xBF), (2, 0x80, 0x9F), (3, 0x90, 0xBF), (3, 0x80, 0x8F),
)
_INDEX = {s: i for i, s in enumerate(STATES)}


def _start(b: int) -> tuple[int, int, int] | None:
    """The state after a first byte `b` (None: `b` cannot start a character)."""
    if b < 0x80:
        return STATES[0]
    if 0xC2 <= b <= 0xDF:
        return STATES[1]
    if b == 0xE0:
        return STATES[4]
    if b == 0xED:
        return STATES[5]
    if 0xE1 <= b <= 0xEF:
        return STATES[2]
    if b == 0xF0:
        return STATES[6]
    if b == 0xF4:
        return STATES[7]
    if 0xF1 <= b <= 0xF3:
        return STATES[3]
    return None


def _walk(data: bytes, state: int) -> int | None:
    """The decoder state after `data`, from `state`; None if `data` makes the output invalid UTF-8."""
    owed, lo, hi = STATES[state]
    for b in data:
        if owed:
            if not lo <= b <= hi:
                return None
            owed, lo, hi = owed - 1, 0x80, 0xBF
        else:
            nxt = _start(b)
            if nxt is None:
                return None
            owed, lo, hi = nxt
    return _INDEX[(owed, lo, hi) if owed else (0, 0, 0)]


def _whole(data: bytes) -> bool:
    """Whether `data` is valid UTF-8 on its own (then it starts no continuation and leaves none owed)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reader(tokenizer: object) -> Callable[[int], bytes | None]:
    """token id -> its bytes (None where they cannot be known: then the token is never masked)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    byte_level = backend is not None and type(backend.decoder).__name__ == "ByteLevel"
    decode = _gpt2_byte_decoder() if byte_level else None
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})  # special and added tokens: plain text
    name = backend.id_to_token if backend is not None else tokenizer.convert_ids_to_tokens

    def read(i: int) -> bytes | None:
        tok = name(i)
        if tok is None:
            return None
        if i in added:
            return tok.encode("utf-8")
        if decode is not None:
            return bytes(decode[c] for c in tok) if all(c in decode for c in tok) else tok.encode("utf-8")
        if m := _BYTE_TOKEN.match(tok):
            return bytes([int(m.group(1), 16)])
        return tok.replace("\u2581", " ").encode("utf-8")

    return read


def token_bytes(tokenizer: object) -> list[bytes | None]:
    """Each token id's bytes, or None where they cannot be known (then the token is never masked)."""
    return list(map(_reader(tokenizer), range(len(tokenizer))))


class Pieces(Sequence[bytes]):
    """Every id's bytes, each read the first time it is asked for: an engine that does not mask (kollm eval) reads
    only the tokens it emits, not a 262k vocabulary (0.3 s of an engine's build). Ids past the tokenizer (a padded
    vocabulary's rows) have no text; ids whose bytes cannot be known, the tokenizer's decoding of them."""

    def __init__(self, tokenizer: object, vocab: int) -> None:
        self._tokenizer, self._read, self._known = tokenizer, _reader(tokenizer), len(tokenizer)
        self._cache: list[bytes | None] = [None] * vocab

    def __len__(self) -> int:
        return len(self._cache)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 (Sequence's int and slice overloads)
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        data = self._cache[i]  # (an IndexError past the end, as a list's)
        if data is None:
            i %= len(self)
            data = self._cache[i] = self._bytes(i, self._read(i) if i < self._known else b"")
        return data

    def fill(self, read: list[bytes | None]) -> None:
        """Take every id's bytes at once (`token_bytes`, when the guard's tables read them all anyway)."""
        for i, data in enumerate(read[: len(self)]):  # (ids past the tokenizer: b"" when asked, as ever)
            if self._cache[i] is None:
                self._cache[i] = self._bytes(i, data)

    def _bytes(self, i: int, data: bytes | None) -> bytes:
        return data if data is not None else self._tokenizer.decode([i], skip_special_tokens=False).encode()


def _gpt2_byte_decoder() -> dict[str, int]:
    # GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n in order
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


class Utf8Guard:
    """Which tokens each decoder state allows, and the state a token leaves (`mask`, `step`, `refuses`), from
    tables over the whole vocabulary built here (not in a first request's time); `enforce=False` (kollm eval,
    where transformers' greedy choice is the reference) allows everything and builds none. `pieces`: every id's
    bytes (the output's text is built from them, serve/output.py)."""

    def __init__(self, tokenizer: object, vocab: int, enforce: bool = True) -> None:
        self.tokenizer, self.vocab, self.enforce = tokenizer, vocab, enforce
        self.pieces = Pieces(tokenizer, vocab)
        if enforce:
            self._tables  # noqa: B018 (built now)

    @cached_property
    def _tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """blocked[state] (bool per token) and after[state] (the decoder state once the token is emitted)."""
        pieces = token_bytes(self.tokenizer)
        self.pieces.fill(pieces)
        vocab, n = self.vocab, len(STATES)
        allowed = torch.ones(n, vocab, dtype=torch.bool)
        after = torch.zeros(n, vocab, dtype=torch.long)
        after[:, len(pieces):] = torch.arange(n)[:, None]  # ids past the tokenizer (padded rows): no bytes
        whole = []  # tokens that are whole characters: allowed only between characters, which they leave so
        for tid, data in enumerate(pieces[:vocab]):
            if data and _whole(data):  # (most of a vocabulary: no walk through the 8 states for them)
                whole.append(tid)
                continue
            for state in range(n):
                left = 0 if data is None else _walk(data, state)
                if left is None:
                    allowed[state, tid] = False
                else:
                    after[state, tid] = left
        allowed[1:, whole] = False
        return ~allowed, after

    @cached_property
    def longest(self) -> int:
        """The most bytes any one token holds (reads the whole vocabulary)."""
        return max(map(len, self.pieces), default=1) or 1

    def mask(self, logits: torch.Tensor, owed: int) -> torch.Tensor:
        """`logits` (the first len(logits) ids) with the tokens state `owed` refuses at -inf."""
        if not self.enforce:
            return logits
        blocked, _ = self._tables
        row = blocked[owed, : logits.shape[-1]]
        if row.device != logits.device:
            self._tables = (blocked.to(logits.device), self._tables[1])
            row = self._tables[0][owed, : logits.shape[-1]]
        return logits.masked_fill(row, float("-inf"))

    def refuses(self, owed: int, token: int) -> bool:
        """Whether `token` would make the output invalid UTF-8 in state `owed` (an id past the vocabulary: always)."""
        if token >= self.vocab:
            return True
        return self.enforce and bool(self._tables[0][owed, token])

    def step(self, owed: int, token: int) -> int:
        if not self.enforce or token >= self.vocab:
            return 0
        return int(self._tables[1][owed, token])

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


def token_bytes(tokenizer: object) -> list[bytes | None]:
    """Each token id's bytes, or None where they cannot be known (then the token is never masked)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    byte_level = backend is not None and type(backend.decoder).__name__ == "ByteLevel"
    decode = _gpt2_byte_decoder() if byte_level else None
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})  # special and added tokens: plain text
    out: list[bytes | None] = []
    for i, tok in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if tok is None:
            out.append(None)
        elif i in added:
            out.append(tok.encode("utf-8"))
        elif decode is not None:
            out.append(bytes(decode[c] for c in tok) if all(c in decode for c in tok) else tok.encode("utf-8"))
        elif m := _BYTE_TOKEN.match(tok):
            out.append(bytes([int(m.group(1), 16)]))
        else:
            out.append(tok.replace("\u2581", " ").encode("utf-8"))
    return out


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
    """allowed[state] (bool per token) and after[state] (the decoder state once the token is emitted); `pieces`:
    every id's bytes (the output's text is built from them, serve/output.py)."""

    def __init__(self, tokenizer: object, vocab: int) -> None:
        pieces = token_bytes(tokenizer)
        self.pieces: list[bytes] = [b""] * vocab  # ids past the tokenizer (padded rows) have no text
        for i, data in enumerate(pieces[:vocab]):
            self.pieces[i] = data if data is not None else tokenizer.decode([i], skip_special_tokens=False).encode()
        n = len(STATES)
        self.allowed = torch.ones(n, vocab, dtype=torch.bool)  # ids past the tokenizer (padded rows): allowed
        self.after = torch.zeros(n, vocab, dtype=torch.long)
        whole = []  # tokens that are whole characters: allowed only between characters, which they leave so
        for tid, data in enumerate(pieces[:vocab]):
            if data and _whole(data):  # (most of a vocabulary: no walk through the 8 states for them)
                whole.append(tid)
                continue
            for state in range(n):
                left = 0 if data is None else _walk(data, state)
                if left is None:
                    self.allowed[state, tid] = False
                else:
                    self.after[state, tid] = left
        self.allowed[1:, whole] = False

        self.blocked = (~self.allowed).to(torch.bool)

    def mask(self, logits: torch.Tensor, owed: int) -> torch.Tensor:
        blocked = self.blocked[owed]
        if blocked.device != logits.device:
            self.blocked = self.blocked.to(logits.device)
            blocked = self.blocked[owed]
        return logits.masked_fill(blocked, float("-inf"))

    def step(self, owed: int, token: int) -> int:
        return int(self.after[owed, token]) if token < self.after.shape[1] else 0

"""The UTF-8 guard (serve/utf8.py) on both kinds of byte vocabulary: byte-level BPE (the tiny kollm tokenizer) and a
SentencePiece-style one with `<0xHH>` byte fallback. Any token the guard allows keeps the output a valid UTF-8
prefix, every token it refuses would break it; the lazily read pieces equal the tables' bulk read; a guard that does
not enforce builds no tables."""

from __future__ import annotations

import functools
import itertools
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from kollm.serve.utf8 import STATES, Utf8Guard, token_bytes


def _byte_fallback_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ["▁", "가", "나", "한", "국", "어", "▁한국", "▁서울", "의", "▁날씨", "a", "b", "▁ab", "😀"]:
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module", params=["byte-level", "byte-fallback"])
def tok(request, tiny_model_dir):
    if request.param == "byte-level":
        return AutoTokenizer.from_pretrained(tiny_model_dir)
    return _byte_fallback_tokenizer()


_ENDS = [bytes(c) for n in (1, 2, 3) for c in itertools.product((0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF), repeat=n)]


def _pending(data: bytes) -> bytes | None:
    """The unfinished character at the end of `data` (b"" if none), or None if no continuation makes `data` valid
    UTF-8 (Python's incremental decoder alone would let ED A0 through until the third byte)."""
    for cut in range(len(data), max(-1, len(data) - 4), -1):
        try:
            data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        tail = data[cut:]
        return tail if not tail or _completes(tail) else None
    return None


@functools.cache
def _completes(tail: bytes) -> bool:
    """Whether some continuation bytes make `tail` one whole character."""
    if len(tail) > 3 or not 0xC2 <= tail[0] <= 0xF4 or any(not 0x80 <= b <= 0xBF for b in tail[1:]):
        return False  # (quickly: not a lead byte and continuation bytes)
    return any(_finishes(tail + end) for end in _ENDS)


@functools.cache
def _next(pending: bytes) -> tuple[int, set[int]]:
    """(bytes still owed, the bytes that may come next) after an unfinished character, found by trying them."""
    if not pending:
        return 0, set()
    owed = min(len(end) for end in _ENDS if _finishes(pending + end))
    return owed, {b for b in range(256) if _pending(pending + bytes([b])) is not None}


def _finishes(data: bytes) -> bool:
    try:
        return len(data.decode("utf-8")) == 1
    except UnicodeDecodeError:
        return False


# every state the decoder can be in, most of them several ways (E1 80: one byte owed, like C3)
PENDING = [b"", b"\xc3", b"\xe1", b"\xe1\x80", b"\xe0", b"\xe0\xa0", b"\xed", b"\xed\x9f", b"\xef", b"\xf0",
           b"\xf0\x90", b"\xf0\x90\x80", b"\xf1", b"\xf3\xbf", b"\xf4", b"\xf4\x8f", b"\xf4\x8f\xbf"]


def test_each_state_allows_exactly_the_tokens_that_keep_the_output_valid(tok):
    vocab = len(tok) + 3  # a padded vocabulary: the extra rows have no bytes and change nothing
    guard = Utf8Guard(tok, vocab)
    pieces = [guard.pieces[i] for i in range(vocab)]
    assert pieces[len(tok):] == [b""] * 3
    assert pieces[:len(tok)] == [b if b is not None else tok.decode([i]).encode()
                                 for i, b in enumerate(token_bytes(tok))]
    single = {p[0]: t for t, p in enumerate(pieces) if len(p) == 1}
    assert len(single) == 256  # both kinds of vocabulary hold every byte alone
    for pending in PENDING:
        owed = 0
        for b in pending:  # the guard's state after `pending`, emitted byte by byte
            assert not guard.refuses(owed, single[b])
            owed = guard.step(owed, single[b])
        have, _ = _next(pending)
        assert STATES[owed][0] == have, pending
        refused = {t for t in range(vocab) if guard.refuses(owed, t)}
        masked = guard.mask(torch.zeros(vocab), owed)
        assert set(torch.isinf(masked).nonzero().flatten().tolist()) == refused
        for t, piece in enumerate(pieces):
            after = _pending(pending + piece)
            assert (t in refused) == (after is None), (pending, piece)
            if after is not None:  # the state it leaves: as many bytes owed, the same next bytes allowed
                left = STATES[guard.step(owed, t)]
                assert (left[0], set(range(left[1], left[2] + 1)) if left[0] else set()) == _next(after), \
                    (pending, piece)
    assert guard.refuses(0, vocab)


def test_pieces_are_read_lazily_in_any_order_and_equal_the_bulk_read(tok):
    lazy, bulk = Utf8Guard(tok, len(tok), enforce=False), Utf8Guard(tok, len(tok))
    assert "_tables" in vars(bulk)  # built with the guard, reading every piece at once
    order = list(range(len(tok)))
    random.Random(1).shuffle(order)
    assert [lazy.pieces[i] for i in order] == [bulk.pieces[i] for i in order]
    assert lazy.pieces[-1] == bulk.pieces[len(tok) - 1] and lazy.pieces[2:5] == bulk.pieces[2:5]
    assert lazy.longest == bulk.longest == max(map(len, bulk.pieces))


def test_a_guard_that_does_not_enforce_allows_everything_and_builds_no_tables(tok):
    guard = Utf8Guard(tok, len(tok), enforce=False)
    logits = torch.randn(len(tok))
    assert torch.equal(guard.mask(logits, 1), logits)
    assert not any(guard.refuses(s, t) for s in range(3) for t in range(len(tok)))
    assert guard.step(0, 5) == 0 and "_tables" not in vars(guard)

"""Morpheme boundaries from Kiwi, used to guide BPE merges (`morpheme-bbpe`, as in HyperCLOVA).

Training: Kiwi splits each document into morphemes; a sentinel character is inserted at every
boundary and a `Split` pre-tokenizer removes it, so the BPE trainer never sees a pair that spans
two morphemes and no merge can cross a boundary.

Inference: the saved tokenizer.json is plain byte-level BPE, with no Kiwi. Its merges were all
learned inside morphemes, so they mostly re-find morpheme pieces; the cost of dropping Kiwi at
inference is measured by `bench/tokenizer.py` (see docs/tokenizer.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tokenizers import Tokenizer, pre_tokenizers

from kollm.kiwi import kiwi
from kollm.progress import Progress
from kollm.tokenizer.bbpe import inference_pre_tokenizer

# Private-use characters: never produced by Kiwi and (checked per corpus) absent from the text.
SENTINEL_CANDIDATES = ("\ue000", "\ue001", "\uf8ff", "\U000f0000", "\U0010fffd")


def boundaries(tokens: Iterable[Any], text: str) -> list[int]:
    """Character offsets where one morpheme ends and the next begins.

    Kiwi reports lemmas, not surface forms: `했` is 하 + 었 on the same span, and `대한` is
    대하 [0, 2) + ᆫ [1, 2). A cut strictly inside any token's span would split a syllable that
    two morphemes share, so such positions are dropped; the rest are real surface boundaries.
    A cut right after whitespace is dropped too: the space stays glued to the next morpheme (as in
    the byte-level regex), otherwise every word would pay for a lone space token.
    """
    cuts: set[int] = set()
    inside: set[int] = set()
    for t in tokens:
        start, end = t.start, t.start + t.len
        cuts.update((start, end))
        inside.update(range(start + 1, end))
    return sorted(p for p in cuts if 0 < p < len(text) and p not in inside and not text[p - 1].isspace())


def split_morphemes(texts: Sequence[str], threads: int = 0, progress: bool = True) -> Iterator[list[str]]:
    """Yield each text cut into surface pieces at morpheme boundaries (''.join(pieces) == text)."""
    results = kiwi(threads).tokenize(iter(texts))
    for text, tokens in Progress(zip(texts, results, strict=True), total=len(texts), desc="kiwi morphemes",
                             disable=not progress, unit="doc"):
        cuts = [0, *boundaries(tokens, text), len(text)]
        yield [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def pick_sentinel(texts: Sequence[str]) -> str:
    for s in SENTINEL_CANDIDATES:
        if not any(s in t for t in texts):
            return s
    raise RuntimeError("every sentinel candidate occurs in the corpus")  # not reachable on real text


def mark_boundaries(texts: Sequence[str], threads: int = 0, progress: bool = True) -> tuple[list[str], str]:
    """Texts with a sentinel at each morpheme boundary, and the sentinel used."""
    sentinel = pick_sentinel(texts)
    return [sentinel.join(p) for p in split_morphemes(texts, threads, progress)], sentinel


def morpheme_pre_tokenizer(sentinel: str) -> pre_tokenizers.PreTokenizer:
    """Cut at the sentinel (dropping it), then the usual byte-level split inside each morpheme."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split(sentinel, behavior="removed"), inference_pre_tokenizer()]
    )


def encode_with_kiwi(tok: Tokenizer, texts: Sequence[str], threads: int = 0) -> list[list[int]]:
    """Encode as if Kiwi ran at inference too (merges confined to morphemes). Used to measure what
    the Kiwi-free tokenizer.json gives up; kollm itself never encodes this way."""
    marked, sentinel = mark_boundaries(texts, threads, progress=False)
    kiwi_tok = Tokenizer.from_str(tok.to_str())
    kiwi_tok.pre_tokenizer = morpheme_pre_tokenizer(sentinel)
    return [e.ids for e in kiwi_tok.encode_batch(marked, add_special_tokens=False)]

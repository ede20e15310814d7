"""The one Kiwi (kiwipiepy's Korean morphological analyser) of a process, for every stage that needs morphemes:
line repair, quality filters and dedup shingles (data), morpheme-aware BPE (tokenizer), ROUGE-L (eval)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiwipiepy import Kiwi, TypoTransformer


def kiwi(threads: int = 0) -> Kiwi:
    """The process's Kiwi for `threads` worker threads (0 = all cores, Kiwi's own default), created on first use.

    Cached because loading its model takes 1-2 s and ~100 MB. Kiwi spreads batch calls (`tokenize(iterable)`)
    over its threads; every caller that does not choose gets the same all-cores instance.
    """
    return _load(int(threads) if threads > 0 else 0)  # one cache key per thread count: kiwi() is kiwi(0)


@lru_cache(maxsize=4)
def _load(threads: int) -> Kiwi:
    from kiwipiepy import Kiwi  # here, not at the top: importing it is slow and most commands never need it

    return Kiwi(num_workers=threads or -1)


def typo_transformer(pairs: list[tuple[str, str]]) -> TypoTransformer:
    """A Kiwi typo model from (correct, as typed) pairs, each one slip of cost 1, for `Kiwi.analyze(typos=...)`
    (kollm/spelling.py). A pair is jamo (a final escaped as "\\ㄴ") or whole syllables, as kiwipiepy's
    TypoDefinition takes them."""
    from kiwipiepy import TypoDefinition, TypoTransformer

    return TypoTransformer([TypoDefinition([orig], [error], 1.0) for orig, error in dict.fromkeys(pairs)])

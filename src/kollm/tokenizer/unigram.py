"""Unigram LM tokenizer (the SentencePiece algorithm of the KoBERT / KoGPT-2 era) over bytes.

SentencePiece's usual pipeline (Metaspace `▁` for spaces, byte fallback for unknown characters)
is not exact: a literal `▁` in the input decodes to a space, and leading spaces get eaten. Running
the unigram model on the byte-level alphabet instead keeps the algorithm and makes round-trip exact
for any string: all 256 byte symbols are in the vocabulary, so nothing is ever unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, trainers

from kollm.tokenizer.bbpe import BYTE_ALPHABET, inference_pre_tokenizer


def train_unigram(texts: Sequence[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = inference_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=BYTE_ALPHABET,
        # In byte symbols: 18 bytes is 6 Hangul syllables, enough for most eojeol.
        max_piece_length=18,
        show_progress=True,
    )
    tok.train_from_iterator(texts, trainer, length=len(texts))
    return tok

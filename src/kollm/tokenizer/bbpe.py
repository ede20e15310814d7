"""Byte-level BPE, the shared core of `bbpe` and `morpheme-bbpe`.

Every string maps to UTF-8 bytes before the model sees it, so `decode(encode(s)) == s` holds for
any input (no normaliser runs inside the tokenizer: NFC happens at the corpus boundary, so
conjoining jamo typed by a user still round-trip).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BYTE_ALPHABET = pre_tokenizers.ByteLevel.alphabet()


def inference_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # GPT-2 regex split (space attaches to the following word), then bytes -> printable chars.
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def train_bbpe(
    texts: Sequence[str],
    vocab_size: int,
    min_frequency: int,
    special_tokens: list[str],
    training_pre_tokenizer: pre_tokenizers.PreTokenizer | None = None,
) -> Tokenizer:
    """Train byte-level BPE. `training_pre_tokenizer` may split words further while merges are
    learned (morpheme-bbpe); the saved tokenizer always uses the plain byte-level pipeline."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = training_pre_tokenizer or inference_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=BYTE_ALPHABET,
        show_progress=True,
    )
    tok.train_from_iterator(texts, trainer, length=len(texts))
    tok.pre_tokenizer = inference_pre_tokenizer()
    return tok

"""Train and save tokenizers.

`bbpe` is byte-level BPE: every string, whatever its script, maps to bytes first, so
`decode(encode(s)) == s` holds exactly (no normaliser runs inside the tokenizer: NFC happens at
the corpus boundary, so conjoining jamo typed by a user still round-trip).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from kollm.errors import KollmError
from kollm.files import atomic_dir
from kollm.tokenizer.config import BOS, EOS, PAD, SPECIAL_TOKENS, TokenizerConfig

BYTE_ALPHABET = pre_tokenizers.ByteLevel.alphabet()


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    if cfg.method != "bbpe":
        raise KollmError(f"unknown tokenizer method {cfg.method!r}; use bbpe")
    if cfg.vocab_size < len(BYTE_ALPHABET) + len(SPECIAL_TOKENS):
        raise KollmError(
            f"vocab size {cfg.vocab_size} is smaller than the 256 byte symbols plus "
            f"{len(SPECIAL_TOKENS)} special tokens; use at least {len(BYTE_ALPHABET) + len(SPECIAL_TOKENS)}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=BYTE_ALPHABET,
        show_progress=True,
    )
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise KollmError("tokenizer training corpus is empty; give files with text")
    tok.train_from_iterator(texts, trainer, length=len(texts))
    return tok


def to_hf(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,  # keep decode exact
        model_max_length=1_000_000,
    )


def save_tokenizer(tok: Tokenizer, out_dir: str | Path) -> PreTrainedTokenizerFast:
    """Write tokenizer.json + tokenizer_config.json (loadable with AutoTokenizer) atomically."""
    hf = to_hf(tok)
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(tmp)
    return hf


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise KollmError(f"{path} has no tokenizer.json; pass a Hugging Face model or tokenizer folder")
    return AutoTokenizer.from_pretrained(str(path))

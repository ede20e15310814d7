"""Train, save and load kollm tokenizers.

All three methods save a plain Hugging Face `tokenizer.json` (byte-level pre-tokenizer, BPE or
Unigram model, byte-level decoder): `AutoTokenizer.from_pretrained` loads it with no custom code,
and `decode(encode(s)) == s` for every string.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from kollm.errors import KollmError
from kollm.files import atomic_dir
from kollm.special_tokens import BOS, CHAT_TEMPLATE, EOS, PAD
from kollm.tokenizer.bbpe import BYTE_ALPHABET, train_bbpe
from kollm.tokenizer.config import METHODS, TokenizerConfig

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def check_config(cfg: TokenizerConfig) -> None:
    if cfg.method not in METHODS:
        raise KollmError(f"unknown tokenizer method {cfg.method!r}; use one of {', '.join(METHODS)}")
    floor = len(BYTE_ALPHABET) + len(cfg.special_tokens())
    if cfg.vocab_size < floor:
        raise KollmError(
            f"vocab size {cfg.vocab_size} is smaller than the 256 byte symbols plus "
            f"{len(cfg.special_tokens())} special tokens; use at least {floor}"
        )
    if cfg.sample_size < 0 or cfg.threads < 0:
        raise KollmError("sample size and threads must be >= 0 (0 means all)")


def _set_threads(threads: int) -> None:
    # HF tokenizers reads RAYON_NUM_THREADS when its thread pool starts (once per process).
    if threads > 0:
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    """Train a tokenizer of `cfg.method` on `texts`."""
    check_config(cfg)
    _set_threads(cfg.threads)
    docs = [t for t in texts if t.strip()]
    if not docs:
        raise KollmError("tokenizer training corpus is empty; give files with text")
    if 0 < cfg.sample_size < len(docs):
        docs = random.Random(cfg.seed).sample(docs, cfg.sample_size)
    specials = cfg.special_tokens()
    if cfg.method == "bbpe":
        return train_bbpe(docs, cfg.vocab_size, cfg.min_frequency, specials)
    if cfg.method == "morpheme-bbpe":
        from kollm.tokenizer.morpheme import mark_boundaries, morpheme_pre_tokenizer

        marked, sentinel = mark_boundaries(docs, cfg.threads)
        return train_bbpe(marked, cfg.vocab_size, cfg.min_frequency, specials, morpheme_pre_tokenizer(sentinel))
    from kollm.tokenizer.unigram import train_unigram

    return train_unigram(docs, cfg.vocab_size, specials)


def to_hf(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,  # the chat API and fine-tuning format turns with it
        clean_up_tokenization_spaces=False,  # keep decode exact
        model_max_length=1_000_000,
    )


def save_tokenizer(tok: Tokenizer, out_dir: str | Path) -> PreTrainedTokenizerFast:
    """Write tokenizer.json + tokenizer_config.json (loadable with AutoTokenizer) atomically."""
    hf = to_hf(tok)
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(tmp)
    return hf


def load_tokenizer(path: str | Path, add_bos: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer in a folder (kollm's or any Hugging Face model's): kollm's one tokenizer loader.

    kollm places BOS itself (`special_tokens.encode_with_bos`), so the folder's own `encode` is kept as it is.
    `add_bos=True` is for code that encodes through the tokenizer instead (lm-eval): its plain `tok(text)` then
    starts with BOS exactly when the tokenizer defines one - the same rule - checked rather than assumed.
    """
    path = Path(path)
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise KollmError(f"{path} has no tokenizer (tokenizer.json); pass a Hugging Face model or tokenizer folder, "
                         "or copy the tokenizer files into it (kollm train export writes them)")
    try:
        # add_bos_token=True rebuilds the post-processor; transformers turns it off again when there is no BOS
        tok = AutoTokenizer.from_pretrained(str(path), **({"add_bos_token": True} if add_bos else {}))
    except (OSError, ValueError) as e:
        raise KollmError(f"cannot load the tokenizer in {path} ({str(e).splitlines()[0]})") from None
    if add_bos and tok.bos_token_id is not None and tok("가").input_ids[:1] != [tok.bos_token_id]:
        raise KollmError(f"the tokenizer in {path} does not prepend its BOS token even with add_bos_token=True; "
                         "set add_bos_token in its tokenizer_config.json")
    return tok

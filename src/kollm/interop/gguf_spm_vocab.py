"""A SentencePiece-style tokenizer.json (BPE over `▁`-escaped text, byte fallback: Gemma, Llama 2) -> the
`tokenizer.ggml.*` metadata of llama.cpp's "llama" (SPM) tokenizer.

Such a tokenizer.json has no tokenizer.model beside it (transformers writes one when it imports a GGUF), so the
scores llama.cpp's SPM tokenizer needs are derived here. That tokenizer repeatedly merges the adjacent pair
whose concatenation is the highest-scoring vocabulary entry; HF's BPE merges the pair of lowest merge rank. So a
token's score is minus the rank of the first merge that forms it, which gives both the same merge order.
llama.cpp merges any pair whose concatenation is a token, HF only listed pairs: the two agree when the merge list
covers every such pair, as the lists transformers derives from a SentencePiece model or GGUF vocabulary do.
"""

from __future__ import annotations

import re
from pathlib import Path

from kollm.errors import KollmError
from kollm.interop.gguf_vocab_common import CONTROL, NORMAL, USER_DEFINED, GGUFVocab, pad_to_rows, specials

BYTE = 6  # gguf.TokenType.BYTE: a <0xXX> byte-fallback token
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")
_ESCAPE = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
_PREFIX = {"type": "Prepend", "prepend": "\u2581"}


def is_spm(tok: dict) -> bool:
    model = tok.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def _add_space_prefix(tok: dict, path: Path) -> bool:
    """llama.cpp's SPM tokenizer escapes spaces itself and can add one leading `▁`; nothing else is expressible."""
    norm = tok.get("normalizer") or {}
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    if steps == [_ESCAPE]:
        return False  # Gemma 3
    if steps == [_PREFIX, _ESCAPE]:
        return True  # Llama 2, Gemma 1/2
    raise KollmError(f"{path}: its normalizer ({norm.get('type')}) is not one llama.cpp's SentencePiece tokenizer "
                     "replays; export a tokenizer that only escapes spaces as '\u2581'")


def read_spm_vocab(tok: dict, folder: Path, vocab_size: int) -> GGUFVocab:
    path = folder / "tokenizer.json"
    add_space_prefix = _add_space_prefix(tok, path)
    pre = tok.get("pre_tokenizer")
    if pre and not (pre.get("type") == "Split" and pre.get("pattern") == {"String": " "}):
        # a split on ' ' runs after the normalizer turned every ' ' into '▁', so it never splits anything
        raise KollmError(f"{path}: its pre-tokenizer ({pre.get('type')}) has no llama.cpp SentencePiece equivalent")
    model = tok["model"]
    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types = {i: BYTE if _BYTE_TOKEN.fullmatch(t) else NORMAL for i, t in by_id.items()}
    for added in tok.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        # special added tokens (<bos>, <start_of_turn>, <unusedN>) are CONTROL; the others (Gemma's newline and
        # tab runs, [multimodal]) USER_DEFINED, which llama.cpp matches whole before SPM, as HF does
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    tokens, type_list = pad_to_rows(by_id, types, vocab_size, path)

    first_rank: dict[str, int] = {}
    for rank, m in enumerate(model.get("merges", [])):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        first_rank.setdefault(a + b, rank)
    unmerged = -float(len(first_rank) + 1)  # below every merge: single characters, bytes, specials
    scores = [-float(first_rank[t]) if t in first_rank else unmerged for t in tokens]
    return GGUFVocab(pre="default", tokens=tokens, types=type_list, merges=[], model="llama", scores=scores,
                     add_space_prefix=add_space_prefix, **specials(folder, by_id))

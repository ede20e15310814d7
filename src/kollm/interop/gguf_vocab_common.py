"""What the two GGUF vocabulary readers share (byte-level BPE in gguf_vocab.py, SentencePiece-style BPE in
gguf_spm_vocab.py): the `GGUFVocab` record the exporter writes, llama.cpp's token types, the padding of the token
list to the model's embedding rows, and the special tokens and chat template a tokenizer folder names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kollm.errors import KollmError
from kollm.special_tokens import token_text

# gguf.TokenType values (kept literal so this module does not import gguf)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED = 1, 2, 3, 4, 5


@dataclass
class GGUFVocab:
    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos: int | None = None
    eos: int | None = None
    pad: int | None = None
    add_bos: bool = False
    chat_template: str | None = None
    model: str = "gpt2"  # llama.cpp tokenizer family: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    scores: list[float] | None = None  # "llama" only: merge priority
    unk: int | None = None
    add_space_prefix: bool = False


def pad_to_rows(by_id: dict[int, str], types: dict[int, int], vocab_size: int,
                path: Path) -> tuple[list[str], list[int]]:
    """(tokens, types) for every embedding row: rows past the tokenizer become UNUSED `[PADi]` tokens."""
    n = max(by_id) + 1
    if n > vocab_size:
        raise KollmError(f"{path} has {n} tokens but the model has {vocab_size} embedding rows; they do not match")
    return [by_id.get(i, f"[PAD{i}]") for i in range(vocab_size)], [types.get(i, UNUSED) for i in range(vocab_size)]


def specials(folder: Path, by_id: dict[int, str]) -> dict:
    """The GGUFVocab fields tokenizer_config.json decides: bos, eos, pad, unk, add_bos and chat_template."""
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    ids = {t: i for i, t in by_id.items()}

    def tid(key: str) -> int | None:
        text = token_text(cfg.get(key))
        return ids.get(text) if text else None

    bos = tid("bos_token")
    template = cfg.get("chat_template")
    if not template and (folder / "chat_template.jinja").is_file():  # where transformers 5 saves it
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    # add_bos is kollm's BOS rule (special_tokens.encode_with_bos: BOS first when the tokenizer defines one), so
    # llama.cpp reads a string prompt as `kollm serve` does, whatever the folder's own post-processor says
    return {"bos": bos, "eos": tid("eos_token"), "pad": tid("pad_token"), "unk": tid("unk_token"),
            "add_bos": bos is not None, "chat_template": template}

"""The special-token contract: every token kollm defines, how a document is framed for training, and the BOS rule.

Every kollm tokenizer carries, in this order: BOS, EOS, PAD (ids 0, 1, 2), the PII placeholders that
masking writes into text (each must stay one token), and the ChatML turn markers its chat template uses.
Foreign tokenizers (Llama, Qwen, Gemma) keep their own tokens and template: code that needs BOS/EOS asks
the tokenizer's own config (`special_ids`), never a list of likely names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kollm.errors import KollmError

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

PII_PLACEHOLDERS: tuple[str, ...] = (
    "<|rrn|>",  # resident registration number (주민등록번호)
    "<|phone|>",
    "<|email|>",
    "<|card|>",
    "<|brn|>",  # business registration number (사업자등록번호)
    "<|account|>",
)
# What people see in place of each (`kollm serve --mask-pii`, the Studio): the placeholders are tokens for models
# to learn, these are words for readers. UNSURE stands in for a number too like personal data to show (cut short,
# continuing a number the prompt began, or a long digit run no rule recognises).
PII_LABELS: dict[str, str] = dict(zip(PII_PLACEHOLDERS, (
    "[주민등록번호]", "[전화번호]", "[이메일]", "[카드번호]", "[사업자등록번호]", "[계좌번호]"), strict=True))
UNSURE_PII_LABEL = "[개인정보]"

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_TOKENS: tuple[str, ...] = (IM_START, IM_END)

SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, PAD, *PII_PLACEHOLDERS, *CHAT_TOKENS)

# ChatML, after BOS (every kollm document starts with BOS). Roles: system, user, assistant.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{{ '" + IM_START + "' + message['role'] + '\\n' + message['content'] + '" + IM_END + "\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '" + IM_START + "assistant\\n' }}{%- endif %}"
)


def frame(ids: list[int], bos_id: int | None, eos_id: int | None) -> list[int]:
    """A document as the model is trained on it: BOS ids EOS (a token the tokenizer lacks is left out)."""
    return ([bos_id] if bos_id is not None else []) + list(ids) + ([eos_id] if eos_id is not None else [])


def encode_with_bos(tokenizer: Any, text: str) -> list[int]:
    """A string prompt or document as ids, BOS first when the tokenizer defines one: kollm models saw BOS at every
    document start (`frame`), and so did Gemma and Llama; Qwen's tokenizers define none and get none. The rule does
    not depend on the tokenizer's own post-processor or `add_bos_token` setting, so every stage encodes alike."""
    return frame(tokenizer.encode(text, add_special_tokens=False), tokenizer.bos_token_id, None)


def token_text(value: object) -> str | None:
    """A special token's text as tokenizer_config.json stores it: a string or {"content": ..., ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def special_ids(folder: str | Path) -> tuple[int | None, int | None]:
    """(bos_id, eos_id) as the tokenizer folder's own tokenizer_config.json names them (None if unset)."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    cfg_path, tok_path = folder / "tokenizer_config.json", folder / "tokenizer.json"
    if not tok_path.is_file():
        raise KollmError(f"{tok_path} not found; pass a folder made by `kollm tokenizer train` or a HF model folder")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    tok = Tokenizer.from_file(str(tok_path))
    out = []
    for key in ("bos_token", "eos_token"):
        text = token_text(cfg.get(key))
        tid = tok.token_to_id(text) if text else None
        if text and tid is None:
            raise KollmError(f"{cfg_path} names {key} {text!r}, which is not in {tok_path}; fix the config")
        out.append(tid)
    return out[0], out[1]

"""A byte-level BPE tokenizer.json -> the `tokenizer.ggml.*` metadata llama.cpp reads.

llama.cpp does not run tokenizer.json: it re-implements each known pre-tokenizer in C++ and picks one by the
`tokenizer.ggml.pre` name. So the exporter must name the pre-tokenizer llama.cpp implements identically, and
refuse one it does not know (a wrong name tokenizes differently without any error).
"""

from __future__ import annotations

import json
from pathlib import Path

from kollm.errors import KollmError
from kollm.interop.gguf_spm_vocab import is_spm, read_spm_vocab
from kollm.interop.gguf_vocab_common import CONTROL, NORMAL, USER_DEFINED, GGUFVocab, pad_to_rows, specials
from kollm.special_tokens import PII_PLACEHOLDERS

# Split regexes of foreign byte-level tokenizers (as their tokenizer.json spells them) -> llama.cpp pre name.
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_TAIL = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
KNOWN_SPLIT_REGEXES = {
    _CONTRACTIONS + r"\p{N}{1,3}" + _TAIL: "llama-bpe",  # Llama 3
    _CONTRACTIONS + r"\p{N}" + _TAIL: "qwen2",  # Qwen2/2.5/3
}


def _pre_name(tok: dict, path: Path) -> str:
    pre, norm = tok.get("pre_tokenizer") or {}, tok.get("normalizer")
    if norm:
        raise KollmError(f"{path} has a normalizer ({norm.get('type')}), which llama.cpp's BPE cannot replay; "
                         "export a tokenizer without one (kollm tokenizers have none)")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"  # kollm's pre-tokenizer: the GPT-2 regex + bytes, which llama.cpp calls "gpt-2"
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel"
                and not steps[1].get("use_regex", True)):
            name = KNOWN_SPLIT_REGEXES.get((steps[0].get("pattern") or {}).get("Regex", ""))
            if name:
                return name
    raise KollmError(f"{path}: its pre-tokenizer ({pre.get('type')}) is not one llama.cpp implements that kollm "
                     "can name; export a byte-level GPT-2, Llama-3 or Qwen2 style tokenizer")


def read_vocab(folder: Path, vocab_size: int) -> GGUFVocab:
    """Tokens padded to the model's vocab size (embedding rows past the tokenizer become UNUSED pads)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise KollmError(f"{folder} has no tokenizer.json; GGUF export needs the model's byte-level BPE tokenizer "
                         "in the folder (kollm model folders carry one)")
    tok = json.loads(path.read_text(encoding="utf-8"))
    if is_spm(tok):
        return read_spm_vocab(tok, folder, vocab_size)
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or (tok.get("decoder") or {}).get("type") != "ByteLevel":
        raise KollmError(f"{path} is a {model.get('type')} tokenizer; GGUF export handles byte-level BPE and "
                         "SentencePiece-style BPE with byte fallback only")
    pre = _pre_name(tok, path)
    by_id: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types = {i: NORMAL for i in by_id}
    for added in tok.get("added_tokens", []):
        i, text = added["id"], added["content"]
        by_id[i] = text
        # PII placeholders are content (masked text keeps them, output should show them): USER_DEFINED, which
        # llama.cpp always matches as one token and prints. Other specials (BOS/EOS/PAD/ChatML) are CONTROL.
        types[i] = CONTROL if added.get("special") and text not in PII_PLACEHOLDERS else USER_DEFINED
    tokens, type_list = pad_to_rows(by_id, types, vocab_size, path)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return GGUFVocab(pre=pre, tokens=tokens, types=type_list, merges=merges, **specials(folder, by_id))

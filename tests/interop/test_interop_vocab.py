"""GGUF export's tokenizer metadata: llama.cpp is told kollm's BOS rule (special_tokens.encode_with_bos)."""

from __future__ import annotations

import json

from kollm.interop.gguf_vocab import read_vocab
from kollm.interop.gguf_vocab_common import CONTROL, UNUSED


def test_kollm_tokenizer_tells_llamacpp_to_prepend_bos(tiny_tokenizer, tmp_path):
    """kollm's tokenizer.json does not add BOS itself (kollm places it), but its models saw BOS at every document
    start, so llama.cpp must prepend it to a string prompt as `kollm serve` does."""
    tiny_tokenizer.save_pretrained(tmp_path)
    v = read_vocab(tmp_path, len(tiny_tokenizer) + 3)
    assert (v.bos, v.eos, v.pad, v.unk, v.add_bos) == (0, 1, 2, None, True)
    assert v.types[0] == CONTROL and v.types[-3:] == [UNUSED] * 3 and v.tokens[-1] == f"[PAD{len(v.tokens) - 1}]"


def test_no_bos_no_add_bos_and_dict_spelled_tokens(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["bos_token"] = None  # like Qwen's
    cfg["eos_token"] = {"content": "<|eos|>", "lstrip": False, "rstrip": False}
    cfg_path.write_text(json.dumps(cfg))
    v = read_vocab(tmp_path, len(tiny_tokenizer))
    assert (v.bos, v.eos, v.add_bos) == (None, 1, False)

"""The tokenizer llama.cpp runs for a kollm-style GGUF, rebuilt as a plain tokenizer.json pipeline.

transformers 5.24 rebuilds a GGUF BPE tokenizer through a model-family class (Qwen2Tokenizer for qwen3): it adds
NFC, that family's split regex and an `<|endoftext|>` token, whatever the file says. For kollm's "gpt-2"
pre-tokenizer that changes ids (conjoining jamo get composed) and the vocabulary size, so files with
`tokenizer.ggml.pre = gpt-2` are rebuilt here from the GGUF's own tokens and merges, exactly as exported.
"""

from __future__ import annotations

from pathlib import Path

from kollm.interop.gguf_vocab_common import CONTROL, USER_DEFINED
from kollm.special_tokens import PII_PLACEHOLDERS


def handles(tokenizer_model: str | None, tokenizer_pre: str | None) -> bool:
    return tokenizer_model == "gpt2" and tokenizer_pre == "gpt-2"


def tokenizer_from_gguf(path: Path) -> object:
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from kollm.tokenizer.bbpe import inference_pre_tokenizer

    fields = gguf.GGUFReader(path).fields

    def get(key: str, default: object = None) -> object:
        return fields[key].contents() if key in fields else default

    tokens, types = get("tokenizer.ggml.tokens"), get("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = inference_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    # CONTROL tokens and kollm's PII placeholders were special in the exported tokenizer; other USER_DEFINED
    # tokens were plain added tokens
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, ty in enumerate(types)
                            if ty == CONTROL or (ty == USER_DEFINED and tokens[i] in PII_PLACEHOLDERS)])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i, ty in enumerate(types)
                    if ty == USER_DEFINED and tokens[i] not in PII_PLACEHOLDERS])

    def text(key: str) -> str | None:
        i = get(key)
        return tokens[int(i)] if i is not None else None

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=text("tokenizer.ggml.bos_token_id"),
        eos_token=text("tokenizer.ggml.eos_token_id"), pad_token=text("tokenizer.ggml.padding_token_id"),
        chat_template=get("tokenizer.chat_template"), clean_up_tokenization_spaces=False, model_max_length=1_000_000,
    )

"""`kollm import gguf`: a GGUF file transformers can read -> a plain HF folder (no gguf needed to load it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kollm.errors import KollmError
from kollm.interop import gguf_tokenizer
from kollm.interop.save import drop_quantizer, reason, save_hf_folder, torch_dtype

GGUF_MAGIC = b"GGUF"


@dataclass
class GGUFInfo:
    arch: str
    key_length: int | None  # attention head dim, when the file states it
    tokenizer_model: str | None  # "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
    tokenizer_pre: str | None  # llama.cpp's pre-tokenizer name
    add_bos: bool | None  # whether llama.cpp puts BOS before a prompt (None: the file does not say)


def check_gguf(path: Path) -> GGUFInfo:
    """What the importer needs from the header, after checking `path` is a complete GGUF file (KollmError if not)."""
    if not path.is_file():
        raise KollmError(f"{path} not found; pass the path of a .gguf file")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise KollmError(f"{path} is not a GGUF file (no GGUF magic bytes); pass a .gguf model file")
    import gguf

    try:
        # The reader maps every tensor's byte range, so a truncated download fails here, not mid-load.
        reader = gguf.GGUFReader(path)
        arch = str(reader.fields["general.architecture"].contents())
        keys = (f"{arch}.attention.key_length", "tokenizer.ggml.model", "tokenizer.ggml.pre",
                "tokenizer.ggml.add_bos_token")
        fields = {k: reader.fields[k].contents() for k in keys if k in reader.fields}
    except KeyError:
        raise KollmError(f"{path} has no general.architecture key; it is not a model GGUF") from None
    except Exception as e:  # noqa: BLE001 - numpy/struct errors of a damaged file, reported in one line
        raise KollmError(f"{path} is truncated or corrupt ({reason(e)}); "
                         "download or assemble it again") from None
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > path.stat().st_size:
            raise KollmError(f"{path} is truncated (tensor {t.name} ends past the end of the file); get it again")
    key_len = fields.get(f"{arch}.attention.key_length")
    add_bos = fields.get("tokenizer.ggml.add_bos_token")
    return GGUFInfo(arch, int(key_len) if key_len else None, fields.get("tokenizer.ggml.model"),
                    fields.get("tokenizer.ggml.pre"), None if add_bos is None else bool(add_bos))


def import_gguf(gguf_file: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Dequantize `gguf_file` with transformers and save it as safetensors + tokenizer + generation config."""
    path = Path(gguf_file)
    info = check_gguf(path)
    arch, key_len = info.arch, info.key_length
    dt = torch_dtype(dtype)
    from transformers import AutoConfig, AutoTokenizer

    from kollm.model.hf import causal_lm_from_pretrained

    src, name = str(path.parent), path.name
    try:  # metadata only: rejects an unsupported architecture in a second, before any weights load
        config = AutoConfig.from_pretrained(src, gguf_file=name)
    except (ValueError, KeyError) as e:
        raise KollmError(f"{path}: transformers cannot read GGUF architecture {arch!r} "
                         f"({reason(e)}); supported: Llama, Qwen2/3, Gemma 2/3 families") from None
    if key_len and getattr(config, "head_dim", None) not in (None, key_len):
        # transformers 5.24 maps attention.key_length to head_dim for Gemma but not Qwen2/3, and falls back to
        # the config default (128); kollm models use 64, so take the file's own value.
        config.head_dim = key_len
    try:
        if gguf_tokenizer.handles(info.tokenizer_model, info.tokenizer_pre):
            tokenizer = gguf_tokenizer.tokenizer_from_gguf(path)  # kollm's own export: rebuilt exactly
        else:
            tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
        model = causal_lm_from_pretrained(src, dt, gguf_file=name, config=config)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise KollmError(f"{path}: transformers failed to load it ({reason(e)})") from None
    if info.add_bos is False and tokenizer.bos_token is not None:
        # Qwen's GGUFs name <|endoftext|> as BOS and say llama.cpp adds none; kollm puts BOS first wherever the
        # tokenizer names one (special_tokens.encode_with_bos), so the folder names none, as Qwen's own HF folder:
        # else kollm tunes with a BOS that vLLM (base from the HF folder) and llama.cpp never put before a prompt
        tokenizer.bos_token = None
    drop_quantizer(model)
    return save_hf_folder(model.eval(), tokenizer, out_dir)

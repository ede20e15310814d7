"""Write a loaded transformers model + tokenizer as a plain HF folder (the shape every kollm stage reads)."""

from __future__ import annotations

from pathlib import Path

from kollm.errors import KollmError
from kollm.files import atomic_dir

DTYPES = ("float32", "bfloat16")


def reason(e: BaseException) -> str:
    """An exception as one line for a KollmError (library messages run to many lines, or none)."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def torch_dtype(name: str) -> object:
    import torch

    if name not in DTYPES:
        raise KollmError(f"--dtype {name!r} is not supported; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def drop_quantizer(model: object) -> None:
    """A GGUF-loaded model keeps its (non-serializable) GGUF quantizer, and `save_pretrained` refuses it.

    The weights are already dequantized into plain tensors, so the quantizer state is stale: clear it,
    and drop the config entry so the saved folder does not ask for gguf at load time.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")


def save_hf_folder(model: object, tokenizer: object, out_dir: str | Path) -> Path:
    """safetensors + config + tokenizer + generation config, all or nothing (atomic folder swap)."""
    from transformers import GenerationConfig

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not (tmp / "generation_config.json").is_file():
            cfg = model.config
            GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                             pad_token_id=cfg.pad_token_id).save_pretrained(tmp)
        if not (tmp / "tokenizer.json").is_file() and not (tmp / "tokenizer.model").is_file():
            raise KollmError(f"the tokenizer of {out_dir} could not be saved as tokenizer files; nothing was written")
    return Path(out_dir)

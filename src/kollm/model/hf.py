"""Export kollm models as Hugging Face Qwen3 folders, and load such folders back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3Config
from transformers.utils import logging as hf_logging

from kollm.errors import KollmError
from kollm.files import atomic_dir
from kollm.model.config import ModelConfig
from kollm.model.gpt import KollmLM
from kollm.runtime import configure_varying_shapes, pick_device, pick_dtype
from kollm.tokenizer import load_tokenizer


def hf_config(cfg: ModelConfig, bos: int | None, eos: int | None, pad: int | None) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.width,
        intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        architectures=["Qwen3ForCausalLM"],
        dtype="float32",
    )


def export_hf(model: KollmLM, tokenizer: object, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write config.json, model.safetensors, tokenizer files and generation_config.json atomically."""
    cfg = model.cfg
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # HF re-ties it from embed_tokens
    with atomic_dir(out_dir) as tmp:
        hf_config(cfg, bos, eos, pad).save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        GenerationConfig(  # the one home of kollm's sampling defaults: `generate` and the quickstart read them here
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
            do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=128,
        ).save_pretrained(tmp)
        if extra:
            (tmp / "kollm.json").write_text(json.dumps(extra, ensure_ascii=False, indent=2))
    return Path(out_dir)


def load_kollm_from_hf(path: str | Path) -> KollmLM:
    """Load a Qwen3-layout HF folder (kollm-trained or not) into kollm's own model."""
    path = Path(path)
    try:
        c = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise KollmError(f"{path} has no config.json; pass a Hugging Face model folder") from None
    if c.get("model_type") != "qwen3":
        raise KollmError(f"{path} is a {c.get('model_type')!r} model; kollm's own model loads qwen3 folders only")
    rope = c.get("rope_parameters") or {}
    cfg = ModelConfig(
        depth=c["num_hidden_layers"], vocab_size=c["vocab_size"], max_seq_len=c["max_position_embeddings"],
        width=c["hidden_size"], n_heads=c["num_attention_heads"], n_kv_heads=c["num_key_value_heads"],
        ffn_dim=c["intermediate_size"], head_dim=c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"],
        rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))), norm_eps=c["rms_norm_eps"],
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    ).resolved()
    model = KollmLM(cfg)
    state = load_file(str(path / "model.safetensors"))
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model


def causal_lm_from_pretrained(src: str | Path, dtype: torch.dtype, **kwargs: object) -> torch.nn.Module:
    """transformers' `AutoModelForCausalLM.from_pretrained`, the one way kollm loads a model with it.

    Hub kernels off: transformers 5.25 turns them on by default, and `model.train()` on a GPU then re-kernelizes
    the model with layers downloaded from the Hub (kernels-community/rotary for Qwen3): code fetched at run time,
    and on an offline GPU machine `kollm tune` failed at its first step (bench/gpu_check.py). kollm runs the
    model's own torch layers on every device, as on the CPU."""
    return AutoModelForCausalLM.from_pretrained(str(src), dtype=dtype, use_kernels=False, **kwargs)


def load_hf_causal_lm(path: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, object]:
    """Any transformers causal LM folder, on `device` (default: kollm.runtime's pick) in the runtime's dtype for
    it (float32 on CPU, bf16 on GPUs with native bf16), in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise KollmError(f"{path} is not a Hugging Face model folder (no config.json); pass --model DIR")
    device = device or pick_device()
    configure_varying_shapes(device)  # what loads through here serves, evaluates or judges: shapes change
    if not sys.stderr.isatty():  # transformers' weight-loading bar redraws with "\r": noise in a log file
        hf_logging.disable_progress_bar()
    tokenizer = load_tokenizer(path)
    try:
        model = causal_lm_from_pretrained(path, pick_dtype(device))
    except (OSError, ValueError) as e:
        raise KollmError(f"cannot load {path} with transformers ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), tokenizer

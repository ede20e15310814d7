"""The Gemma 3 text model (HF `gemma3_text`) as llama.cpp's `gemma3` architecture.

llama.cpp hard-codes much of Gemma 3 instead of reading it from the file: every 6th layer is global (the other
five slide), sliding layers use RoPE base 10000, attention scores are scaled by 1/sqrt(head_dim) (27B: by
1/sqrt(hidden/heads)), activations are tanh-GELU and the embedding is multiplied by sqrt(hidden) in its graph.
So a config that differs from those is refused here, since llama.cpp would run it silently wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

from kollm.errors import KollmError

SWA_PATTERN = 6  # llama.cpp: layer i slides unless i % 6 == 5
SWA_ROPE_BASE = 10000.0
_NEEDED = ("layer_types", "sliding_window", "query_pre_attn_scalar", "rope_parameters")


def check_gemma3(cfg: dict, folder: Path) -> float:
    """The global layers' RoPE base, or a KollmError naming what llama.cpp's gemma3 graph cannot express."""
    missing = [k for k in _NEEDED if k not in cfg]
    if missing:
        raise KollmError(f"{folder} is a 'gemma3_text' model without Gemma 3's {', '.join(missing)}; GGUF export "
                         "handles qwen3, qwen2, llama and Gemma 3 text layouts")
    n_layer = cfg["num_hidden_layers"]
    want = ["full_attention" if i % SWA_PATTERN == SWA_PATTERN - 1 else "sliding_attention" for i in range(n_layer)]
    if cfg["layer_types"] != want:
        raise KollmError(f"{folder}: its sliding/global layer order is not Gemma 3's five-to-one pattern, which "
                         "llama.cpp's gemma3 architecture assumes")
    rope = cfg["rope_parameters"]
    full, sliding = rope.get("full_attention") or {}, rope.get("sliding_attention") or {}
    if sliding.get("rope_type", "default") != "default" or sliding.get("rope_theta") != SWA_ROPE_BASE:
        raise KollmError(f"{folder}: sliding layers use RoPE {sliding}; llama.cpp's gemma3 fixes them to plain "
                         f"RoPE with base {SWA_ROPE_BASE:g}")
    if full.get("rope_type", "default") not in ("default", "linear"):
        raise KollmError(f"{folder}: rope scaling {full.get('rope_type')!r} on global layers is not supported by "
                         "GGUF export; Gemma 3 uses none or linear")
    head_dim, n_head = cfg["head_dim"], cfg["num_attention_heads"]
    scalar = cfg["hidden_size"] // n_head if n_layer == 62 else head_dim  # what llama.cpp will divide by
    if not math.isclose(cfg["query_pre_attn_scalar"], scalar):
        raise KollmError(f"{folder}: query_pre_attn_scalar {cfg['query_pre_attn_scalar']} differs from the "
                         f"{scalar} llama.cpp's gemma3 assumes for {n_layer} layers")
    if cfg.get("hidden_activation", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise KollmError(f"{folder}: activation {cfg.get('hidden_activation')!r} is not expressible in a gemma3 "
                         "GGUF (llama.cpp uses tanh-GELU)")
    if cfg.get("attn_logit_softcapping") or cfg.get("use_bidirectional_attention") or cfg.get("attention_bias"):
        raise KollmError(f"{folder}: attention soft-capping, bidirectional attention and attention biases are "
                         "not expressible in a gemma3 GGUF")
    return float(full.get("rope_theta", 1_000_000.0))


def shift_norm(hf_name: str, w: object) -> object:
    # transformers' Gemma3RMSNorm multiplies by (1 + weight) and stores the offset; llama.cpp multiplies by the
    # weight itself, so every norm (q/k norms included) gets its 1 added back.
    return w + 1.0 if hf_name.endswith("norm.weight") else w


def add_gemma3_params(w: object, cfg: dict) -> None:
    import gguf

    w.add_sliding_window(cfg["sliding_window"])
    full = cfg["rope_parameters"].get("full_attention") or {}
    if full.get("rope_type") == "linear":  # Gemma 3 4B-27B stretch the global layers' RoPE 8x
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(full["factor"]))
    if cfg.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))

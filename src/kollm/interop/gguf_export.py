"""`kollm export gguf`: a Qwen3 (kollm), Qwen2, Llama or Gemma 3 text HF folder -> a GGUF file llama.cpp runs.

Written with the `gguf` package (llama.cpp's own GGUF writer library) rather than llama.cpp's
convert_hf_to_gguf.py: that script recognises a BPE pre-tokenizer by hashing its output on a fixed string and
refuses any tokenizer it has not seen (every kollm tokenizer is new), ships only in an sdist, and must match
its gguf version. Four layouts need a few dozen lines; anything else is refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

from kollm.errors import KollmError
from kollm.files import atomic_path
from kollm.interop.gguf_gemma3 import add_gemma3_params, check_gemma3, shift_norm
from kollm.interop.gguf_vocab import read_vocab

TYPES = ("f32", "f16", "q8_0")
# HF model_type -> gguf arch name. The first three are "Llama-like": the same tensor set, optional q/k norms
# (Qwen3) and q/k/v biases (Qwen2); llama.cpp reads each with its own graph. Gemma 3 (gguf_gemma3) adds
# sandwich norms, sliding-window layers and its own norm convention.
ARCHES = {"qwen3": "qwen3", "qwen2": "qwen2", "llama": "llama", "gemma3_text": "gemma3"}


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KollmError(f"{folder} has no config.json; pass a model folder (kollm train output or kollm import)") \
            from None


def _check_expressible(cfg: dict, folder: Path) -> tuple[str, float]:
    """(gguf arch, rope theta), or a KollmError naming the part of the model GGUF export cannot express."""
    mt = cfg.get("model_type")
    if mt not in ARCHES:
        raise KollmError(f"{folder} is a {mt!r} model; GGUF export handles {', '.join(ARCHES)} layouts "
                         "(kollm models are qwen3)")
    if mt == "gemma3_text":  # its own RoPE per layer kind, activation and norms
        return ARCHES[mt], check_gemma3(cfg, folder)
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise KollmError(f"{folder}: rope scaling {rope.get('rope_type')!r} is not supported by GGUF export; "
                         "only plain RoPE models can be exported")
    if cfg.get("hidden_act", "silu") != "silu":
        raise KollmError(f"{folder}: activation {cfg.get('hidden_act')!r} is not expressible in a {mt} GGUF "
                         "(llama.cpp uses SiLU for it)")
    if mt != "qwen2" and cfg.get("attention_bias"):
        raise KollmError(f"{folder}: attention biases are not expressible in a {mt} GGUF; export without them")
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    return ARCHES[mt], float(theta)


def _tensors(folder: Path) -> dict[str, object]:
    """Every weight as a float32 numpy array (sharded or single safetensors)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise KollmError(f"{folder} has no *.safetensors weights; re-save it with `kollm import hf`")
    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():  # noqa: SIM118 - safe_open is not a dict
                out[k] = st.get_tensor(k).float().numpy()
    return out


def _permute(w: object, n_head: int) -> object:
    # HF Llama stores q/k in rotate-half order; llama.cpp's llama graph uses interleaved RoPE (Qwen uses NeoX).
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf(model_dir: str | Path, out_file: str | Path, out_type: str = "f16") -> Path:
    """Write `out_file` atomically; a model or tokenizer GGUF cannot express raises before anything is written."""
    import gguf
    import numpy as np

    folder, out = Path(model_dir), Path(out_file)
    if out_type not in TYPES:
        raise KollmError(f"--type {out_type!r} is not supported; use one of {', '.join(TYPES)}")
    cfg = _config(folder)
    arch, theta = _check_expressible(cfg, folder)
    vocab = read_vocab(folder, cfg["vocab_size"])
    n_layer, n_head = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    tied = bool(cfg.get("tie_word_embeddings", False))

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layer)
    weights = _tensors(folder)
    planned = []  # (gguf name, array) - all mapped before the file is opened
    for hf_name, w in weights.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise KollmError(f"{folder}: tensor {hf_name} has no {arch} GGUF equivalent; this model's layers "
                             "cannot be expressed in GGUF")
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            w = _permute(w, n_head)
        elif arch == "llama" and hf_name.endswith("k_proj.weight"):
            w = _permute(w, n_kv)
        elif arch == "gemma3":
            w = shift_norm(hf_name, w)
        planned.append((name, w))

    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]
    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch)
        w.add_name(cfg.get("_name_or_path") or cfg.get("_model_name_or_path") or folder.name)
        w.add_file_type(ftype)
        w.add_context_length(cfg.get("max_position_embeddings", 2048))
        w.add_embedding_length(cfg["hidden_size"])
        w.add_block_count(n_layer)
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_rope_freq_base(theta)
        w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
        if arch == "llama":
            w.add_rope_dimension_count(head_dim)
        elif arch == "gemma3":
            add_gemma3_params(w, cfg)
        _add_vocab(w, vocab)
        for name, arr in planned:
            data, raw_dtype = _encode(arr, out_type, gguf, np)
            w.add_tensor(name, data, raw_dtype=raw_dtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out


def _encode(arr: object, out_type: str, gguf: object, np: object) -> tuple[object, object]:
    """(data, raw dtype or None to infer). Norms and biases stay f32, as llama.cpp's converter keeps them;
    matrices take the requested type (q8_0 falls back to f16 for rows not a multiple of its 32-value block)."""
    q = gguf.GGMLQuantizationType
    if arr.ndim < 2 or out_type == "f32":
        return arr.astype(np.float32), None
    if out_type == "q8_0" and arr.shape[-1] % gguf.GGML_QUANT_SIZES[q.Q8_0][0] == 0:
        return gguf.quants.quantize(arr.astype(np.float32), q.Q8_0), q.Q8_0
    return arr.astype(np.float16), None


def _add_vocab(w: object, v: object) -> None:
    w.add_tokenizer_model(v.model)
    w.add_tokenizer_pre(v.pre)
    w.add_token_list(v.tokens)
    w.add_token_types(v.types)
    if v.model == "llama":  # SentencePiece: merge priority lives in the scores, not in a merge list
        w.add_token_scores(v.scores)
        w.add_add_space_prefix(v.add_space_prefix)
    else:
        w.add_token_merges(v.merges)
    for add, tid in ((w.add_bos_token_id, v.bos), (w.add_eos_token_id, v.eos), (w.add_pad_token_id, v.pad),
                     (w.add_unk_token_id, v.unk)):
        if tid is not None:
            add(tid)
    w.add_add_bos_token(v.add_bos)
    w.add_add_eos_token(False)
    if v.chat_template:
        w.add_chat_template(v.chat_template)

"""`kollm eval`: bits-per-byte of any Hugging Face causal LM on a text corpus."""

from __future__ import annotations

import math
import time

import torch
import typer

from kollm.data.sources import read_texts
from kollm.errors import KollmError
from kollm.eval.config import EvalConfig
from kollm.files import write_json
from kollm.model.hf import load_hf_causal_lm
from kollm.model.score import text_nll


def hf_bits_per_byte(model: torch.nn.Module, tokenizer: object, texts: list[str], ctx: int) -> float:
    device = next(model.parameters()).device
    nll, n_bytes = text_nll(lambda x: model(x).logits, tokenizer, texts, ctx, device=device)
    return nll / (math.log(2) * max(n_bytes, 1))


def run_eval(cfg: EvalConfig) -> float:
    if not cfg.model or not cfg.data:
        raise KollmError("kollm eval needs --model DIR and --data FILE (or [eval].model and [eval].data)")
    texts = read_texts([cfg.data])
    model, tokenizer = load_hf_causal_lm(cfg.model)
    ctx = cfg.ctx or min(int(getattr(model.config, "max_position_embeddings", 1024) or 1024), 1024)
    t0 = time.perf_counter()
    bpb = hf_bits_per_byte(model, tokenizer, texts, ctx)
    n_bytes = sum(len(t.encode()) for t in texts)
    typer.echo(f"val bits-per-byte: {bpb:.4f}  ({len(texts)} docs, {n_bytes:,} bytes, ctx {ctx}, "
               f"{time.perf_counter() - t0:.1f}s)")
    if cfg.out:
        write_json(cfg.out, {"model": cfg.model, "data": cfg.data, "bits_per_byte": bpb,
                             "docs": len(texts), "bytes": n_bytes, "ctx": ctx})
    return bpb

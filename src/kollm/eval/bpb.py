"""`kollm eval`: bits-per-byte of any Hugging Face causal LM on a jsonl corpus."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import typer

from kollm.data.readers import read_documents
from kollm.errors import KollmError
from kollm.files import write_json
from kollm.model.hf import load_hf_causal_lm
from kollm.model.score import text_nll
from kollm.train.precision import pick_device


def hf_bits_per_byte(model: torch.nn.Module, tokenizer: object, texts: list[str], ctx: int) -> float:
    device = pick_device()
    model.to(device)
    nll, n_bytes = text_nll(lambda x: model(x).logits, tokenizer, texts, ctx, device=device)
    return nll / (math.log(2) * max(n_bytes, 1))


def eval_from_cli(model_dir: Path, data: Path, ctx: int | None, out: Path | None) -> float:
    texts = [d["text"] for d in read_documents(data)] if data.is_file() else None
    if texts is None:
        raise KollmError(f"data file {data} does not exist; pass a .jsonl file with a `text` field")
    model, tokenizer = load_hf_causal_lm(model_dir)
    ctx = ctx or min(int(getattr(model.config, "max_position_embeddings", 1024) or 1024), 1024)
    t0 = time.perf_counter()
    bpb = hf_bits_per_byte(model, tokenizer, texts, ctx)
    n_bytes = sum(len(t.encode()) for t in texts)
    typer.echo(f"val bits-per-byte: {bpb:.4f}  ({len(texts)} docs, {n_bytes:,} bytes, ctx {ctx}, "
               f"{time.perf_counter() - t0:.1f}s)")
    if out:
        write_json(out, {"model": str(model_dir), "data": str(data), "bits_per_byte": bpb,
                         "docs": len(texts), "bytes": n_bytes, "ctx": ctx})
    return bpb

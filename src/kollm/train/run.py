"""`kollm train`: a recipe plus CLI overrides -> a trained model."""

from __future__ import annotations

from pathlib import Path

import typer

from kollm.config import load_recipe, override, section
from kollm.data.prepare import is_val, normalize
from kollm.data.readers import read_documents
from kollm.errors import KollmError
from kollm.model import ModelConfig
from kollm.tokenizer import load_tokenizer
from kollm.train.config import TrainConfig
from kollm.train.loop import TrainResult, train_model


def read_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise KollmError(f"data file {path} does not exist; pass a .jsonl or .txt corpus")
    return [t for d in read_documents(path) if (t := normalize(d["text"]))]


def train_from_cli(recipe: Path | None, data: Path | None, val: Path | None, tokenizer: Path | None, out: Path,
                   depth: int | None, time_budget: float | None, max_steps: int | None,
                   resume: bool) -> TrainResult:
    r = load_recipe(recipe) if recipe else {}
    unknown = sorted(set(r) - {"model", "train", "data", "tokenizer"})
    if unknown:
        raise KollmError(f"unknown recipe section [{unknown[0]}]; kollm train reads [model] and [train]")
    model_cfg = override(section(r, "model", ModelConfig), depth=depth)
    cfg = override(section(r, "train", TrainConfig), data=str(data) if data else None,
                   val_data=str(val) if val else None, tokenizer=str(tokenizer) if tokenizer else None,
                   time_budget=time_budget, max_steps=max_steps)
    model_cfg.resolved()  # shape errors before any data is read
    if not cfg.data:
        raise KollmError("no training data: pass --data FILE.jsonl or set [train].data in the recipe")
    if not cfg.tokenizer:
        raise KollmError("no tokenizer: pass --tokenizer DIR (make one with `kollm tokenizer train`)")
    tok = load_tokenizer(cfg.tokenizer)
    texts = read_texts(cfg.data)
    if cfg.val_data:
        train_texts, val_texts = texts, read_texts(cfg.val_data)
    else:
        train_texts = [t for t in texts if not is_val(t, 0.05, cfg.seed)]
        val_texts = [t for t in texts if is_val(t, 0.05, cfg.seed)] or train_texts[-1:]
    res = train_model(model_cfg, cfg, tok, train_texts, val_texts, out, resume=resume)
    typer.echo(f"{res.steps} steps, {res.tokens:,} tokens, {res.tokens_per_s:,.0f} tok/s; "
               f"loss {res.first_loss:.3f} -> {res.final_loss:.3f}; best val bpb {res.best_val_bpb:.4f}; "
               f"model -> {res.model_dir}")
    return res

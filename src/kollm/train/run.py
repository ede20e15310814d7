"""`kollm train`: a recipe plus CLI overrides -> a trained model.

Recipe sections: [model] (ModelConfig), [train] (TrainConfig), and optionally [tokenizer]
(TokenizerConfig): with no tokenizer given, one is trained on the training text first and saved to
OUT/tokenizer (not counted in the time budget). Launch with `torchrun --nproc_per_node K -m kollm.cli train
...` to shard over K processes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kollm.config import load_recipe, override, section
from kollm.data.prepare import is_val, normalize
from kollm.data.readers import read_documents
from kollm.errors import KollmError
from kollm.model import ModelConfig
from kollm.train.config import TrainConfig
from kollm.train.data import is_shard_folder
from kollm.train.distributed import barrier, init_distributed
from kollm.train.loop import TrainResult, train_model


def read_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise KollmError(f"data file {path} does not exist; pass a .jsonl or .txt corpus (or a token-shard folder)")
    return [t for d in read_documents(path) if (t := normalize(d["text"]))]


def _tokenizer(cfg: TrainConfig, recipe: dict, texts: list[str] | None, out: Path) -> object:
    from kollm.tokenizer import TokenizerConfig, load_tokenizer, save_tokenizer, train_tokenizer

    if cfg.tokenizer:
        if not (Path(cfg.tokenizer) / "tokenizer.json").is_file():
            raise KollmError(f"tokenizer folder {cfg.tokenizer} has no tokenizer.json; make one with "
                             "`kollm tokenizer train`")
        return load_tokenizer(cfg.tokenizer)
    if "tokenizer" not in recipe:
        raise KollmError("no tokenizer: pass --tokenizer DIR (make one with `kollm tokenizer train`) "
                         "or add a [tokenizer] section to the recipe")
    if texts is None:
        raise KollmError("token shards need the tokenizer they were made with: pass --tokenizer DIR")
    tok_cfg = section(recipe, "tokenizer", TokenizerConfig)
    info = init_distributed()
    if info.is_main:  # trained once, before the clock starts; other ranks load the saved copy
        typer.echo(f"training a {tok_cfg.method} tokenizer ({tok_cfg.vocab_size} tokens) -> {out / 'tokenizer'}")
        save_tokenizer(train_tokenizer(texts, tok_cfg), out / "tokenizer")
    barrier(info)
    return load_tokenizer(out / "tokenizer")


def train_from_cli(recipe: Path | None, data: Path | None, val: Path | None, tokenizer: Path | None, out: Path,
                   depth: int | None, time_budget: float | None, max_steps: int | None,
                   resume: bool, **train_overrides: object) -> TrainResult:
    """`train_overrides`: any other TrainConfig field given on the command line (None = keep the recipe's)."""
    r = load_recipe(recipe) if recipe else {}
    unknown = sorted(set(r) - {"model", "train", "data", "tokenizer"})
    if unknown:
        raise KollmError(f"unknown recipe section [{unknown[0]}]; kollm train reads [model], [train], [tokenizer]")
    model_cfg = override(section(r, "model", ModelConfig), depth=depth)
    cfg = override(section(r, "train", TrainConfig), data=str(data) if data else None,
                   val_data=str(val) if val else None, tokenizer=str(tokenizer) if tokenizer else None,
                   time_budget=time_budget, max_steps=max_steps, **train_overrides)
    model_cfg.resolved()  # shape errors before any data is read
    if not cfg.data:
        raise KollmError("no training data: pass --data FILE.jsonl or set [train].data in the recipe")
    shards = is_shard_folder(cfg.data)
    if shards and not cfg.val_data:
        raise KollmError("training on token shards needs validation text: pass --val FILE.jsonl")
    if not cfg.tokenizer and "tokenizer" not in r:
        raise KollmError("no tokenizer: pass --tokenizer DIR (make one with `kollm tokenizer train`) "
                         "or add a [tokenizer] section to the recipe")
    texts = None if shards else read_texts(cfg.data)
    val_texts = read_texts(cfg.val_data) if cfg.val_data else None
    if texts is not None and val_texts is None:
        val_texts = [t for t in texts if is_val(t, 0.05, cfg.seed)]
        texts = [t for t in texts if not is_val(t, 0.05, cfg.seed)]
        val_texts = val_texts or texts[-1:]
    tok = _tokenizer(cfg, r, texts, Path(out))
    res = train_model(model_cfg, cfg, tok, cfg.data if shards else texts, val_texts, out, resume=resume)
    if init_distributed().is_main:
        typer.echo(f"{res.steps} steps, {res.tokens:,} tokens, {res.tokens_per_s:,.0f} tok/s, MFU {res.mfu:.0%}; "
                   f"loss {res.first_loss:.3f} -> {res.final_loss:.3f}; val bpb best {res.best_val_bpb:.4f}, "
                   f"final {res.final_val_bpb:.4f}; best model -> {res.model_dir}, final -> {res.final_dir}")
    return res

"""`kollm train`: configs (recipe + CLI flags, parsed by the caller) -> a trained model.

The [tokenizer] section is optional: with no tokenizer folder given, one is trained on the training text
first and saved to OUT/tokenizer (not counted in the time budget). With no validation text given,
`val_fraction` of the documents is held out and written to OUT/val.jsonl, so the same text can be scored
again later (`kollm eval --data OUT/val.jsonl`). Launch with `torchrun --nproc_per_node K -m kollm.cli
train ...` to shard over K processes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from kollm.config import override, read_recipe
from kollm.data.sources import read_texts
from kollm.errors import KollmError
from kollm.files import write_jsonl
from kollm.model import ModelConfig
from kollm.tokenizer import TokenizerConfig
from kollm.train.config import TrainConfig
from kollm.train.data import hold_out, is_shard_folder
from kollm.train.distributed import barrier, init_distributed
from kollm.train.loop import TrainResult, train_model


def read_corpus(cfg: TrainConfig, out: Path) -> tuple[list[str] | None, list[str]]:
    """(training texts, or None for token shards; validation texts)."""
    if not cfg.data:
        raise KollmError("no training data: pass --data (a .jsonl/.txt file or folder) or set [train].data")
    shards = is_shard_folder(cfg.data)
    if shards and not cfg.val_data:
        raise KollmError("training on token shards needs validation text: pass --val FILE.jsonl")
    texts = None if shards else read_texts([cfg.data])
    if cfg.val_data:
        return texts, read_texts([cfg.val_data])
    texts, val = hold_out(texts, cfg.val_fraction, cfg.seed)
    if init_distributed().is_main:
        write_jsonl(out / "val.jsonl", ({"text": t} for t in val))
    return texts, val


def load_or_train_tokenizer(cfg: TrainConfig, tok_cfg: TokenizerConfig | None, texts: list[str] | None,
                            out: Path) -> object:
    """The tokenizer folder named by `cfg.tokenizer`, else one trained with `tok_cfg` on `texts`."""
    from kollm.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    if cfg.tokenizer:
        if not (Path(cfg.tokenizer) / "tokenizer.json").is_file():
            raise KollmError(f"tokenizer folder {cfg.tokenizer} has no tokenizer.json; make one with "
                             "`kollm tokenizer train`")
        return load_tokenizer(cfg.tokenizer)
    if tok_cfg is None:
        raise KollmError("no tokenizer: pass --tokenizer DIR (make one with `kollm tokenizer train`) "
                         "or add a [tokenizer] section to the recipe")
    if texts is None:
        raise KollmError("token shards need the tokenizer they were made with: pass --tokenizer DIR")
    info = init_distributed()
    if info.is_main:  # trained once, before the clock starts; other ranks load the saved copy
        typer.echo(f"training a {tok_cfg.method} tokenizer ({tok_cfg.vocab_size} tokens) -> {out / 'tokenizer'}")
        save_tokenizer(train_tokenizer(texts, tok_cfg), out / "tokenizer")
    barrier(info)
    return load_tokenizer(out / "tokenizer")


def train_from_recipe(recipe: str | Path | None, out: str | Path, resume: bool = False, depth: int | None = None,
                      **flags: object) -> TrainResult:
    """`kollm train`: the recipe's [model], [train] and optional [tokenizer], parsed once; `depth` and `flags`
    (TrainConfig fields) override it where given (None keeps the recipe's value)."""
    r = read_recipe(recipe, "train", {"model": ModelConfig, "train": TrainConfig, "tokenizer": TokenizerConfig})
    return run_training(override(r["model"], depth=depth), override(r["train"], **flags),
                        r["tokenizer"] if "tokenizer" in r["present"] else None, out, resume)


def run_training(model_cfg: ModelConfig, cfg: TrainConfig, tok_cfg: TokenizerConfig | None, out: str | Path,
                 resume: bool = False) -> TrainResult:
    """The whole `kollm train` (also the quickstart's training step). `tok_cfg`: train a tokenizer when
    `cfg.tokenizer` is empty (None: a tokenizer folder is required)."""
    out = Path(out)
    model_cfg = model_cfg.resolved()  # the one resolve of the run: shape errors before any data is read
    if not cfg.tokenizer and tok_cfg is None:
        raise KollmError("no tokenizer: pass --tokenizer DIR (make one with `kollm tokenizer train`) "
                         "or add a [tokenizer] section to the recipe")
    texts, val_texts = read_corpus(cfg, out)
    tok = load_or_train_tokenizer(cfg, tok_cfg, texts, out)
    return train_model(model_cfg, cfg, tok, cfg.data if texts is None else texts, val_texts, out, resume=resume)

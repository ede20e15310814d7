"""`kollm tokenizer ...` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from kollm.tokenizer.config import METHODS

app = typer.Typer(help="Train Korean tokenizers (saved in Hugging Face format).", no_args_is_help=True)


@app.command("train")
def train(
    data: list[Path] = typer.Option(None, "--data", help="jsonl/txt files or folders to learn from (repeatable)"),
    out: Path = typer.Option(..., help="folder to write tokenizer.json and tokenizer_config.json"),
    recipe: Path = typer.Option(None, help="TOML recipe with a \\[tokenizer] section"),
    method: str = typer.Option(None, help=" | ".join(METHODS)),
    vocab_size: int = typer.Option(None, help="number of tokens in the vocabulary"),
    min_frequency: int = typer.Option(None, help="BPE: least count for a merge"),
    special_token: list[str] = typer.Option(
        None, "--special-token", help="extra special token (repeatable); kollm's own are always in"
    ),
    sample_size: int = typer.Option(None, help="train on at most this many documents, drawn at random (0 = all)"),
    threads: int = typer.Option(None, help="worker threads for Kiwi and the trainer (0 = all cores)"),
) -> None:
    """Train a tokenizer on text files and save it where AutoTokenizer can load it."""
    from kollm.config import override, read_recipe
    from kollm.data.sources import read_texts
    from kollm.errors import KollmError
    from kollm.tokenizer.config import TokenizerConfig
    from kollm.tokenizer.train import check_config, save_tokenizer, train_tokenizer

    cfg = override(read_recipe(recipe, "tokenizer train", {"tokenizer": TokenizerConfig})["tokenizer"],
                   method=method, vocab_size=vocab_size, min_frequency=min_frequency, sample_size=sample_size,
                   threads=threads, extra_special_tokens=tuple(special_token) if special_token else None)
    check_config(cfg)  # fail on a bad option before reading gigabytes
    if not data:
        raise KollmError("no input: pass --data FILE_OR_FOLDER (repeatable) with the text to learn from")
    tok = train_tokenizer(read_texts(data), cfg)
    save_tokenizer(tok, out)
    got = tok.get_vocab_size()
    short = f" (the corpus supports no more than {got} of the {cfg.vocab_size} asked for)" * (got < cfg.vocab_size)
    typer.echo(f"{cfg.method}: {got} tokens{short} -> {out}")


@app.command("extend")
def extend_cmd(
    data: list[Path] = typer.Option(..., "--data", help="Korean jsonl/txt files or folders to learn new tokens from"),
    base: Path = typer.Option(..., help="folder with the existing tokenizer.json (Llama/Gemma/GPT-2 style BPE)"),
    out: Path = typer.Option(..., help="folder for the extended tokenizer (and resized model)"),
    model: Path = typer.Option(None, help="HF causal-LM folder whose embeddings to resize (optional)"),
    new_tokens: int = typer.Option(8000, help="how many tokens to add at most"),
    min_frequency: int = typer.Option(2, help="least count for a new token"),
) -> None:
    """Add Korean tokens to an existing tokenizer; with --model, resize its embeddings to match."""
    from kollm.data.sources import read_texts
    from kollm.tokenizer.extend import extend

    ext = extend(base, read_texts(data), new_tokens, out, model, min_frequency)
    typer.echo(f"added {len(ext.added)} tokens (ids {ext.first_new_id}..{ext.first_new_id + len(ext.added) - 1})"
               f"{' and resized the model' if model else ''} -> {out}")

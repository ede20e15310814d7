"""`kollm tokenizer ...` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from kollm.data.readers import expand_sources, read_documents
from kollm.tokenizer.config import TokenizerConfig
from kollm.tokenizer.train import save_tokenizer, train_tokenizer

app = typer.Typer(help="Train Korean tokenizers (saved in Hugging Face format).", no_args_is_help=True)


@app.command("train")
def train(
    paths: list[Path] = typer.Argument(..., help="jsonl/txt files or folders to learn from"),
    out: Path = typer.Option(..., help="folder to write tokenizer.json and tokenizer_config.json"),
    method: str = typer.Option("bbpe", help="bbpe (byte-level BPE)"),
    vocab_size: int = typer.Option(TokenizerConfig.vocab_size, help="number of tokens in the vocabulary"),
) -> None:
    """Train a tokenizer on text files and save it where AutoTokenizer can load it."""
    cfg = TokenizerConfig(method=method, vocab_size=vocab_size)
    texts = (d["text"] for f in expand_sources([str(p) for p in paths]) for d in read_documents(f))
    tok = train_tokenizer(texts, cfg)
    save_tokenizer(tok, out)
    typer.echo(f"{tok.get_vocab_size()} tokens -> {out}")

"""`kollm tokenizer ...` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import typer

from kollm.data.readers import expand_sources, read_documents
from kollm.tokenizer.config import METHODS, TokenizerConfig

app = typer.Typer(help="Train Korean tokenizers (saved in Hugging Face format).", no_args_is_help=True)


def _texts(paths: list[Path]) -> Iterator[str]:
    # expand_sources/read_documents raise KollmError (exit 2) for missing, empty, binary or non-UTF-8 files.
    for f in expand_sources([str(p) for p in paths]):
        for d in read_documents(f):
            yield d["text"]


@app.command("train")
def train(
    paths: list[Path] = typer.Argument(..., help="jsonl/txt files or folders to learn from"),
    out: Path = typer.Option(..., help="folder to write tokenizer.json and tokenizer_config.json"),
    method: str = typer.Option("bbpe", help=" | ".join(METHODS)),
    vocab_size: int = typer.Option(TokenizerConfig.vocab_size, help="number of tokens in the vocabulary"),
    min_frequency: int = typer.Option(TokenizerConfig.min_frequency, help="BPE: least count for a merge"),
    special_token: list[str] = typer.Option(
        [], "--special-token", help="extra special token (repeatable); BOS/EOS/PAD and PII placeholders are always in"
    ),
    chat_tokens: bool = typer.Option(True, "--chat-tokens/--no-chat-tokens", help="add <|im_start|>/<|im_end|>"),
    sample_size: int = typer.Option(0, help="train on at most this many documents, drawn at random (0 = all)"),
    threads: int = typer.Option(0, help="worker threads for Kiwi and the trainer (0 = all cores)"),
) -> None:
    """Train a tokenizer on text files and save it where AutoTokenizer can load it."""
    from kollm.tokenizer.train import check_config, save_tokenizer, train_tokenizer

    cfg = TokenizerConfig(
        method=method, vocab_size=vocab_size, min_frequency=min_frequency, chat_tokens=chat_tokens,
        extra_special_tokens=tuple(special_token), sample_size=sample_size, threads=threads,
    )
    check_config(cfg)  # fail on a bad option before reading gigabytes
    tok = train_tokenizer(_texts(paths), cfg)
    save_tokenizer(tok, out)
    got = tok.get_vocab_size()
    short = f" (the corpus supports no more than {got} of the {vocab_size} asked for)" if got < vocab_size else ""
    typer.echo(f"{method}: {got} tokens{short} -> {out}")


@app.command("extend")
def extend_cmd(
    paths: list[Path] = typer.Argument(..., help="Korean jsonl/txt files or folders to learn new tokens from"),
    base: Path = typer.Option(..., help="folder with the existing tokenizer.json (Llama/Gemma/GPT-2 style BPE)"),
    out: Path = typer.Option(..., help="folder for the extended tokenizer (and resized model)"),
    model: Path = typer.Option(None, help="HF causal-LM folder whose embeddings to resize (optional)"),
    new_tokens: int = typer.Option(8000, help="how many tokens to add at most"),
    min_frequency: int = typer.Option(2, help="least count for a new token"),
) -> None:
    """Add Korean tokens to an existing tokenizer; with --model, resize its embeddings to match."""
    from kollm.tokenizer.extend import extend

    ext = extend(base, _texts(paths), new_tokens, out, model, min_frequency)
    typer.echo(f"added {len(ext.added)} tokens (ids {ext.first_new_id}..{ext.first_new_id + len(ext.added) - 1})"
               f"{' and resized the model' if model else ''} -> {out}")

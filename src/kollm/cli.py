"""The `kollm` command. Each stage owns its sub-commands; this file only wires them together.

Heavy libraries (torch, transformers) are imported inside commands so `kollm --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kollm.data.cli import app as data_app
from kollm.errors import KollmError
from kollm.tokenizer.cli import app as tokenizer_app

app = typer.Typer(
    help="kollm: build Korean language models end to end - corpus, tokenizer, training, evaluation, serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")

DEFAULT_OUT = Path("kollm-out")


@app.command()
def train(
    recipe: Path = typer.Option(None, help="TOML recipe with model, train (and optional tokenizer) sections"),
    data: Path = typer.Option(None, help="training corpus (.jsonl with a `text` field)"),
    val: Path = typer.Option(None, help="validation corpus (.jsonl); val bits-per-byte is logged on it"),
    tokenizer: Path = typer.Option(None, help="tokenizer folder (tokenizer.json)"),
    out: Path = typer.Option(DEFAULT_OUT / "train", help="run folder: checkpoint/, model/ (HF export), metrics"),
    depth: int = typer.Option(None, help="model depth: sets width, heads and MLP size"),
    time_budget: float = typer.Option(None, help="stop (saving cleanly) after this many seconds"),
    max_steps: int = typer.Option(None, help="stop after this many optimiser steps"),
    max_tokens: int = typer.Option(None, help="stop after this many training tokens"),
    optimizer: str = typer.Option(None, help="adamw | muon | adamp"),
    batch_size: int = typer.Option(None, help="sequences per optimiser step over all processes (0 = derived)"),
    lr: float = typer.Option(None, help="AdamW/AdamP learning rate (0 = derived from the model size)"),
    compile_: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model"),
    resume: bool = typer.Option(False, help="continue from the latest complete checkpoint in --out"),
) -> None:
    """Pretrain a decoder-only LM; the best model is exported as a Hugging Face folder in OUT/model.

    Shard over K processes with: torchrun --nproc_per_node K -m kollm.cli train ...
    """
    from kollm.train.run import train_from_cli

    train_from_cli(recipe, data, val, tokenizer, out, depth, time_budget, max_steps, resume,
                   max_tokens=max_tokens, optimizer=optimizer, batch_size=batch_size, lr=lr, compile=compile_)


@app.command("eval")
def eval_(
    model: Path = typer.Option(..., help="Hugging Face causal-LM folder"),
    data: Path = typer.Option(..., help="jsonl corpus with a `text` field"),
    ctx: int = typer.Option(None, help="context window in tokens (default: the model's maximum, at most 1024)"),
    out: Path = typer.Option(None, help="write metrics.json here (default: print only)"),
) -> None:
    """Bits-per-byte of any HF causal LM on your text (lower is better; 8 = no better than uniform bytes)."""
    from kollm.eval.bpb import eval_from_cli

    eval_from_cli(model, data, ctx, out)


@app.command()
def generate(
    model: Path = typer.Option(..., help="Hugging Face causal-LM folder"),
    prompt: list[str] = typer.Option(..., help="prompt text (repeat for several)"),
    max_new_tokens: int = typer.Option(64),
    temperature: float = typer.Option(0.8, help="0 = greedy"),
    top_p: float = typer.Option(0.95),
    seed: int = typer.Option(0),
) -> None:
    """Continue Korean prompts with a model."""
    from kollm.serve.engine import Engine

    engine = Engine.load(model)
    for p in prompt:
        res = engine.complete(p, max_new_tokens, temperature, top_p, seed=seed)
        typer.echo(f"{p}{res.text}")


@app.command()
def serve(
    model: Path = typer.Option(..., help="Hugging Face causal-LM folder"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
) -> None:
    """OpenAI-compatible HTTP API: POST /v1/completions, GET /v1/models."""
    from kollm.serve.app import run_server

    run_server(model, host, port)


@app.command()
def quickstart(
    data: list[Path] = typer.Option(None, "--data", help="your jsonl/txt files (default: embedded sample corpus)"),
    out: Path = typer.Option(DEFAULT_OUT, help="everything the run makes goes here"),
    time_budget: float = typer.Option(None, help="training seconds (default from recipes/quickstart.toml)"),
    recipe: Path = typer.Option(None, help="TOML recipe (default: the embedded quickstart recipe)"),
    serve_: bool = typer.Option(True, "--serve/--no-serve", help="start the API server at the end"),
    port: int = typer.Option(8000),
) -> None:
    """Korean text -> tokenizer -> trained model -> val bits-per-byte -> samples -> HTTP API, in one go."""
    from kollm.quickstart import run_quickstart

    run_quickstart(data, out, time_budget, recipe, serve_, port)


def main() -> None:
    try:
        app()
    except KollmError as e:
        typer.echo(f"kollm: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("kollm: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

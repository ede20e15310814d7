"""The `kollm` command. One shape for every stage: `kollm <stage> [verb] --options`, each stage's group living in
`kollm/<stage>/cli.py`; this file only mounts them (and the quickstart, which runs them all).

Inputs are spelled the same everywhere: `--data` for text, `--model` for a model folder, `--tokenizer` for a
tokenizer folder, `--out` for what a command writes, `--recipe` for a TOML recipe (each command reads only
its own sections and refuses the others). Heavy libraries (torch, transformers) are imported inside
commands so `kollm --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kollm.data.cli import app as data_app
from kollm.errors import KollmError
from kollm.eval.cli import app as eval_app
from kollm.interop.cli import export_app, import_app
from kollm.serve.cli import app as serve_app
from kollm.studio.cli import app as studio_app
from kollm.tokenizer.cli import app as tokenizer_app
from kollm.train.cli import app as train_app
from kollm.tune.cli import app as tune_app

app = typer.Typer(
    help="kollm: build Korean language models end to end - corpus, tokenizer, training, evaluation, serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(train_app, name="train")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.add_typer(tune_app, name="tune")
app.add_typer(eval_app, name="eval")
app.add_typer(serve_app, name="serve")
app.add_typer(studio_app, name="studio")


@app.command()
def quickstart(
    data: list[Path] = typer.Option(None, "--data", help="your text files or folders (default: embedded sample)"),
    out: Path = typer.Option(Path("kollm-out"), help="everything the run makes goes here"),
    time_budget: float = typer.Option(None, help="training seconds (default from recipes/quickstart.toml)"),
    recipe: Path = typer.Option(None, help="TOML recipe (default: the embedded quickstart recipe)"),
    serve_: bool = typer.Option(True, "--serve/--no-serve", help="start the API server at the end"),
    port: int = typer.Option(None, help="API port (default from the recipe's \\[serve], 8000)"),
) -> None:
    """Korean text -> clean corpus -> tokenizer -> trained model -> bits-per-byte -> samples -> HTTP API."""
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

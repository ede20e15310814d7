"""`kollm eval`: bits-per-byte of any Hugging Face causal LM on your text."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate models: bits-per-byte of any HF causal LM.", invoke_without_command=True)


@app.callback()
def eval_(
    ctx: typer.Context,
    recipe: Path = typer.Option(None, help="TOML recipe with an [eval] section"),
    model: Path = typer.Option(None, help="Hugging Face causal-LM folder"),
    data: Path = typer.Option(None, help="text to score: .jsonl (`text` field) or .txt file or folder"),
    context: int = typer.Option(None, "--ctx", help="context window in tokens (default: the model's, at most 1024)"),
    out: Path = typer.Option(None, help="write metrics.json here (default: print only)"),
) -> None:
    """Bits-per-byte of any HF causal LM on your text (lower is better; 8 = no better than uniform bytes)."""
    if ctx.invoked_subcommand:
        return
    from kollm.config import override, read_recipe
    from kollm.eval.bpb import run_eval
    from kollm.eval.config import EvalConfig

    cfg = override(read_recipe(recipe, "eval", {"eval": EvalConfig})["eval"], model=str(model) if model else None,
                   data=str(data) if data else None, ctx=context, out=str(out) if out else None)
    run_eval(cfg)

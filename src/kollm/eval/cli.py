"""`kollm eval`: few-shot Korean (and any lm-eval) tasks for models and shot counts; bits-per-byte on your text."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Evaluate models: lm-eval tasks x models x shots (report + plots), or bits-per-byte.",
                  invoke_without_command=True)


@app.callback()
def eval_(
    ctx: typer.Context,
    recipe: Path = typer.Option(None, help="TOML recipe with an \\[eval] section"),
    model: list[str] = typer.Option(None, help="HF model folder or OpenAI-compatible server URL (repeat to compare)"),
    tasks: str = typer.Option(None, help="comma-separated lm-eval task names (kollm_ko, kollm_sentiment, kobest_copa"
                                         ", ...), task YAML paths, or kollm_TASK=FILE|HF_ID for other data"),
    shots: str = typer.Option(None, help="comma-separated few-shot counts, e.g. 0,1,5 (default 0)"),
    limit: int = typer.Option(None, help="at most this many items per task (smoke runs)"),
    backend: str = typer.Option(None, help="in-process engine: kollm (shared-context KV reuse, default) or hf"),
    tokenizer: Path = typer.Option(None, help="tokenizer folder (needed with a server URL; default: the model's)"),
    batch_size: int = typer.Option(None, help="requests per forward pass (default 8)"),
    data: Path = typer.Option(None, help="bits-per-byte: text to score, .jsonl (`text` field) or .txt file or folder"),
    context: int = typer.Option(None, "--ctx", help="bits-per-byte: context window in tokens (default: the model's, "
                                                    "at most 1024)"),
    out: Path = typer.Option(None, help="tasks: run folder (results.json, report.md, plots); bits-per-byte: "
                                        "metrics.json path (default: print only)"),
) -> None:
    """Few-shot tasks on lm-evaluation-harness (--tasks), or bits-per-byte of a model on your text (--data)."""
    if ctx.invoked_subcommand:
        return
    from kollm.config import override, read_recipe
    from kollm.errors import KollmError
    from kollm.eval.config import EvalConfig

    model = list(model or [])
    cfg = override(read_recipe(recipe, "eval", {"eval": EvalConfig})["eval"],
                   model=model[0] if model else None, models=model[1:] if model else None, tasks=tasks, shots=shots,
                   limit=limit, backend=backend, tokenizer=str(tokenizer) if tokenizer else None,
                   batch_size=batch_size, data=str(data) if data else None, ctx=context,
                   out=str(out) if out else None)
    if cfg.tasks and cfg.data:
        raise KollmError("give --tasks (few-shot tasks) or --data (bits-per-byte), not both")
    if cfg.tasks:
        from kollm.eval.harness import run_tasks

        run_tasks(cfg)
        return
    from kollm.eval.bpb import run_eval

    run_eval(cfg)


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="folders written by kollm eval --tasks"),
    out: Path = typer.Option(None, help="where report.md and plots go (default: the first RUN_DIR)"),
) -> None:
    """Rebuild report.md and the plots across several runs' results.json."""
    from kollm.eval.report import compare as run_compare

    typer.echo(f"wrote {run_compare(run_dirs, out)}")

"""`kollm train` (pretrain) and `kollm train export` (any checkpoint of a run -> a HF folder)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Pretrain decoder-only LMs; export any checkpoint.", invoke_without_command=True)


@app.callback()
def train(
    ctx: typer.Context,
    recipe: Path = typer.Option(None, help="TOML recipe: \\[model], \\[train], optional \\[tokenizer]"),
    data: Path = typer.Option(None, help="training text (.jsonl/.txt file or folder) or a token-shard folder"),
    val: Path = typer.Option(None, help="validation text; default: hold out \\[train].val_fraction of --data"),
    tokenizer: Path = typer.Option(None, help="tokenizer folder (default: train one from the recipe's \\[tokenizer])"),
    out: Path = typer.Option(Path("kollm-out/train"), help="run folder: checkpoint/, model/ (HF export), metrics"),
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
    if ctx.invoked_subcommand:
        return
    from kollm.train.distributed import init_distributed, shutdown
    from kollm.train.run import train_from_recipe

    info = init_distributed()  # one process, or this rank's process group under torchrun
    try:
        res = train_from_recipe(recipe, out, resume, depth, data=str(data) if data else None,
                                val_data=str(val) if val else None, tokenizer=str(tokenizer) if tokenizer else None,
                                time_budget=time_budget, max_steps=max_steps, max_tokens=max_tokens,
                                optimizer=optimizer, batch_size=batch_size, lr=lr, compile=compile_)
    finally:
        shutdown(info)  # the process group is destroyed on every exit path, errors included
    if info.is_main:
        typer.echo(f"{res.steps} steps, {res.tokens:,} tokens, {res.tokens_per_s:,.0f} tok/s, MFU {res.mfu:.0%}; "
                   f"loss {res.first_loss:.3f} -> {res.final_loss:.3f}; val bpb best {res.best_val_bpb:.4f}, "
                   f"final {res.final_val_bpb:.4f}; best model -> {res.model_dir}, final -> {res.final_dir}")


@app.command("export")
def export(
    run: Path = typer.Option(..., help="run folder of `kollm train` (holds checkpoint/ and tokenizer/)"),
    step: int = typer.Option(None, help="checkpoint step (default: the latest complete one)"),
    out: Path = typer.Option(None, help="HF folder to write (default: RUN/export-step-XXXXXXXX)"),
) -> None:
    """Export a checkpoint of a run (saved by any number of processes) as a Hugging Face folder."""
    from kollm.train.export import export_checkpoint

    typer.echo(f"-> {export_checkpoint(run, step, out)}")

"""`kollm data ...` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from kollm.data.config import DataConfig
from kollm.data.prepare import prepare_corpus

app = typer.Typer(help="Turn raw Korean text into a clean training corpus.", no_args_is_help=True)


@app.command("prepare")
def prepare(
    data: list[Path] = typer.Option(None, "--data", help="jsonl/txt files or folders (default: embedded sample)"),
    out: Path = typer.Option(Path("kollm-out/corpus"), help="folder for train.jsonl, val.jsonl, stats.json"),
    val_fraction: float = typer.Option(None, help="share of documents held out for validation (default 0.1)"),
) -> None:
    """Read, NFC-normalise, drop empty and duplicate documents, and split train/val."""
    cfg = DataConfig(sources=[str(p) for p in data or []])
    if val_fraction is not None:
        cfg.val_fraction = val_fraction
    stats = prepare_corpus(cfg, out)
    typer.echo(f"{stats['train_docs']} train / {stats['val_docs']} val documents -> {out}")

"""`kollm tune`: LoRA (peft) or full fine-tuning of a Hugging Face causal LM on one job's examples."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Tune a model on one Korean job's examples (LoRA or full).", invoke_without_command=True)


@app.callback()
def tune(
    model: Path = typer.Option(..., help="Hugging Face causal-LM folder to tune (Gemma 3, Qwen, Llama, kollm)"),
    data: list[Path] = typer.Option(None, "--data", help="jsonl examples: messages | prompt+completion | text | "
                                    "inputs+expected (repeatable; adds to the recipe's \\[tune].data)"),
    out: Path = typer.Option(Path("kollm-out/tune"), help="run folder: adapter/ (or model/), merged/, metrics, PNG"),
    recipe: Path = typer.Option(None, help="TOML recipe: \\[tune], and \\[data] for typo synthesis rates"),
    method: str = typer.Option(None, help="lora | full"),
    template: str = typer.Option(None, help="prompt template for inputs+expected rows ({{name}} variables)"),
    steps: int = typer.Option(None, help="optimiser steps (an upper bound with early stopping)"),
    lr: float = typer.Option(None, help="peak learning rate (default 2e-4 LoRA, 2e-5 full)"),
    merge: bool = typer.Option(None, "--merge/--no-merge", help="also write OUT/merged, a plain HF folder"),
    seed: int = typer.Option(None, help="data order, held-out split and typo synthesis"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint"),
) -> None:
    """Tune MODEL on your examples; the best checkpoint (held-out score) lands in OUT/adapter (PEFT) or OUT/model.

    Serve it: kollm serve --model MODEL --lora NAME=OUT/adapter   (vLLM: --enable-lora --lora-modules NAME=OUT/adapter)
    """
    from kollm.config import override, read_recipe
    from kollm.data.config import DataConfig
    from kollm.tune.config import TuneConfig
    from kollm.tune.run import run_tune

    sections = read_recipe(recipe, "tune", {"tune": TuneConfig, "data": DataConfig})
    cfg: TuneConfig = sections["tune"]
    cfg = override(cfg, method=method, template=template, steps=steps, lr=lr, merge=merge, seed=seed)
    if data:
        cfg = override(cfg, data=[*cfg.data, *map(str, data)])
    res = run_tune(cfg, model, out, resume, data=override(sections["data"], typo_seed=seed))
    for note in res.notes:
        typer.echo(f"note: {note}")
    before, best = res.before, res.best
    line = f"{res.steps} steps, {res.tokens_per_s:,.0f} tok/s"
    if before:
        line += f"; held-out bits/byte {before['val_bpb']:.4f} -> {best['val_bpb']:.4f}"
        if res.metric in before:
            line += f", {res.metric} {before[res.metric]:.3f} -> {best[res.metric]:.3f}"
        line += f" (best at step {res.best_step}{', stopped early' if res.stopped_early else ''})"
    typer.echo(line)
    for what, path in (("adapter", res.adapter), ("model", res.model), ("merged", res.merged)):
        if path:
            typer.echo(f"{what} -> {path}")
    typer.echo(f"metrics -> {res.out / 'metrics.json'}, curve -> {res.out / 'loss.png'}")

"""`kollm serve` (the OpenAI-compatible API) and `kollm serve generate` (continue prompts in the terminal)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Serve a model over an OpenAI-compatible API, or generate in the terminal.",
                  invoke_without_command=True)


def _config(recipe: Path | None, command: str, model: Path | None, **flags: object) -> object:
    from kollm.config import override, read_recipe
    from kollm.errors import KollmError
    from kollm.serve.config import ServeConfig

    cfg = override(read_recipe(recipe, command, {"serve": ServeConfig})["serve"],
                   model=str(model) if model else None, **flags)
    if not cfg.model:
        raise KollmError(f"kollm {command} needs --model DIR (a Hugging Face causal-LM folder) or [serve].model")
    return cfg


@app.callback()
def serve(
    ctx: typer.Context,
    recipe: Path = typer.Option(None, help="TOML recipe with a [serve] section"),
    model: Path = typer.Option(None, help="Hugging Face causal-LM folder"),
    host: str = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8000)"),
    chat_template: Path = typer.Option(None, help="Jinja chat template, for a model whose tokenizer has none"),
) -> None:
    """OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize."""
    if ctx.invoked_subcommand:
        return
    from kollm.serve.app import run_server

    cfg = _config(recipe, "serve", model, host=host, port=port,
                  chat_template=str(chat_template) if chat_template else None)
    run_server(cfg.model, cfg.host, cfg.port, cfg.chat_template or None)


@app.command("generate")
def generate(
    model: Path = typer.Option(None, help="Hugging Face causal-LM folder"),
    prompt: list[str] = typer.Option(..., help="prompt text (repeat for several)"),
    recipe: Path = typer.Option(None, help="TOML recipe with a [serve] section"),
    max_new_tokens: int = typer.Option(64),
    temperature: float = typer.Option(None, help="0 = greedy (default: the model's generation_config.json)"),
    top_p: float = typer.Option(None, help="default: the model's generation_config.json"),
    seed: int = typer.Option(0),
) -> None:
    """Continue Korean prompts with a model."""
    from kollm.serve.engine import Engine

    engine = Engine.load(_config(recipe, "serve generate", model).model)
    for p in prompt:
        res = engine.complete(p, max_new_tokens, temperature, top_p, seed=seed)  # None: the model's defaults
        typer.echo(f"{p}{res.text}")

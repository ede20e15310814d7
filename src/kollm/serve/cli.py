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
    recipe: Path = typer.Option(None, help="TOML recipe with a \\[serve] section"),
    model: Path = typer.Option(None, help="Hugging Face causal-LM folder"),
    served_model_name: list[str] = typer.Option(None, help="the model's name in the API (repeat for aliases; "
                                                "default: the folder's name, and its path is accepted too)"),
    host: str = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8000)"),
    chat_template: Path = typer.Option(None, help="Jinja chat template, for a model whose tokenizer has none"),
    api_key: str = typer.Option(None, envvar="KOLLM_API_KEY", help="require this key (besides those in --keys-db)"),
    keys_db: Path = typer.Option(None, help="key store of `kollm serve keys` (default ~/.local/share/kollm)"),
    rate_limit: float = typer.Option(None, help="requests per second per key; 0 = off"),
    mask_pii: bool = typer.Option(None, "--mask-pii/--no-mask-pii",
                                  help="mask personal data (RRN, phone, card, account, e-mail) in every output"),
    max_num_seqs: int = typer.Option(None, help="requests in the running batch at once (default 64)"),
    prefix_cache_mb: int = typer.Option(None, help="KV of recent prompts kept for reuse; 0 = off (default 1024)"),
    kv_cache_mb: int = typer.Option(None, help="KV of the running batch at most; more requests wait (default 4096)"),
    speculative: str = typer.Option(None, help="ngram: draft tokens from the request's own text when it pays "
                                    "(same output); draft: from --draft-model; off (default ngram)"),
    draft_model: Path = typer.Option(None, help="with --speculative draft: a small causal-LM folder with the "
                                     "model's tokenizer that proposes tokens"),
    max_model_len: int = typer.Option(None, help="context length (prompt + output) in tokens (default: the model's)"),
    lora: list[str] = typer.Option(None, help="a LoRA adapter as NAME=DIR (a peft save_pretrained folder); requests "
                                   "with model=NAME run it (repeat for several, served side by side)"),
    allow_runtime_lora: bool = typer.Option(None, "--allow-runtime-lora/--no-allow-runtime-lora",
                                            help="allow /v1/load_lora_adapter and /v1/unload_lora_adapter"),
    whisper: Path = typer.Option(None, help="CTranslate2 whisper folder (`kollm import whisper --out DIR`): adds "
                                 "POST /v1/audio/transcriptions"),
) -> None:
    """OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /metrics."""
    if ctx.invoked_subcommand:
        return
    from kollm.serve.app import run_server

    run_server(_config(recipe, "serve", model, served_model_name=served_model_name or None, host=host, port=port,
                       api_key=api_key, rate_limit=rate_limit,
                       mask_pii=mask_pii, max_num_seqs=max_num_seqs, prefix_cache_mb=prefix_cache_mb,
                       kv_cache_mb=kv_cache_mb, speculative=speculative, max_model_len=max_model_len,
                       draft_model=str(draft_model) if draft_model else None, lora=lora or None,
                       allow_runtime_lora=allow_runtime_lora,
                       chat_template=str(chat_template) if chat_template else None,
                       keys_db=str(keys_db) if keys_db else None, whisper=str(whisper) if whisper else None))


keys = typer.Typer(help="API keys for `kollm serve` (stored hashed; a key is shown once).", no_args_is_help=True)
app.add_typer(keys, name="keys")
KEYS_DB = typer.Option(None, help="key store (default ~/.local/share/kollm/keys.db)")


def _store(keys_db: Path | None) -> object:
    from kollm.serve.config import ServeConfig
    from kollm.serve.keys import KeyStore

    return KeyStore(Path(keys_db or ServeConfig.keys_db).expanduser())


@keys.command("create")
def keys_create(name: str = typer.Option(..., help="who or what the key is for"), keys_db: Path = KEYS_DB) -> None:
    """Make a key; it is printed once and only its hash is stored."""
    kid, key = _store(keys_db).create(name)
    typer.echo(f"{key}\n(id {kid}; store it now: it cannot be shown again)")


@keys.command("list")
def keys_list(keys_db: Path = KEYS_DB) -> None:
    """Keys by id, name, prefix and state (never the keys themselves)."""
    import time

    for k in _store(keys_db).list():
        state = "revoked" if k["revoked"] else "active"
        typer.echo(f"{k['id']}  {k['name']:<20} {k['prefix']}...  {state:<8} "
                   f"created {time.strftime('%Y-%m-%d %H:%M', time.localtime(k['created']))}")


@keys.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="the id shown by `kollm serve keys list`"),
                keys_db: Path = KEYS_DB) -> None:
    """Revoke a key: servers refuse it within a few seconds, without a restart."""
    _store(keys_db).revoke(key_id)
    typer.echo(f"revoked {key_id}")


@app.command("generate")
def generate(
    model: Path = typer.Option(None, help="Hugging Face causal-LM folder"),
    prompt: list[str] = typer.Option(..., help="prompt text (repeat for several)"),
    recipe: Path = typer.Option(None, help="TOML recipe with a \\[serve] section"),
    max_new_tokens: int = typer.Option(64),
    temperature: float = typer.Option(None, help="0 = greedy (default: the model's generation_config.json)"),
    top_p: float = typer.Option(None, help="default: the model's generation_config.json"),
    seed: int = typer.Option(0),
) -> None:
    """Continue Korean prompts with a model."""
    from kollm.serve.engine import Engine

    cfg = _config(recipe, "serve generate", model)
    engine = Engine.load(cfg.model, config=cfg.engine())
    for p in prompt:
        res = engine.complete(p, max_new_tokens, temperature, top_p, seed=seed)  # None: the model's defaults
        typer.echo(f"{p}{res.text}")

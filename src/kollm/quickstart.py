"""`kollm quickstart`: every stage once, small and honest, on a CPU laptop, through the same code as the stage
commands: `kollm data run` (heavy stages off) -> `kollm train` (tokenizer, then model) -> `kollm eval` ->
samples -> `kollm serve`, with `kollm studio` on the served API.
"""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

import typer

from kollm.config import override, read_recipe
from kollm.data import DataConfig
from kollm.data.sources import read_texts, sample_corpus_files
from kollm.errors import KollmError
from kollm.files import write_json
from kollm.model import ModelConfig
from kollm.serve import ServeConfig
from kollm.studio import StudioConfig
from kollm.tokenizer import TokenizerConfig
from kollm.train import TrainConfig

SAMPLE_PROMPTS = ("대한민국의 수도는", "오늘 날씨가 좋아서", "이 제품을 써 보니")
SECTIONS = {"data": DataConfig, "tokenizer": TokenizerConfig, "model": ModelConfig, "train": TrainConfig,
            "serve": ServeConfig, "studio": StudioConfig}


def default_recipe() -> Path:
    return Path(str(resources.files("kollm") / "resources" / "quickstart.toml"))


def _step(n: int, title: str) -> float:
    typer.secho(f"\n[{n}/5] {title}", bold=True)
    return time.perf_counter()


def run_quickstart(data: list[Path] | None, out: Path, time_budget: float | None, recipe: Path | None,
                   serve: bool, port: int | None = None) -> dict:
    r = read_recipe(recipe or default_recipe(), "quickstart", SECTIONS)
    out = Path(out)
    inputs = [str(p) for p in data] if data else (r["data"].inputs or [str(f) for f in sample_corpus_files()])
    data_cfg = override(r["data"], inputs=inputs, out=str(out / "corpus"))
    train_cfg = override(r["train"], time_budget=time_budget, data=str(out / "corpus" / "clean"), val_data="",
                         tokenizer="")
    serve_cfg = override(r["serve"], port=port)
    if train_cfg.time_budget <= 0:
        raise KollmError("--time-budget must be a positive number of seconds")
    model_cfg = r["model"].resolved()  # shape errors before any work
    summary: dict = {"out": str(out)}

    from kollm.data.pipeline import run_pipeline
    from kollm.data.report import summarize

    t = _step(1, "corpus: kollm data run (read, normalise, mask PII, exact de-duplication)")
    shutil.rmtree(out / "corpus", ignore_errors=True)  # a fresh corpus each time: the recipe may have changed
    run_pipeline(data_cfg)
    stages = {s["stage"]: s for s in summarize(out / "corpus")["stages"]}
    kept = read_texts([out / "corpus" / "clean"])
    read = stages["read"]["docs_out"]
    typer.echo(f"  {read} documents read, {read - len(kept)} removed (empty or duplicate) -> {len(kept)} documents "
               f"({sum(len(t.encode()) for t in kept):,} bytes) in {out / 'corpus' / 'clean'}")
    summary["corpus"] = {"read": read, "kept": len(kept), "stages": list(stages.values()),
                         "seconds": round(time.perf_counter() - t, 1)}

    from kollm.train.run import run_training

    t = _step(2, f"train: {r['tokenizer'].method} tokenizer ({r['tokenizer'].vocab_size}), then depth "
                 f"{model_cfg.depth} for {train_cfg.time_budget:.0f} s")
    res = run_training(model_cfg, train_cfg, r["tokenizer"], out / "train")
    val_path = out / "train" / "val.jsonl"
    val_texts = read_texts([val_path])
    typer.echo(f"  {res.steps} steps, {res.tokens:,} tokens at {res.tokens_per_s:,.0f} tokens/s; "
               f"loss {res.first_loss:.3f} -> {res.final_loss:.3f}")
    summary["corpus"].update(train_docs=len(kept) - len(val_texts), val_docs=len(val_texts))
    summary["train"] = {"steps": res.steps, "tokens": res.tokens, "tokens_per_s": round(res.tokens_per_s),
                        "first_loss": res.first_loss, "final_loss": res.final_loss,
                        "seconds": round(time.perf_counter() - t, 1)}

    # Evaluate the exported folder through transformers, not the in-memory model: this is what users load.
    from kollm.eval.bpb import hf_bits_per_byte
    from kollm.model.hf import load_hf_causal_lm

    t = _step(3, "eval: held-out bits-per-byte of the exported Hugging Face model")
    model, tok = load_hf_causal_lm(res.model_dir)
    bpb = hf_bits_per_byte(model, tok, val_texts, model_cfg.max_seq_len)
    val_bytes = sum(len(x.encode()) for x in val_texts)
    bytes_per_token = val_bytes / max(1, sum(len(tok.encode(x, add_special_tokens=False)) for x in val_texts))
    write_json(out / "eval.json", {"model": str(res.model_dir), "data": str(val_path), "val_bits_per_byte": bpb,
                                   "val_bytes": val_bytes, "uniform_byte_bound": 8.0})
    typer.echo(f"  val bits-per-byte: {bpb:.4f}  (8.0 = uniform over bytes; {bytes_per_token:.2f} bytes/token)  "
               f"curves -> {out / 'train' / 'loss.png'}")
    summary["tokenizer"] = {"vocab": len(tok), "val_bytes_per_token": round(bytes_per_token, 3)}
    summary["eval"] = {"val_bpb": bpb, "seconds": round(time.perf_counter() - t, 1)}

    from kollm.serve.engine import Engine

    _step(4, "generate: Korean samples (sampling settings from the model's generation_config.json)")
    engine = Engine(model, tok, res.model_dir.name)
    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        c = engine.complete(prompt, max_tokens=48, seed=i)
        samples.append(prompt + c.text)
        typer.echo(f"  > {prompt}{c.text}".replace("\n", " "))
    summary["samples"] = samples

    _step(5, "summary")
    write_json(out / "summary.json", summary)
    typer.echo(f"  model (Hugging Face folder): {res.model_dir}\n  val bits-per-byte: {bpb:.4f}\n"
               f"  tokens/s: {res.tokens_per_s:,.0f}\n  everything: {out}")
    if serve:
        from kollm.serve.app import run_server
        from kollm.studio.server import start_studio

        api = override(serve_cfg, model=str(res.model_dir))
        studio = override(r["studio"], model_url=f"http://{api.host}:{api.port}/v1", data=str(out / "studio"))
        studio_url = start_studio(studio)
        typer.echo(f"kollm: Studio at {studio_url}  (prompt apps on this model; /setup asks for the setup "
                   "token printed above)")
        run_server(api)
    else:
        typer.echo(f"  serve it with: kollm serve --model {res.model_dir}\n"
                   f"  and the Studio: kollm studio --model-url http://127.0.0.1:{serve_cfg.port}/v1")
    return summary

"""`kollm quickstart`: every stage once, small and honest, on a CPU laptop.

corpus -> tokenizer -> train (bounded time) -> eval (val bits-per-byte via transformers) -> samples -> serve
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import typer

from kollm.config import load_recipe, override, section
from kollm.data import DataConfig
from kollm.data.prepare import prepare_corpus
from kollm.errors import KollmError
from kollm.files import read_jsonl, write_json
from kollm.model import ModelConfig
from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
from kollm.train import TrainConfig, train_model

SAMPLE_PROMPTS = ("대한민국의 수도는", "오늘 날씨가 좋아서", "이 제품을 써 보니")


def default_recipe() -> Path:
    return Path(str(resources.files("kollm") / "resources" / "quickstart.toml"))


def _step(n: int, title: str) -> float:
    typer.secho(f"\n[{n}/6] {title}", bold=True)
    return time.perf_counter()


def run_quickstart(data: list[Path] | None, out: Path, time_budget: float | None, recipe: Path | None,
                   serve: bool, port: int = 8000) -> dict:
    r = load_recipe(recipe or default_recipe())
    unknown = sorted(set(r) - {"data", "tokenizer", "model", "train"})
    if unknown:
        raise KollmError(f"unknown recipe section [{unknown[0]}]; use [data], [tokenizer], [model], [train]")
    data_cfg = override(section(r, "data", DataConfig), sources=[str(p) for p in data] if data else None)
    tok_cfg = section(r, "tokenizer", TokenizerConfig)
    model_cfg = section(r, "model", ModelConfig)
    train_cfg = override(section(r, "train", TrainConfig), time_budget=time_budget)
    if train_cfg.time_budget <= 0:
        raise KollmError("--time-budget must be a positive number of seconds")
    model_cfg.resolved()
    out = Path(out)
    summary: dict = {"out": str(out)}

    t = _step(1, "corpus: read, NFC-normalise, de-duplicate, split")
    stats = prepare_corpus(data_cfg, out / "corpus")
    typer.echo(f"  {stats['read']} documents read, {stats['duplicate']} duplicates and "
               f"{stats['empty_or_short']} empty/short dropped -> {stats['train_docs']} train "
               f"({stats['train_bytes']:,} bytes) / {stats['val_docs']} val ({stats['val_bytes']:,} bytes)")
    summary["corpus"] = {**stats, "seconds": round(time.perf_counter() - t, 1)}
    train_texts = [d["text"] for d in read_jsonl(out / "corpus" / "train.jsonl")]
    val_texts = [d["text"] for d in read_jsonl(out / "corpus" / "val.jsonl")]

    t = _step(2, f"tokenizer: {tok_cfg.method}, vocabulary {tok_cfg.vocab_size}")
    tokenizer = save_tokenizer(train_tokenizer(train_texts, tok_cfg), out / "tokenizer")
    n_tok = sum(len(tokenizer.encode(x)) for x in val_texts)
    bytes_per_token = stats["val_bytes"] / max(n_tok, 1)
    typer.echo(f"  {len(tokenizer)} tokens, {bytes_per_token:.2f} bytes/token on val -> {out / 'tokenizer'}")
    summary["tokenizer"] = {"vocab": len(tokenizer), "val_bytes_per_token": round(bytes_per_token, 3),
                            "seconds": round(time.perf_counter() - t, 1)}

    t = _step(3, f"train: depth {model_cfg.depth}, {train_cfg.time_budget:.0f} s budget, float32 on CPU")
    res = train_model(model_cfg, train_cfg, tokenizer, train_texts, val_texts, out / "train")
    typer.echo(f"  {res.steps} steps, {res.tokens:,} tokens at {res.tokens_per_s:,.0f} tokens/s; "
               f"loss {res.first_loss:.3f} -> {res.final_loss:.3f}")
    summary["train"] = {"steps": res.steps, "tokens": res.tokens, "tokens_per_s": round(res.tokens_per_s),
                        "first_loss": res.first_loss, "final_loss": res.final_loss,
                        "seconds": round(time.perf_counter() - t, 1)}

    # Evaluate the exported folder through transformers, not the in-memory model: this is what users load.
    from kollm.eval.bpb import hf_bits_per_byte
    from kollm.model.hf import load_hf_causal_lm

    t = _step(4, "eval: val bits-per-byte of the exported Hugging Face model")
    model, hf_tok = load_hf_causal_lm(res.model_dir)
    bpb = hf_bits_per_byte(model, hf_tok, val_texts, model_cfg.max_seq_len)
    write_json(out / "eval.json", {"model": str(res.model_dir), "val_bits_per_byte": bpb,
                                   "val_bytes": stats["val_bytes"], "uniform_byte_bound": 8.0})
    typer.echo(f"  val bits-per-byte: {bpb:.4f}  (8.0 = uniform over bytes)  curves -> {out / 'train' / 'loss.png'}")
    summary["eval"] = {"val_bpb": bpb, "seconds": round(time.perf_counter() - t, 1)}

    from kollm.serve.engine import Engine

    t = _step(5, "generate: Korean samples")
    engine = Engine(model, hf_tok, res.model_dir.name)
    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        c = engine.complete(prompt, max_new_tokens=48, temperature=0.8, top_p=0.95, seed=i)
        samples.append(prompt + c.text)
        typer.echo(f"  > {prompt}{c.text}".replace("\n", " "))
    summary["samples"] = samples

    _step(6, "summary")
    write_json(out / "summary.json", summary)
    typer.echo(f"  model (Hugging Face folder): {res.model_dir}\n  val bits-per-byte: {bpb:.4f}\n"
               f"  tokens/s: {res.tokens_per_s:,.0f}\n  everything: {out}")
    if serve:
        from kollm.serve.app import run_server

        run_server(res.model_dir, "127.0.0.1", port)
    else:
        typer.echo(f"  serve it with: kollm serve --model {res.model_dir}")
    return summary

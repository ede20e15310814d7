"""kollm tune against trl's SFTTrainer + peft LoRA, side by side in one run: tokens/s and held-out loss.

    python bench/tune.py [--model DIR] [--steps 30] [--threads 2]

Same model (default: the Gemma-3-270M test folder), same (typo -> correct) examples, same LoRA (r 16, alpha 32,
the seven projections), learning rate, warm-up and number of optimiser steps, about the same examples per step
(trl: a padded batch of that many examples; kollm: ~batch_tokens of packed rows), float32, completion-only loss.
tokens/s counts real (not padding) tokens of the examples trained on, over the training loop's own time. The
held-out loss (nats per completion token, on the same 64 examples) is computed the same way for both finished
adapters. Prints one table; writes bench/results/tune.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kollm.data.config import DataConfig
from kollm.data.typos import clean_queries_from_corpus, make_pairs
from kollm.tokenizer.train import load_tokenizer
from kollm.tune.config import TuneConfig
from kollm.tune.examples import encode, parse_row, split
from kollm.tune.loop import tune
from kollm.tune.pack import batches
from kollm.tune.validate import token_nats

GEMMA = Path.home() / ".cache/kollm/test-models/gemma-3-270m/hf"
TEMPLATE = "검색어: {{typo}}\n교정:"


def rows() -> list:
    pairs = make_pairs(clean_queries_from_corpus(), DataConfig())
    return [parse_row(p, f"pair {i}", TEMPLATE, "correct") for i, p in enumerate(pairs)]


def held_out_nats(model: torch.nn.Module, val_batches: list) -> float:
    model.eval()
    with torch.no_grad():
        got = [token_nats(model, b, torch.device("cpu")) for b in val_batches]
    return sum(n for n, _ in got) / sum(k for _, k in got)


def run_trl(model_dir: Path, train: list, cfg: TuneConfig, per_step: int, out: Path) -> tuple[float, object]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    data = Dataset.from_list([{"prompt": r.prompt, "completion": r.completion} for r in train])
    args = SFTConfig(output_dir=str(out), max_steps=cfg.steps, per_device_train_batch_size=per_step,
                     learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps, lr_scheduler_type="cosine",
                     logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
                     completion_only_loss=True, max_length=cfg.seq_len, seed=cfg.seed, dataloader_num_workers=0,
                     max_grad_norm=1.0, weight_decay=0.0, adam_beta2=0.99)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=cfg.lora_targets,
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora)
    t0 = time.perf_counter()
    res = trainer.train()
    secs = res.metrics.get("train_runtime", time.perf_counter() - t0)
    tokens = max((h.get("num_tokens", 0) for h in trainer.state.log_history), default=0)
    return tokens / secs, trainer.model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=GEMMA)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/tune_runs"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = TuneConfig(steps=a.steps, lr=3e-4, warmup_steps=5, batch_tokens=1024, seq_len=128, val_fraction=0.05,
                     eval_every=10**9, metric="loss", checkpoint_every=10**9, template=TEMPLATE)
    everything = rows()
    train, val = split(everything, 0.05, cfg.seed)
    tok = load_tokenizer(a.model)
    val_ex = [e for r in val[:64] for e in encode(r, tok, cfg.seq_len)]
    val_batches = batches(val_ex, cfg.seq_len, cfg.batch_tokens, tok.pad_token_id or 0, 0, 0)
    mean_len = sum(len(e.ids) for r in train[:500] for e in encode(r, tok, cfg.seq_len)) / 500
    per_step = max(1, round(cfg.batch_tokens / mean_len))
    print(f"{len(train)} train examples (mean {mean_len:.1f} tokens; {per_step} per trl step), {len(val_ex)} held out;"
          f" {a.steps} steps, {torch.get_num_threads()} threads", flush=True)

    res = tune(cfg, a.model, a.out / "kollm", rows=train, show=False)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(a.model), dtype=torch.float32)
    k_loss = held_out_nats(PeftModel.from_pretrained(base, str(a.out / "kollm" / "adapter")), val_batches)
    print(f"kollm: {res.tokens_per_s:,.0f} tok/s, held-out loss {k_loss:.4f}", flush=True)
    t_rate, t_model = run_trl(a.model, train, cfg, per_step, a.out / "trl")
    t_loss = held_out_nats(t_model, val_batches)
    print(f"trl:   {t_rate:,.0f} tok/s, held-out loss {t_loss:.4f}", flush=True)

    print(f"\n| trainer | tokens/s | held-out loss after {a.steps} steps |\n|---|---|---|")
    print(f"| trl SFTTrainer + peft LoRA | {t_rate:,.0f} | {t_loss:.4f} |")
    print(f"| kollm tune (LoRA) | {res.tokens_per_s:,.0f} | {k_loss:.4f} |")
    print(f"| ratio kollm / trl | {res.tokens_per_s / t_rate:.2f}x | {k_loss - t_loss:+.4f} |")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/tune.json").write_text(json.dumps({
        "steps": a.steps, "threads": torch.get_num_threads(), "kollm_tok_s": res.tokens_per_s,
        "trl_tok_s": t_rate, "kollm_val_loss": k_loss, "trl_val_loss": t_loss, "per_step": per_step}, indent=1))


if __name__ == "__main__":
    main()

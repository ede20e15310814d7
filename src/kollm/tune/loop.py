"""`kollm tune`: tune a Hugging Face causal LM on one job's examples, keep the best, resume after a kill.

The step: packed rows through the decoder, then the output head and the cross-entropy only at positions that have
a target, chunked and fused (model/loss.py). On Gemma-3-270M the head is a 262,144 x 640 matrix, more FLOPs than
the rest of the model at every position; computing it where the loss is (the ~1/3 of positions that are
completions) and skipping its weight gradient when it is frozen (LoRA) is most of the speed over trl's SFTTrainer
(bench/tune.py).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from kollm.errors import KollmError
from kollm.files import append_jsonl, atomic_dir, atomic_path, read_jsonl, write_json, write_jsonl
from kollm.model.hf import causal_lm_from_pretrained
from kollm.model.loss import IGNORE, head_cross_entropy
from kollm.progress import progress
from kollm.runtime import configure, configure_varying_shapes, pick_device, pick_dtype
from kollm.tokenizer.train import load_tokenizer
from kollm.tune.config import TuneConfig
from kollm.tune.examples import Example, chat_template, encode, read_rows, split
from kollm.tune.pack import Batch, batches
from kollm.tune.validate import head_weight, hidden, pick_metric, validate

METHODS = ("lora", "full")


@dataclass
class TuneResult:
    out: Path
    steps: int
    tokens_per_s: float
    metric: str
    before: dict
    best: dict
    best_step: int
    stopped_early: bool
    adapter: Path | None = None
    model: Path | None = None
    merged: Path | None = None
    notes: list[str] = field(default_factory=list)


def check(cfg: TuneConfig) -> None:
    if cfg.method not in METHODS:
        raise KollmError(f"unknown method {cfg.method!r}; use --method lora or --method full")
    if cfg.metric not in ("auto", "loss", "exact_match", "rouge_l", "chrf"):
        raise KollmError(f"unknown metric {cfg.metric!r}; use auto, loss, exact_match, rouge_l or chrf")
    if cfg.seq_len < 16 or cfg.batch_tokens < cfg.seq_len:
        raise KollmError(f"batch_tokens ({cfg.batch_tokens}) must be at least seq_len ({cfg.seq_len}), and seq_len "
                         "at least 16; raise batch_tokens")
    if cfg.steps < 1 or not 0 <= cfg.val_fraction < 1:
        raise KollmError("steps must be >= 1 and val_fraction in [0, 1); fix the [tune] section")


def check_model(model_dir: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise KollmError(f"{model_dir} is not a Hugging Face model folder (no config.json); pass --model DIR")


def _load(model_dir: Path, device: torch.device) -> tuple[torch.nn.Module, object]:
    check_model(model_dir)
    tokenizer = load_tokenizer(model_dir)
    try:  # float32 master weights everywhere; GPUs compute in bf16 under autocast (runtime.pick_dtype)
        model = causal_lm_from_pretrained(model_dir, torch.float32)
    except (OSError, ValueError) as e:
        raise KollmError(f"cannot load {model_dir} with transformers ({str(e).splitlines()[0]})") from None
    return model.to(device), tokenizer


def _wrap(model: torch.nn.Module, cfg: TuneConfig) -> torch.nn.Module:
    if cfg.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in cfg.lora_targets if t in names]
    if not targets:
        raise KollmError(f"none of lora_targets {cfg.lora_targets} is a linear layer of this model "
                         f"(it has: {', '.join(sorted(names))}); set [tune].lora_targets")
    return get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                            target_modules=targets, bias="none", task_type="CAUSAL_LM"))


def step_loss(model: torch.nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
    """Mean cross-entropy over the batch's targets; the head runs only at those positions."""
    h = hidden(model, batch, device)[:, :-1]
    t = batch.labels[:, 1:].to(device)
    keep = t != IGNORE
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:  # a soft-capped head (Gemma 2) is not the fused kernel's plain softmax
        logits = torch.tanh((h[keep] @ head_weight(model).T).float() / cap) * cap
        return torch.nn.functional.cross_entropy(logits, t[keep])
    return head_cross_entropy(h[keep], head_weight(model), t[keep])


def lr_at(step: int, cfg: TuneConfig, peak: float) -> float:
    """Linear warm-up, then cosine down to a tenth of the peak at the last step."""
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _score(row: dict, metric: str) -> tuple[float, float]:
    """Higher is better: the metric, ties broken by held-out bits per byte (lower)."""
    return (row.get(metric, 0.0), -row["val_bpb"])


def _save_best(model: torch.nn.Module, tokenizer: object, cfg: TuneConfig, out: Path, template: str | None) -> Path:
    dest = out / ("adapter" if cfg.method == "lora" else "model")
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        if cfg.method == "full":
            if template:
                tokenizer.chat_template = template
            tokenizer.save_pretrained(tmp)
    return dest


def _merge(model_dir: Path, adapter: Path, tokenizer: object, out: Path, template: str | None) -> Path:
    from peft import PeftModel

    base = causal_lm_from_pretrained(model_dir, torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    dest = out / "merged"
    with atomic_dir(dest) as tmp:
        merged.save_pretrained(tmp)
        if template:
            tokenizer.chat_template = template
        tokenizer.save_pretrained(tmp)
        if (model_dir / "generation_config.json").is_file():  # the model's sampling defaults travel with it
            shutil.copy(model_dir / "generation_config.json", tmp / "generation_config.json")
    return dest


def _checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with atomic_path(path) as tmp:
        torch.save({"params": trainable, "optimizer": opt.state_dict(), **state}, tmp)


def tune(cfg: TuneConfig, model_dir: str | Path, out: str | Path, resume: bool = False, rows: list | None = None,
         show: bool = True) -> TuneResult:
    """Tune `model_dir` on cfg.data (or `rows`, already read) into `out`; see docs/tune.md."""
    check(cfg)
    model_dir, out = Path(model_dir).expanduser(), Path(out).expanduser()
    ckpt = out / "checkpoint" / "state.pt"
    if ckpt.is_file() and not resume:
        raise KollmError(f"{out} already holds a tuning run; pass --resume to continue it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    configure(device)
    configure_varying_shapes(device)  # packed rows change length from step to step
    model, tokenizer = _load(model_dir, device)
    notes: list[str] = []

    rows = rows if rows is not None else list(read_rows(cfg.data, cfg.template, cfg.target))
    if not rows:
        raise KollmError("the tuning data has no rows; give a jsonl file with examples")
    template, kollm_template = chat_template(tokenizer)
    uses_chat = any(r.kind == "chat" for r in rows)
    if uses_chat and kollm_template:
        notes.append("the model has no chat template: chats were rendered with kollm's ChatML template, which the "
                     "merged/full folder carries; serve the adapter with --chat-template")
    train_rows, val_rows = split(rows, cfg.val_fraction, cfg.seed)
    val_rows = val_rows[: cfg.val_max]
    tpl = template if uses_chat else None

    def enc(rs: list) -> list[Example]:
        return [e for r in rs for e in encode(r, tokenizer, cfg.seq_len, cfg.eos, tpl)]

    train_ex, val_ex = enc(train_rows), enc(val_rows)
    if not train_ex:
        raise KollmError("every row went to the held-out split; give more rows or lower val_fraction")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    val_batches = batches(val_ex, cfg.seq_len, cfg.batch_tokens, pad, cfg.seed, 0)
    metric = pick_metric(cfg.metric, val_ex)

    torch.manual_seed(cfg.seed)  # LoRA's A matrices start random: the same seed, the same run
    model = _wrap(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    peak = cfg.lr or (2e-4 if cfg.method == "lora" else 2e-5)
    opt = torch.optim.AdamW(params, lr=peak, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    autocast = pick_dtype(device) if device.type == "cuda" else None

    metrics_path = out / "metrics.jsonl"
    state = {"step": 0, "best": None, "best_row": None, "best_step": 0, "bad_evals": 0, "seconds": 0.0,
             "tokens": 0, "before": None}
    if resume and ckpt.is_file():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in saved.pop("params").items():
                named[n].copy_(v)
        opt.load_state_dict(saved.pop("optimizer"))
        state.update(saved)
        # the log keeps what happened up to the checkpoint; steps after it are redone
        kept = [r for r in read_jsonl(metrics_path) if r.get("step", 0) <= state["step"]] \
            if metrics_path.is_file() else []
        write_jsonl(metrics_path, kept)
        notes.append(f"resumed at step {state['step']}")
    elif metrics_path.exists():
        metrics_path.unlink()

    def evaluate(step: int) -> dict:
        row = {"step": step, **validate(model, tokenizer, val_ex, val_batches, metric, cfg.max_new_tokens, device)}
        append_jsonl(metrics_path, {k: v for k, v in row.items() if k != "samples"})
        return row

    if state["before"] is None:
        state["before"] = evaluate(0) if val_ex else {}
        if val_ex:
            state["best"], state["best_row"] = _score(state["before"], metric), state["before"]
            _save_best(model, tokenizer, cfg, out, tpl)  # the untuned model is the first "best"

    epoch_len = len(batches(train_ex, cfg.seq_len, cfg.batch_tokens, pad, cfg.seed, 0))
    bar = progress(total=cfg.steps, initial=state["step"], desc="tune", unit="step", disable=not show)
    stopped = False
    cache: tuple[int, list[Batch]] | None = None
    while state["step"] < cfg.steps and not stopped:
        step = state["step"]
        epoch, i = divmod(step, epoch_len)
        if cache is None or cache[0] != epoch:
            cache = (epoch, batches(train_ex, cfg.seq_len, cfg.batch_tokens, pad, cfg.seed, epoch))
        batch = cache[1][i % len(cache[1])]
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout: the same after a resume
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg, peak)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss = step_loss(model, batch, device)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["seconds"] += time.perf_counter() - t0
        state["tokens"] += batch.tokens
        state["step"] = step = step + 1
        loss = loss.item()
        append_jsonl(metrics_path, {"step": step, "loss": loss, "lr": opt.param_groups[0]["lr"],
                                    "tokens": state["tokens"], "seconds": round(state["seconds"], 3)})
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):,.0f}")
        bar.update(1)
        if val_ex and (step % cfg.eval_every == 0 or step == cfg.steps):
            row = evaluate(step)
            if _score(row, metric) > state["best"]:
                state["best"], state["best_row"], state["best_step"], state["bad_evals"] = \
                    _score(row, metric), row, step, 0
                _save_best(model, tokenizer, cfg, out, tpl)
            else:
                state["bad_evals"] += 1
                stopped = cfg.patience > 0 and state["bad_evals"] >= cfg.patience
            bar.write(f"step {step}: val bpb {row['val_bpb']:.4f}"
                      + (f", {metric} {row[metric]:.3f}" if metric in row else "")
                      + (f" (best {state['best_step']})" if state["best_step"] != step else " (best)"))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or stopped:
            _checkpoint(ckpt, model, opt, state)
    bar.close()
    if not val_ex:  # nothing held out: the last step is what there is
        _save_best(model, tokenizer, cfg, out, tpl)

    from kollm.tune.plots import plot_tuning

    plot_tuning(metrics_path, out / "loss.png", metric)
    res = TuneResult(out=out, steps=state["step"], tokens_per_s=state["tokens"] / max(state["seconds"], 1e-9),
                     metric=metric, before=_public(state["before"]), best=_public(state["best_row"] or {}),
                     best_step=state["best_step"], stopped_early=stopped, notes=notes)
    if cfg.method == "lora":
        res.adapter = out / "adapter"
        if cfg.merge:
            res.merged = _merge(model_dir, res.adapter, tokenizer, out, tpl if kollm_template else None)
    else:
        res.model = out / "model"
    write_json(out / "metrics.json", {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(res).items()})
    return res


def _public(row: dict | None) -> dict:
    return {k: v for k, v in (row or {}).items() if k != "step"}

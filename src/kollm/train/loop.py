"""The training loop: AdamW, warmup-stable-decay LR, a wall-clock budget, periodic val
bits-per-byte, best-model export, atomic resumable checkpoints."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from kollm.errors import KollmError
from kollm.files import append_jsonl, atomic_path, write_json
from kollm.model import KollmLM, ModelConfig, export_hf
from kollm.model.score import bits_per_byte
from kollm.train.config import TrainConfig
from kollm.train.data import BatchSampler, tokenize_stream
from kollm.train.plots import plot_run
from kollm.train.precision import pick_device, pick_dtype


@dataclass
class TrainResult:
    steps: int
    tokens: int
    train_seconds: float
    tokens_per_s: float
    first_loss: float
    final_loss: float
    best_val_bpb: float
    model_dir: Path
    interrupted: bool = False


def lr_factor(progress: float, step: int, cfg: TrainConfig) -> float:
    """Warmup (by steps), then constant, then a linear decay over the last `decay_frac` of the run."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if progress < 1.0 - cfg.decay_frac:
        return warm
    frac = (1.0 - progress) / max(cfg.decay_frac, 1e-9)
    return warm * (cfg.final_lr_frac + (1.0 - cfg.final_lr_frac) * max(0.0, frac))


def make_optimizer(model: KollmLM, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and embeddings: decaying them only fights the normalisation.
    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "embed_tokens" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=False)


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: object, train_texts: Sequence[str],
                 val_texts: Sequence[str], out_dir: str | Path) -> None:
        if cfg.time_budget <= 0 and cfg.max_steps <= 0:
            raise KollmError("set a time budget (--time-budget SECONDS) or --max-steps so training can end")
        vocab = len(tokenizer)
        if model_cfg.vocab_size and model_cfg.vocab_size < vocab:
            raise KollmError(f"model vocab_size={model_cfg.vocab_size} is smaller than the tokenizer's {vocab} "
                             "tokens; set vocab_size = 0 to take it from the tokenizer")
        self.model_cfg = ModelConfig(**{**asdict(model_cfg), "vocab_size": model_cfg.vocab_size or vocab})
        self.cfg, self.tokenizer, self.val_texts = cfg, tokenizer, list(val_texts)
        self.out = Path(out_dir)
        self.device = pick_device()
        self.dtype = pick_dtype(self.device)
        torch.manual_seed(cfg.seed)
        self.model = KollmLM(self.model_cfg).to(self.device)
        self.opt = make_optimizer(self.model, cfg)
        self.sampler = BatchSampler(tokenize_stream(tokenizer, train_texts), cfg.batch_size,
                                    self.model.cfg.max_seq_len, cfg.seed)
        self.step, self.train_seconds, self.tokens = 0, 0.0, 0
        self.best_bpb, self.first_loss, self.last_loss = math.inf, math.nan, math.nan

    # ---- checkpoints -------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint" / "state.pt"

    def save_checkpoint(self) -> None:
        state = {
            "model_cfg": asdict(self.model.cfg), "model": self.model.state_dict(), "opt": self.opt.state_dict(),
            "step": self.step, "train_seconds": self.train_seconds, "tokens": self.tokens,
            "best_bpb": self.best_bpb, "first_loss": self.first_loss, "last_loss": self.last_loss,
            "sampler": self.sampler.state_dict(), "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> None:
        if not self.ckpt_path.is_file():
            raise KollmError(f"nothing to resume: {self.ckpt_path} does not exist; drop --resume to start fresh")
        try:
            state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        except Exception as e:  # a checkpoint we cannot read must not be half-used
            raise KollmError(f"checkpoint {self.ckpt_path} is unreadable ({e}); delete it to start fresh") from None
        if state["model_cfg"] != asdict(self.model.cfg):
            raise KollmError(f"{self.ckpt_path} belongs to a different model shape; use another --out to start fresh")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        for k in ("step", "train_seconds", "tokens", "first_loss", "last_loss"):
            setattr(self, k, state[k])
        self.best_bpb = state["best_bpb"]

    # ---- loop --------------------------------------------------------------------------------
    def progress(self) -> float:
        p = [self.train_seconds / self.cfg.time_budget] if self.cfg.time_budget > 0 else []
        p += [self.step / self.cfg.max_steps] if self.cfg.max_steps > 0 else []
        return max(p)

    def evaluate(self) -> float:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            bpb = bits_per_byte(self.model, self.tokenizer, self.val_texts, self.model.cfg.max_seq_len)
        append_jsonl(self.out / "metrics.jsonl", {"step": self.step, "tokens": self.tokens,
                                                  "seconds": round(self.train_seconds, 2), "val_bpb": bpb})
        if bpb < self.best_bpb:  # keep the best model: small corpora overfit long before the budget ends
            self.best_bpb = bpb
            export_hf(self.model, self.tokenizer, self.out / "model",
                      extra={"step": self.step, "val_bpb": bpb, "tokens": self.tokens})
        return bpb

    def train_step(self) -> float:
        cfg = self.cfg
        x, y = self.sampler.next()
        x, y = x.to(self.device), y.to(self.device)
        lr = cfg.lr * lr_factor(self.progress(), self.step, cfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            loss = self.model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += x.numel()
        return loss.item()

    def run(self, resumed: bool = False) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        if not resumed:  # a fresh run must not append to an older run's curves
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        write_json(self.out / "config.json", {"model": asdict(self.model.cfg), "train": asdict(self.cfg),
                                              "device": str(self.device), "dtype": str(self.dtype),
                                              "params": self.model.num_params()})
        cfg = self.cfg
        timed = cfg.time_budget > 0
        bar = tqdm(total=round(cfg.time_budget) if timed else cfg.max_steps, desc="train", dynamic_ncols=True,
                   initial=round(self.train_seconds) if timed else self.step,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}" + ("s" if timed else " steps")
                   + " [{elapsed}<{remaining}{postfix}]")
        last_eval = last_ckpt = self.train_seconds
        window_tokens, window_time, interrupted = 0, 0.0, False
        try:
            while self.progress() < 1.0:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                window_tokens += cfg.batch_size * self.model.cfg.max_seq_len
                window_time += dt
                if math.isnan(self.first_loss):
                    self.first_loss = loss
                self.last_loss = loss
                if not math.isfinite(loss):
                    raise KollmError(f"loss became {loss} at step {self.step}; lower the learning rate (--lr)")
                if self.step % cfg.log_every == 0:
                    tok_s = window_tokens / window_time
                    append_jsonl(self.out / "metrics.jsonl", {
                        "step": self.step, "tokens": self.tokens, "seconds": round(self.train_seconds, 2),
                        "loss": loss, "lr": self.opt.param_groups[0]["lr"], "tok_s": round(tok_s)})
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", best_bpb=f"{self.best_bpb:.3f}")
                    window_tokens, window_time = 0, 0.0
                bar.n = min(bar.total, round(self.train_seconds) if timed else self.step)
                bar.refresh()
                if self.train_seconds - last_eval >= cfg.eval_every_s:
                    self.evaluate()
                    last_eval = self.train_seconds
                if self.train_seconds - last_ckpt >= cfg.checkpoint_every_s:
                    self.save_checkpoint()
                    last_ckpt = self.train_seconds
        except KeyboardInterrupt:
            interrupted = True  # fall through: save what we have, atomically, then report
        finally:
            bar.close()
        self.save_checkpoint()
        if not interrupted:
            self.evaluate()
        if (self.out / "metrics.jsonl").exists():
            plot_run(self.out / "metrics.jsonl", self.out / "loss.png")
        if interrupted:
            raise KeyboardInterrupt
        return TrainResult(
            steps=self.step, tokens=self.tokens, train_seconds=self.train_seconds,
            tokens_per_s=self.tokens / max(self.train_seconds, 1e-9), first_loss=self.first_loss,
            final_loss=self.last_loss, best_val_bpb=self.best_bpb, model_dir=self.out / "model",
        )


def train_model(model_cfg: ModelConfig, train_cfg: TrainConfig, tokenizer: object, train_texts: Sequence[str],
                val_texts: Sequence[str], out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train a model and export its best (lowest val bits-per-byte) version to `out_dir/model`."""
    trainer = Trainer(model_cfg, train_cfg, tokenizer, train_texts, val_texts, out_dir)
    if resume:
        trainer.load_checkpoint()
    return trainer.run(resumed=resume)

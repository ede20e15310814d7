"""The training loop: one process, or one of K under torchrun (FSDP2). Everything a resumed run needs to
continue bit-for-bit (model, optimiser, schedule position, data position, RNG) is in the checkpoint."""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from kollm.errors import KollmError
from kollm.files import write_json
from kollm.model import KollmLM, ModelConfig
from kollm.model.score import bits_per_byte
from kollm.progress import progress
from kollm.runtime import check_compiler, configure, pick_dtype
from kollm.special_tokens import encode_with_bos
from kollm.train import checkpoint as ckpt
from kollm.train.config import TrainConfig
from kollm.train.data import BatchSampler, check_shards, is_shard_folder, open_token_segments, tokenize_stream
from kollm.train.distributed import DistInfo, barrier, broadcast, init_distributed, max_across, mean_across, shard_model
from kollm.train.hparams import grad_accum_steps, resolve
from kollm.train.metrics import MetricsLog
from kollm.train.mfu import flops_per_token, measure_matmul_peak
from kollm.train.optim import lr_factor, make_optimizers
from kollm.train.plots import plot_run

SAMPLE_PROMPT = "대한민국의 수도는"


@dataclass
class TrainResult:
    steps: int
    tokens: int
    train_seconds: float
    tokens_per_s: float
    first_loss: float
    final_loss: float
    best_val_bpb: float
    model_dir: Path  # best model by val bits-per-byte (HF folder)
    interrupted: bool = False
    final_dir: Path | None = None  # the last step's weights (HF folder)
    final_val_bpb: float = math.nan
    mfu: float = math.nan  # over the whole run, against the higher of the matmul peaks measured at start and end
    matmul_peak_flops: float = math.nan


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, tokenizer: object,
                 train_data: Sequence[str] | str | Path, val_texts: Sequence[str], out_dir: str | Path,
                 resume: bool = False, info: DistInfo | None = None) -> None:
        self.info = info = info or init_distributed()
        vocab = len(tokenizer)
        if model_cfg.vocab_size and model_cfg.vocab_size < vocab:
            raise KollmError(f"model vocab_size={model_cfg.vocab_size} is smaller than the tokenizer's {vocab} "
                             "tokens; set vocab_size = 0 to take it from the tokenizer")
        model_cfg = model_cfg if model_cfg.is_resolved else model_cfg.resolved()  # `kollm train` resolved it already
        self.model_cfg = replace(model_cfg, vocab_size=model_cfg.vocab_size or vocab)
        self.cfg, self.derived = resolve(self.model_cfg, cfg, info.world)
        cfg = self.cfg
        self.tokenizer, self.out = tokenizer, Path(out_dir)
        self.val_texts = list(val_texts)[: cfg.val_max_docs or None]
        if not self.val_texts:
            raise KollmError("no validation text; pass --val FILE.jsonl or give more training documents")
        self.resume_from = self._find_resume() if resume else None  # shape checks before any compute
        if isinstance(train_data, (str, Path)):
            if not is_shard_folder(train_data):
                raise KollmError(f"{train_data} is not a token-shard folder (no shards.json)")
            check_shards(train_data, self.model_cfg.vocab_size)
            segments = open_token_segments(train_data)
        else:
            segments = [tokenize_stream(tokenizer, train_data, show=info.is_main)]
        self.device, self.dtype = info.device, pick_dtype(info.device)
        configure(self.device, cfg.threads)
        self.accum = grad_accum_steps(cfg, info.world)
        self.sampler = BatchSampler(segments, cfg.batch_size, self.model_cfg.max_seq_len, cfg.seed,
                                    info.rank, info.world)
        torch.manual_seed(cfg.seed)  # same init on every rank; FSDP then keeps each rank's shard
        self.model = KollmLM(self.model_cfg).to(self.device)
        if info.sharded:
            shard_model(self.model, info, self.dtype)
        if cfg.compile:
            check_compiler(self.device)
            self.model.compile_blocks()
        self.optimizers = make_optimizers(self.model, cfg, self.dtype)
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["base_lr"] = g["lr"]
        self.step, self.train_seconds, self.tokens = 0, 0.0, 0
        self.best_bpb, self.first_loss, self.last_loss, self.final_bpb = math.inf, math.nan, math.nan, math.nan
        self.log = MetricsLog(self.out, info.is_main, cfg.tensorboard)
        if self.resume_from is not None:
            self._load(self.resume_from)

    # ---- checkpoints -------------------------------------------------------------------------
    def _find_resume(self) -> Path:
        if self.info.is_main:
            ckpt.clean_partial(self.out, _warn)
        barrier(self.info)
        path = ckpt.latest_valid(self.out, _warn if self.info.is_main else lambda m: None)
        if path is None:
            raise KollmError(f"nothing to resume: {ckpt.ckpt_root(self.out)} holds no complete checkpoint; "
                             "drop --resume to start fresh")
        saved = ckpt.read_trainer_state(path)["model_cfg"]
        if saved != asdict(self.model_cfg):
            diff = ", ".join(f"{k} {saved.get(k)} vs {v}" for k, v in asdict(self.model_cfg).items()
                             if saved.get(k) != v)
            raise KollmError(f"{path} belongs to a different model ({diff}); resume with the same recipe "
                             "or use another --out")
        return path

    def _trainer_state(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "train_seconds": self.train_seconds,
                "best_bpb": self.best_bpb if math.isfinite(self.best_bpb) else None,
                "first_loss": self.first_loss, "last_loss": self.last_loss,
                "sampler": self.sampler.state_dict(), "model_cfg": asdict(self.model_cfg),
                "train_cfg": asdict(self.cfg), "world": self.info.world}

    def save_checkpoint(self) -> Path:
        return ckpt.save(self.out, self.model, self.optimizers, self._trainer_state(), self.info,
                         self.cfg.keep_checkpoints)

    def _load(self, path: Path) -> None:
        state = ckpt.load(path, self.model, self.optimizers, self.info)
        self.sampler.load_state_dict(state["sampler"])
        for k in ("step", "tokens", "train_seconds", "first_loss", "last_loss"):
            setattr(self, k, state[k])
        self.best_bpb = state["best_bpb"] if state["best_bpb"] is not None else math.inf
        if self.info.is_main:
            _warn(f"kollm: resuming from {path.name} (step {self.step}, {self.tokens:,} tokens)")

    # ---- evaluation and export ---------------------------------------------------------------
    def _full_model(self) -> KollmLM | None:
        """Collective under FSDP: the unsharded model on rank 0 (None elsewhere)."""
        if not self.info.sharded:
            return self.model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.info.is_main:
            return None
        full = KollmLM(self.model_cfg)
        full.load_state_dict(sd)
        return full

    def export(self, folder: Path, extra: dict) -> None:
        from kollm.model import export_hf

        full = self._full_model()
        if full is not None:
            export_hf(full, self.tokenizer, folder, extra=extra)
        barrier(self.info)

    @torch.no_grad()
    def sample(self) -> str:
        """Greedy continuation of a fixed prompt: a human check that the model learns the language."""
        ids = encode_with_bos(self.tokenizer, SAMPLE_PROMPT)
        x = torch.tensor([ids], device=self.device)
        self.model.eval()
        for _ in range(self.cfg.sample_tokens):
            logits = self.model(x[:, -self.model_cfg.max_seq_len:])
            x = torch.cat([x, logits[:, -1:].argmax(-1)], dim=1)
        self.model.train()
        return SAMPLE_PROMPT + self.tokenizer.decode(x[0, len(ids):].tolist())

    def evaluate(self) -> float:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            bpb = bits_per_byte(self.model, self.tokenizer, self.val_texts, self.model_cfg.max_seq_len)
            text = self.sample() if self.cfg.sample_tokens else ""
        row = {"step": self.step, "tokens": self.tokens, "seconds": round(self.train_seconds, 2), "val_bpb": bpb}
        self.log.log({**row, **({"sample": text} if text else {})})
        if bpb < self.best_bpb:  # keep the best model: small corpora overfit long before the budget ends
            self.best_bpb = bpb
            self.export(self.out / "model", extra={"step": self.step, "val_bpb": bpb, "tokens": self.tokens})
        return bpb

    # ---- one optimiser step ------------------------------------------------------------------
    def progress(self) -> float:
        cfg = self.cfg
        p = [self.train_seconds / cfg.time_budget] if cfg.time_budget > 0 else []
        p += [self.step / cfg.max_steps] if cfg.max_steps > 0 else []
        p += [self.tokens / cfg.max_tokens] if cfg.max_tokens > 0 else []
        return max(p)

    def train_step(self) -> float:
        cfg, m = self.cfg, self.cfg.micro_batch_size
        f = lr_factor(self.progress(), self.step, cfg)
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * f
        x, y = self.sampler.next()
        x, y = x.to(self.device), y.to(self.device)
        total = torch.zeros((), device=self.device)
        for i in range(self.accum):
            if self.info.sharded:  # reduce-scatter gradients once, after the last micro-batch
                self.model.set_requires_gradient_sync(i == self.accum - 1)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                loss = self.model.loss(x[i * m:(i + 1) * m], y[i * m:(i + 1) * m]) / self.accum
            loss.backward()
            total += loss.detach()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += cfg.batch_size * self.model_cfg.max_seq_len
        return mean_across(total.item(), self.info)

    # ---- the run -----------------------------------------------------------------------------
    def _write_run_info(self, peak: float) -> None:
        if not self.info.is_main:
            return
        write_json(self.out / "config.json", {
            "model": asdict(self.model_cfg), "train": asdict(self.cfg), "derived": asdict(self.derived),
            "device": str(self.device), "dtype": str(self.dtype), "world_size": self.info.world,
            "grad_accum_steps": self.accum, "params": self.derived.params,
            "matmul_peak_flops": peak, "flops_per_token": flops_per_token(self.model_cfg, self.model_cfg.max_seq_len),
        })
        if hasattr(self.tokenizer, "save_pretrained"):  # so any checkpoint can be exported later
            self.tokenizer.save_pretrained(str(self.out / "tokenizer"))

    def run(self) -> TrainResult:
        info, cfg = self.info, self.cfg
        resumed = self.resume_from is not None
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if not resumed and ckpt.complete_checkpoints(self.out):  # a fresh run replaces the old one's state
                _warn(f"kollm: starting fresh in {self.out}: removing the previous run's checkpoints")
                shutil.rmtree(ckpt.ckpt_root(self.out), ignore_errors=True)
        barrier(info)
        self.log.start(self.step if resumed else None)
        peak = broadcast(measure_matmul_peak(self.device, self.dtype) if info.is_main else 0.0, info)
        fpt = flops_per_token(self.model_cfg, self.model_cfg.max_seq_len)
        self._write_run_info(peak)
        limit = ("s", cfg.time_budget) if cfg.time_budget else ("steps", cfg.max_steps) if cfg.max_steps else (
            "tokens", cfg.max_tokens)
        bar = progress(total=round(limit[1]), desc="train", dynamic_ncols=True, disable=not info.is_main,
                       initial=round(self._bar_pos(limit[0])),
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} " + limit[0] + " [{elapsed}<{remaining}{postfix}]")
        last_eval = last_ckpt = self.train_seconds
        last_eval_step = last_ckpt_step = self.step
        window_tokens, window_time, interrupted = 0, 0.0, False
        try:
            while self.progress() < 1.0:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = max_across(time.perf_counter() - t0, info)  # every rank must take the same decisions
                self.train_seconds += dt
                window_tokens += cfg.batch_size * self.model_cfg.max_seq_len
                window_time += dt
                if math.isnan(self.first_loss):
                    self.first_loss = loss
                self.last_loss = loss
                if not math.isfinite(loss):
                    raise KollmError(f"loss became {loss} at step {self.step}; lower the learning rate (lr)")
                if self.step % cfg.log_every == 0 or self.progress() >= 1.0:
                    tok_s = window_tokens / window_time
                    mfu = fpt * tok_s / info.world / peak if peak > 0 else math.nan
                    self.log.log({"step": self.step, "tokens": self.tokens, "seconds": round(self.train_seconds, 3),
                                  "loss": loss, "lr": self.optimizers[-1].param_groups[0]["lr"],
                                  "tok_s": round(tok_s), "mfu": round(mfu, 4)})
                    shown = {"loss": f"{loss:.3f}", "tok_s": f"{tok_s:,.0f}", "mfu": f"{mfu:.0%}"}
                    if math.isfinite(self.best_bpb):  # nothing to show before the first evaluation
                        shown["bpb"] = f"{self.best_bpb:.3f}"
                    bar.set_postfix(shown, refresh=False)
                    window_tokens, window_time = 0, 0.0
                bar.n = min(bar.total, round(self._bar_pos(limit[0])))
                bar.refresh()
                if self.progress() >= 1.0:
                    break
                if self._due(cfg.eval_every_steps, cfg.eval_every_s, last_eval_step, last_eval):
                    self.evaluate()
                    last_eval, last_eval_step = self.train_seconds, self.step
                if self._due(cfg.checkpoint_every_steps, cfg.checkpoint_every_s, last_ckpt_step, last_ckpt):
                    self.save_checkpoint()
                    last_ckpt, last_ckpt_step = self.train_seconds, self.step
        except KeyboardInterrupt:
            interrupted = True  # fall through: save what we have, atomically, then report
        finally:
            bar.close()
        self.save_checkpoint()
        # On a shared machine the peak measured at start can be depressed by another job; re-measure and keep
        # the higher (conservative MFU).
        peak = max(peak, broadcast(measure_matmul_peak(self.device, self.dtype) if info.is_main else 0.0, info))
        if not interrupted:
            self.final_bpb = self.evaluate()
            self.export(self.out / "final", extra={"step": self.step, "val_bpb": self.final_bpb,
                                                   "tokens": self.tokens})
        if info.is_main and self.log.path.exists():
            plot_run(self.log.path, self.out / "loss.png")
        self.log.close()
        if interrupted:
            raise KeyboardInterrupt
        return TrainResult(
            steps=self.step, tokens=self.tokens, train_seconds=self.train_seconds,
            tokens_per_s=self.tokens / max(self.train_seconds, 1e-9), first_loss=self.first_loss,
            final_loss=self.last_loss, best_val_bpb=self.best_bpb, model_dir=self.out / "model",
            final_dir=self.out / "final", final_val_bpb=self.final_bpb,
            mfu=fpt * self.tokens / max(self.train_seconds, 1e-9) / info.world / peak, matmul_peak_flops=peak,
        )

    def _due(self, every_steps: int, every_s: float, last_step: int, last_s: float) -> bool:
        """Periodic work by steps when set (reproducible), else by training seconds."""
        if every_steps:
            return self.step - last_step >= every_steps
        return self.train_seconds - last_s >= every_s

    def _bar_pos(self, unit: str) -> float:
        return {"s": self.train_seconds, "steps": self.step, "tokens": self.tokens}[unit]


def train_model(model_cfg: ModelConfig, train_cfg: TrainConfig, tokenizer: object,
                train_texts: Sequence[str] | str | Path, val_texts: Sequence[str], out_dir: str | Path,
                resume: bool = False) -> TrainResult:
    """Train a model; the best (lowest val bits-per-byte) version is exported to `out_dir/model`, the last
    step's to `out_dir/final`. `train_texts` may also be a token-shard folder."""
    return Trainer(model_cfg, train_cfg, tokenizer, train_texts, val_texts, out_dir, resume=resume).run()

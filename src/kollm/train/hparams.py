"""Training hyperparameters derived from the model size: the second half of the one-dial rule.

The model shape comes from `depth` (kollm.model.config). From the resulting parameter count N:

    horizon    D = tokens_per_param * N          (Chinchilla: 20 tokens per parameter)
    compute    C = 6 * N * D                      (FLOPs of the compute-optimal run)
    batch      B = 0.292 * C^0.3271 tokens        (DeepSeek LLM scaling law, arXiv:2401.02954 sec. 3.1),
                   rounded to a power of two in sequences, at least one per process
    lr         = 0.3118 * C^-0.125                (same law; AdamW/AdamP, and the non-matrix params under Muon)

Only fields left at 0 are derived, so every value can still be set in the recipe or on the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from kollm.errors import KollmError
from kollm.model import KollmLM, ModelConfig
from kollm.train.config import OPTIMIZERS, TrainConfig


@dataclass
class Derived:
    params: int
    horizon_tokens: int
    compute_flops: float
    batch_size: int  # sequences per step, global
    lr: float


def count_params(cfg: ModelConfig) -> int:
    with torch.device("meta"):  # exact count, no memory, no init cost
        return KollmLM(cfg).num_params()


def derive(cfg: ModelConfig, tcfg: TrainConfig, world: int = 1) -> Derived:
    n = count_params(cfg)
    horizon = int(tcfg.max_tokens or tcfg.tokens_per_param * n)
    c = 6.0 * n * horizon
    batch_tokens = 0.292 * c**0.3271
    seqs = 2 ** max(0, round(math.log2(max(1.0, batch_tokens / cfg.max_seq_len))))
    return Derived(params=n, horizon_tokens=horizon, compute_flops=c, batch_size=max(seqs, world),
                   lr=0.3118 * c**-0.125)


def pick_micro_batch(per_rank: int, cap: int = 32) -> int:
    return max(d for d in range(1, min(per_rank, cap) + 1) if per_rank % d == 0)


def resolve(cfg: ModelConfig, tcfg: TrainConfig, world: int = 1) -> tuple[TrainConfig, Derived]:
    """Fill derived fields and check the combination is possible (before any compute)."""
    if tcfg.optimizer not in OPTIMIZERS:
        raise KollmError(f"unknown optimizer {tcfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    for name in ("batch_size", "micro_batch_size", "max_steps", "max_tokens", "warmup_steps"):
        if getattr(tcfg, name) < 0:
            raise KollmError(f"[train].{name} must be >= 0, got {getattr(tcfg, name)}")
    if tcfg.time_budget < 0:
        raise KollmError(f"[train].time_budget must be >= 0 seconds, got {tcfg.time_budget}")
    if not 0.0 <= tcfg.decay_frac <= 1.0:
        raise KollmError(f"[train].decay_frac must be in [0, 1], got {tcfg.decay_frac}")
    d = derive(cfg, tcfg, world)
    batch = tcfg.batch_size or d.batch_size
    if batch % world:
        raise KollmError(f"batch_size={batch} sequences cannot be split over {world} processes; "
                         f"use a multiple of {world}")
    per_rank = batch // world
    micro = tcfg.micro_batch_size or pick_micro_batch(per_rank)
    if per_rank % micro:
        raise KollmError(f"micro_batch_size={micro} does not divide the {per_rank} sequences each of the {world} "
                         "processes handles per step; pick a divisor")
    out = replace(tcfg, batch_size=batch, micro_batch_size=micro, lr=tcfg.lr or d.lr)
    if not (tcfg.time_budget or tcfg.max_steps or tcfg.max_tokens):
        out = replace(out, max_tokens=d.horizon_tokens)  # compute-optimal by default
    return out, d


def grad_accum_steps(tcfg: TrainConfig, world: int) -> int:
    return tcfg.batch_size // (world * tcfg.micro_batch_size)

"""Optimisers and the learning-rate schedule.

- adamw: AdamW; weight decay on hidden matrices only (decaying norms and embeddings only fights them).
- muon:  Muon (torch.optim.Muon; float32 Newton-Schulz on CPU, see kollm.train.muon) on the hidden 2-D
         matrices (it orthogonalises 2-D updates only), AdamW on embeddings,
         the output head and norms, as in the modded-nanogpt/nanochat speedruns.
- adamp: AdamP (kollm.train.adamp) with the same grouping as AdamW.

AdamW runs fused (one kernel over all its tensors, CPU and GPU): measured 6.0 ms -> 1.0 ms per step for the
speedrun's embedding, head and norms on the 2-core CPU, against the foreach implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from kollm.train.adamp import AdamP
from kollm.train.config import TrainConfig
from kollm.train.muon import Muon


def _is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    return p.ndim == 2 and "embed_tokens" not in name and "lm_head" not in name


def make_optimizers(model: nn.Module, cfg: TrainConfig, ns_dtype: torch.dtype = torch.float32
                    ) -> list[torch.optim.Optimizer]:
    """`ns_dtype`: Muon's Newton-Schulz dtype, the training dtype (bf16 on capable GPUs, float32 on CPU)."""
    named = list(model.named_parameters())  # a tied head shares embed_tokens' tensor and appears once
    matrices = [p for n, p in named if _is_hidden_matrix(n, p)]
    head = [p for n, p in named if p.ndim == 2 and "lm_head" in n]
    rest = [p for n, p in named if not _is_hidden_matrix(n, p) and not (p.ndim == 2 and "lm_head" in n)]
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "muon":
        muon = Muon(matrices, ns_dtype=ns_dtype, lr=cfg.matrix_lr, weight_decay=cfg.weight_decay,
                    momentum=cfg.muon_momentum, adjust_lr_fn="original")
        adam = torch.optim.AdamW([{"params": head + rest, "weight_decay": 0.0}], lr=cfg.lr, betas=betas,
                                 eps=1e-10, fused=True)
        return [muon, adam]
    groups = [{"params": matrices + head, "weight_decay": cfg.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "adamp":
        return [AdamP(groups, lr=cfg.lr, betas=betas)]
    return [torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=True)]


def lr_factor(progress: float, step: int, cfg: TrainConfig) -> float:
    """Warmup (by steps), then constant, then a linear decay over the last `decay_frac` of the run.

    `progress` is the fraction of the run done, by whichever limit (time, steps, tokens) is nearest, so a
    time-budgeted run still ends with a fully decayed LR.
    """
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if progress < 1.0 - cfg.decay_frac:
        return warm
    frac = (1.0 - progress) / max(cfg.decay_frac, 1e-9)
    return warm * (cfg.final_lr_frac + (1.0 - cfg.final_lr_frac) * max(0.0, frac))

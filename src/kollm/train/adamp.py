"""AdamP (Heo et al., ICLR 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights"), written from the paper's Algorithm 1.

For a weight whose output is normalised afterwards (here: q/k projections before QK-norm, and any weight
feeding an RMSNorm), scaling it changes nothing, yet Adam's momentum keeps growing its norm, which shrinks
the effective step. AdamP detects such weights by the cosine between weight and gradient (near 0 for
scale-invariant ones: the gradient is orthogonal to the weight) and removes the radial component of the
update, plus scales weight decay by `wd_ratio`. Other weights get plain AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


def _channel_view(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _layer_view(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(1, -1)


def _cosine(x: torch.Tensor, y: torch.Tensor, eps: float, view: Callable) -> torch.Tensor:
    x, y = view(x), view(y)
    return (x * y).sum(dim=1).abs() / (x.norm(dim=1) * y.norm(dim=1) + eps)


class AdamP(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, delta: float = 0.1, wd_ratio: float = 0.1,
                 nesterov: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta, wd_ratio=wd_ratio,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    @staticmethod
    def _project(p: torch.Tensor, grad: torch.Tensor, perturb: torch.Tensor, delta: float, wd_ratio: float,
                 eps: float) -> tuple[torch.Tensor, float]:
        for view in (_channel_view, _layer_view):
            cos = _cosine(grad, p, eps, view)
            if cos.max() < delta / math.sqrt(view(p).shape[1]):  # gradient ~orthogonal: scale-invariant
                shape = [-1] + [1] * (p.dim() - 1)
                p_n = p / view(p).norm(dim=1).view(shape).add(eps)
                perturb = perturb - p_n * view(p_n * perturb).sum(dim=1).view(shape)
                return perturb, wd_ratio
        return perturb, 1.0

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = state["step"].item()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bc1, bc2 = 1 - beta1**step, 1 - beta2**step
                denom = (exp_avg_sq.sqrt() / math.sqrt(bc2)).add_(group["eps"])
                if group["nesterov"]:
                    perturb = (beta1 * exp_avg + (1 - beta1) * grad) / denom
                else:
                    perturb = exp_avg / denom
                wd_ratio = 1.0
                if p.dim() > 1:
                    perturb, wd_ratio = self._project(p, grad, perturb, group["delta"], group["wd_ratio"],
                                                      group["eps"])
                if group["weight_decay"] > 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"] * wd_ratio)
                p.add_(perturb, alpha=-group["lr"] / bc1)
        return loss

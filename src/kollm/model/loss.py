"""Output head + cross-entropy, fused and computed in chunks of tokens.

The plain way (`logits = h @ W.T`, then `cross_entropy`) writes a tokens x vocab logits matrix, reads it back
for log-softmax, writes its gradient, then reads that again for two more matmuls. For 2,048 tokens of the CPU
speedrun model (x 4,096 vocabulary = 32 MiB of logits) every one of those passes misses the cache: measured on
the 2-core machine, head + loss took 127 ms against 79 ms for its three matmuls alone. Here each chunk of rows
(a few MiB of logits) gets its logits, log-sum-exp, loss and both gradients while it is still in cache (72 ms),
and the full logits matrix never exists, which is also what lets large vocabularies fit on a GPU.

The gradients are computed in the forward pass and only scaled in the backward pass, so this is for training
(a loss that will be backpropagated), not for scoring.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100  # target id that contributes no loss (Hugging Face's label convention)


def _chunk_rows(vocab: int, device: torch.device) -> int:
    # CPU: ~8 MiB of fp32 logits per chunk stays in L3 (measured best of 2-16 MiB, with the reused buffer below).
    # But every chunk reads the whole head weight again, so a chunk has at least 512 rows: for Gemma's 262k x 640
    # head (671 MB) 16-row chunks re-read it 19 times for 296 rows (6.3 s head + loss, memory-bound) against 1.9 s
    # in one 296-row chunk (a 310 MB logits buffer).
    # GPU: chunks only bound memory; larger is faster.
    budget = 8 << 20 if device.type == "cpu" else 1 << 30
    return max(512, budget // (4 * vocab))


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, h: Tensor, w: Tensor, targets: Tensor) -> Tensor:
        with torch.autocast(h.device.type, enabled=False):  # dtypes are handled explicitly below
            valid = targets != IGNORE
            n = valid.sum().clamp(min=1)
            safe = targets.clamp(min=0)
            wc = w.to(h.dtype)
            grad_h = torch.empty_like(h)
            # a frozen head (LoRA tuning) needs no weight gradient: skipping it halves the head's cost
            need_w = ctx.needs_input_grad[1]
            grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            rows = _chunk_rows(w.shape[0], h.device)
            fp32 = h.dtype == torch.float32
            # one logits buffer for every chunk: a fresh multi-MiB tensor per chunk costs page faults
            buf = torch.empty(min(rows, h.shape[0]), w.shape[0], device=h.device) if fp32 else None
            for s in range(0, h.shape[0], rows):
                hc, tc, vc = h[s:s + rows], safe[s:s + rows, None], valid[s:s + rows, None]
                logits = torch.mm(hc, wc.T, out=buf[: hc.shape[0]]) if fp32 else (hc @ wc.T).float()
                target_logit = logits.gather(1, tc)
                top = logits.amax(dim=-1, keepdim=True)
                p = logits.sub_(top).exp_()  # in place: one pass over the chunk for exp, one for the sum
                z = p.sum(dim=-1, keepdim=True)
                total += ((z.log() + top - target_logit) * vc).sum()
                # d(mean loss)/d(logits) = (softmax - one_hot(target)) / n, zero on ignored rows
                scale = vc / n
                p.mul_(scale / z)
                p.scatter_add_(1, tc, -scale)
                pc = p.to(h.dtype)
                torch.mm(pc, wc, out=grad_h[s:s + rows])
                if not need_w:
                    pass
                elif fp32:
                    grad_w.addmm_(pc.T, hc)
                else:
                    grad_w += (pc.T @ hc).float()
        ctx.need_w = need_w
        ctx.save_for_backward(grad_h, grad_w.to(w.dtype) if need_w else grad_h.new_empty(0))
        return total / n

    @staticmethod
    def backward(ctx: object, grad_out: Tensor) -> tuple[Tensor, Tensor, None]:
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out if ctx.need_w else None, None


def head_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of `h @ weight.T` (no bias) against `targets`; rows with target -100 are ignored.

    h: (..., width), weight: (vocab, width), targets: h's leading shape.
    """
    return _HeadCrossEntropy.apply(h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1))

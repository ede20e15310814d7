"""What a request asks of the sampler, and one sampling step over a row of logits.

The order is vLLM's: logit bias, then the penalties (repetition, presence, frequency) on the raw logits, then
temperature, then the truncations (top-k, top-p, min-p). temperature 0 is greedy. Each request samples with its
own seeded torch.Generator, so a seeded request gives the same tokens whatever else the server is doing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    seed: int | None = None
    logprobs: int | None = None  # alternatives to report per token (None: no logprobs)
    grammar: str | None = None  # llguidance grammar the output must follow (response_format), serve/structured.py
    speculative: bool = True  # may draft tokens when the engine speculates (serve/spec.py); same output either way

    def for_choice(self, i: int) -> SamplingParams:
        """The params of the i-th of `n` choices: seed + i, so seeded choices differ and each is reproducible."""
        return replace(self, seed=None if self.seed is None else self.seed + i)


def _penalise(logits: torch.Tensor, seen: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    if seen.numel() == 0:
        return logits
    ids, counts = torch.unique(seen, return_counts=True)
    vals = logits[ids]
    if p.repetition_penalty != 1.0:  # CTRL's rule: shrink what the model already said, towards 0 either side
        vals = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    vals = vals - p.presence_penalty - p.frequency_penalty * counts.to(vals.dtype)
    logits = logits.clone()
    logits[ids] = vals
    return logits


def next_token(logits: torch.Tensor, seen: torch.Tensor, p: SamplingParams, gen: torch.Generator | None) -> int:
    """One token from a [vocab] row of float32 logits; `seen` holds the prompt and generated ids so far."""
    if p.logit_bias:
        logits = logits.clone()
        for tok, bias in p.logit_bias.items():
            logits[tok] += bias
    logits = _penalise(logits, seen, p)
    if p.temperature < 1e-5:  # vLLM's rule: a temperature this small is greedy (dividing by it overflows)
        return int(torch.argmax(logits))
    logits = logits / p.temperature
    if 0 < p.top_k < logits.numel():
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if p.min_p > 0:
        probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
    if p.top_p < 1.0:
        probs = _nucleus(probs, p.top_p)
    total = probs.sum()
    if not torch.isfinite(total) or total <= 0:  # extreme penalties overflowed: fall back to the best token
        return int(torch.argmax(torch.nan_to_num(logits, nan=float("-inf"))))
    return int(torch.multinomial(probs / total, 1, generator=gen))


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero all but the smallest set of tokens whose mass reaches `top_p`. Sorting a 262k-token row costs
    milliseconds, so first try the best 1,024: when they already hold `top_p` of the mass (nearly always), the
    set lies inside them and the result is the same as a full sort's."""
    total = probs.sum()
    for k in (min(1024, probs.numel()), probs.numel()):
        sorted_p, order = torch.topk(probs, k)
        if k == probs.numel() or sorted_p.sum() >= top_p * total:
            break
    drop = torch.cumsum(sorted_p, 0) - sorted_p > top_p * total  # keep the smallest set reaching top_p
    return torch.zeros_like(probs).scatter(0, order, sorted_p.masked_fill(drop, 0.0))


def is_plain_greedy(p: SamplingParams) -> bool:
    """Greedy with nothing that changes the logits: a batch of these is one argmax."""
    return (p.temperature < 1e-5 and p.grammar is None and not p.logit_bias and p.repetition_penalty == 1.0
            and p.presence_penalty == 0 and p.frequency_penalty == 0)


def argmax_rows(logits: torch.Tensor, block: int = 512) -> torch.Tensor:
    """`logits.argmax(-1)` for [rows, vocab], first index on ties. torch's CPU argmax is not vectorised: on
    64 x 262k logits it took 19 ms where a block max (`amax`, vectorised) and an argmax inside the winning block
    take ~4 ms; the winning block is the first holding the maximum, so ties resolve as argmax does (and a NaN,
    which both treat as the maximum)."""
    rows, vocab = logits.shape
    if vocab % block or vocab < 4 * block or logits.device.type != "cpu":
        return logits.argmax(dim=-1)
    blocks = logits.view(rows, vocab // block, block)
    best = blocks.amax(dim=-1).argmax(dim=-1)  # [rows]
    inner = blocks[torch.arange(rows, device=logits.device), best].argmax(dim=-1)
    return best * block + inner

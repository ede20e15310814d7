"""`FastHF`: lm-eval's `hf` backend, with multiple-choice scoring that runs each shared context once.

A multiple-choice item asks for log P(choice | context) for every choice after the same context (5 few-shot
examples and the question: hundreds of tokens; a choice: a few). lm-eval's `HFLM` runs context + choice once per
choice. Here the context runs once, its KV cache is repeated over the choices, and only the choices' tokens run
on top of it: for a 7-way topic item with a 300-token context, ~7x fewer tokens through the model.

Everything else (tokenisation, BOS, truncation rules, generation) is `HFLM`'s own, so the two give the same
requests and the same scores (to float rounding: a different batching of the same float32 maths).
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM

from kollm.progress import progress

Request = tuple[tuple[str, str], list[int], list[int]]


class FastHF(HFLM):
    """An lm-eval `LM`: HFLM + shared-context KV reuse. Not in lm-eval's model registry: `kollm eval` builds it
    directly as its `kollm` backend (`backends.make_backend`, the default; `--backend hf` runs plain HFLM)."""

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        long: list[int] = []
        for i, (_, ctx, cont) in enumerate(requests):
            # HFLM left-truncates what does not fit; leave those few to it so truncation stays identical
            (long if len(ctx) + len(cont) > self.max_length + 1 else groups[tuple(ctx)]).append(i)
        if long:
            for i, ans in zip(long, super()._loglikelihood_tokens([requests[i] for i in long], True), strict=True):
                out[i] = ans
        # longest contexts first: memory problems show at once, and the bar's rate is pessimistic, not hopeful;
        # neighbours in this order have similar lengths, so a batch of contexts carries little padding
        order = sorted(groups, key=len, reverse=True)
        bar = progress(total=len(requests) - len(long), desc="log-likelihoods (shared context)",
                       disable=disable_tqdm or self.rank != 0)
        step = max(1, int(self.batch_size) if str(self.batch_size).isdigit() else 8)
        for at in range(0, len(order), step):
            chunk = order[at : at + step]
            scored = self._score_groups([list(c) for c in chunk], [[requests[i][2] for i in groups[c]] for c in chunk])
            for ctx, answers in zip(chunk, scored, strict=True):
                for i, ans in zip(groups[ctx], answers, strict=True):
                    out[i] = ans
                    if requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], ans)
                bar.update(len(groups[ctx]))
        bar.close()
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def _score_groups(self, ctxs: list[list[int]], conts: list[list[list[int]]]) -> list[list[tuple[float, bool]]]:
        """For each context, (sum log P(cont | ctx), cont is greedy) of each of its continuations.

        Two forward passes per batch of contexts. 1: the contexts, right-padded (a causal model's real positions
        never see the pad after them), keeping logits only where each context ends (they predict each choice's
        first token; a 262k-vocab head on every position would cost more than the layers). 2: every choice but
        its last token, on a copy of its context's KV cache, with the context padding masked out and positions
        continuing from the context's own length.
        """
        dev = self.device
        lens = [len(c) for c in ctxs]
        width = max(lens)
        ends = sorted({n - 1 for n in lens})
        first = self.model(torch.tensor([c + [0] * (width - len(c)) for c in ctxs], device=dev), use_cache=True,
                           logits_to_keep=torch.tensor(ends, device=dev))
        last = [self._logp(first.logits[g, ends.index(n - 1)]) for g, n in enumerate(lens)]
        rows = [(g, c) for g, cs in enumerate(conts) for c in cs]
        longest = max(len(c) for _, c in rows) - 1
        rest = None
        if longest > 0:
            cache = first.cache
            cache.batch_select_indices(torch.tensor([g for g, _ in rows], device=dev))
            mask = torch.ones(len(rows), width + longest, dtype=torch.long, device=dev)
            for r, (g, _) in enumerate(rows):
                mask[r, lens[g] : width] = 0
            pos = torch.tensor([[lens[g] + j for j in range(longest)] for g, _ in rows], device=dev)
            inp = torch.tensor([c[:-1] + [0] * (longest + 1 - len(c)) for _, c in rows], device=dev)
            rest = self._logp(self.model(inp, attention_mask=mask, position_ids=pos, cache=cache,
                                         use_cache=False).logits)  # rest[r, j] predicts cont[j + 1]
        answers: list[list[tuple[float, bool]]] = [[] for _ in ctxs]
        for r, (g, cont) in enumerate(rows):
            lp = last[g][None] if len(cont) == 1 else torch.cat([last[g][None], rest[r, : len(cont) - 1]])
            target = torch.tensor(cont, device=dev)
            answers[g].append((float(lp.gather(1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())))
        return answers

    def _logp(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits.to(self.softmax_dtype or logits.dtype), dim=-1)

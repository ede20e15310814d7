"""One request's generation state, and the step every engine takes with it: from a row of logits to the next token
and what that releases (the UTF-8 guard, the grammar, sampling, logprobs, stop tokens and strings, max_tokens).
serve/engine.py (continuous batching) and serve/hf_engine.py (one request at a time) both run requests through it,
so they differ only in how the logits are computed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Container
from dataclasses import dataclass, field

import torch

from kollm.serve.lora import Adapter
from kollm.serve.output import Output, Token
from kollm.serve.sampling import SamplingParams, is_plain_greedy, next_token
from kollm.serve.spec import Draft
from kollm.serve.structured import Constraint, Grammars
from kollm.serve.utf8 import Utf8Guard


@dataclass
class Finish:
    reason: str  # "stop" (EOS, a stop token or string) or "length"; every Token came before it


@dataclass(eq=False)  # compared by identity: two requests with the same prompt and parameters are still two
class Sequence:
    ids: list[int]
    p: SamplingParams
    mask_pii: bool
    lora: Adapter | None = None  # the LoRA adapter this request runs (None: the base model)
    sink: object = None  # where this request's outputs go, once per step (the engine's delivery)
    outbox: list = field(default_factory=list)  # outputs of the current step: Tokens, a Finish, or an error
    cancelled: bool = False
    done: int = 0  # prompt tokens already in the cache
    length: int = 0  # positions in the cache (prompt + fed generated tokens)
    pending: int = -1  # the sampled token to feed next step
    generated: int = 0
    owed: int = 0  # UTF-8 continuation bytes the output still owes
    out: Output | None = None  # text, stop strings, PII masks (serve/output.py)
    gen: torch.Generator | None = None
    constraint: Constraint | None = None  # response_format's grammar
    seen: list[int] = field(default_factory=list)
    followers: list[Sequence] = field(default_factory=list)  # same prompt: share this prefill (n > 1)
    draft: Draft | None = None  # speculative decoding's state (serve/spec.py); None: this request does not draft


class Sampler:
    """What an engine knows about its vocabulary, applied to one sequence at a time."""

    def __init__(self, utf8: Utf8Guard, grammars: Grammars, eos_ids: set[int], special_ids: Container[int],
                 device: torch.device) -> None:
        self.utf8, self.grammars, self.eos_ids, self.special_ids = utf8, grammars, eos_ids, special_ids
        self.device = device

    def output(self, p: SamplingParams, mask_pii: bool) -> Output:
        return Output(self.utf8.pieces, self.special_ids, p.stop, mask_pii)

    def start(self, r: Sequence) -> None:
        """Set a sequence up to generate (raises for this request alone: a grammar llguidance cannot run)."""
        r.gen = torch.Generator(device=self.device)
        seed = r.p.seed if r.p.seed is not None else int.from_bytes(os.urandom(8), "little")
        r.gen.manual_seed(seed % 2**64)  # torch takes 64 bits; any integer maps into them
        r.out = self.output(r.p, r.mask_pii)
        r.out.begin(r.ids)
        r.seen = list(r.ids)
        if r.p.grammar is not None:
            r.constraint = self.grammars.matcher(r.p.grammar)

    def step(self, r: Sequence, logits: torch.Tensor | None, greedy: int | None = None) -> bool:
        """Choose r's next token from its logits row (`greedy`: the row's argmax, when it is a valid token; then a
        plain greedy r without log-probabilities needs no logits) and put what it releases in r.outbox; True when r
        is finished (a Finish is then the outbox's last item)."""
        p = r.p
        if greedy is not None and is_plain_greedy(p):
            tok = greedy
        else:
            masked = self.utf8.mask(logits, r.owed)
            if r.constraint is not None:
                masked = r.constraint.mask(masked)
            tok = next_token(masked, torch.tensor(r.seen, device=logits.device), p, r.gen)
        r.owed = self.utf8.step(r.owed, tok)
        lp = top = None
        if p.logprobs is not None:
            logp = torch.log_softmax(logits, dim=-1)  # the model's distribution, as OpenAI reports it
            lp = float(logp[tok])
            if p.logprobs:
                best = torch.topk(logp, p.logprobs)
                top = dict(zip(best.indices.tolist(), best.values.tolist(), strict=True))
        r.generated += 1
        stops = set(p.stop_token_ids) | (set() if p.ignore_eos else self.eos_ids)
        if tok in stops:  # the stop token itself is not output
            return self.end(r, "stop")
        r.outbox += r.out.push(tok, lp, top)
        if r.out.stopped or (r.constraint is not None and not r.constraint.advance(tok)):  # a stop string; whole JSON
            return self.end(r, "stop")
        if r.generated >= p.max_tokens:
            return self.end(r, "length")
        r.pending = tok
        r.seen.append(tok)
        return False

    @staticmethod
    def end(r: Sequence, reason: str) -> bool:
        r.outbox += r.out.finish(cut=reason == "length")
        r.outbox.append(Finish(reason))
        r.cancelled = True
        return True


def failure(e: BaseException) -> RuntimeError:
    """What a request's reader raises when its generation failed (the app answers 500, or ends a stream with an
    error event)."""
    return RuntimeError(f"generation failed: {type(e).__name__}: {e}")


def unpack(batch: list) -> tuple[list, bool]:
    """One delivery of a request's outputs, as its reader takes it: raises the request's error if it failed, else
    (the Tokens and Finish, whether the request is done)."""
    for item in batch:
        if isinstance(item, BaseException):
            raise item
    return batch, bool(batch) and isinstance(batch[-1], Finish)


async def delivered(q: asyncio.Queue) -> AsyncIterator[Token | Finish]:
    """A request's outputs from the asyncio queue its engine delivers to, up to its Finish (or its error)."""
    while True:
        items, done = unpack(await q.get())
        for item in items:
            yield item
        if done:
            return


__all__ = ["Finish", "Sampler", "Sequence", "Token", "delivered", "failure", "unpack"]

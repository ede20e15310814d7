"""Who runs in the engine's next step.

Waiting requests are admitted in order while `max_num_seqs` and the KV budget (`kv_cache_mb`) allow; requests with
identical prompts (`n > 1`, or two clients) share one prefill and fork; a prompt that starts like a stored one
reuses its KV (kv.PrefixStore), and one that starts like a prompt being prefilled, further than any stored one,
waits for that prefill to end and reuses its KV then (a few-shot prefix arriving with many requests at once, as
`kollm eval` sends them, runs once instead of once per request; later requests are admitted past it meanwhile).
All of this only under the same LoRA adapter (or the base): KV computed under one adapter is not another's.
Cancelled requests leave (a follower takes over a cancelled prefill). Each step's prefill takes up to
`prefill_chunk` prompt tokens from the prefilling requests in order, so a long prompt takes several steps and
never stalls the running streams for long.
"""

from __future__ import annotations

from collections.abc import Callable

from kollm.serve.config import EngineConfig
from kollm.serve.kv import PREFIX_BLOCK, PrefixStore, Slots
from kollm.serve.sequence import Sequence


class Scheduler:
    def __init__(self, cfg: EngineConfig, slots: Slots, prefixes: PrefixStore, start: Callable[[Sequence], bool],
                 stats: dict) -> None:
        """`start`: sets a request up to generate; False when it failed (alone) doing so."""
        self.cfg, self.slots, self.prefixes, self.start, self.stats = cfg, slots, prefixes, start, stats
        self.waiting: list[Sequence] = []

    def drop_cancelled(self) -> None:
        self.waiting = [r for r in self.waiting if not r.cancelled]
        for r in list(self.slots.prefilling):
            r.followers = [f for f in r.followers if not f.cancelled]
            if r.cancelled and r.followers:  # a follower takes over the prefill
                f = r.followers.pop(0)
                f.done, f.length, f.followers = r.done, r.length, r.followers
                self.slots.replace(r, f)
            elif r.cancelled:
                self.slots.remove(r)
        for r in list(self.slots.decoding):
            if r.cancelled:
                self.slots.remove(r)

    def admit(self) -> None:
        """Waiting requests become prefilling while slots and the KV budget allow; identical prompts run once."""
        slots, budget = self.slots, self.cfg.kv_cache_mb << 20
        held: list[Sequence] = []  # waiting for a prefill that is computing the start of their prompt
        while self.waiting and len(slots) < self.cfg.max_num_seqs:
            r = self.waiting[0]
            twin = next((x for x in slots.prefilling if _same_prompt(x, r)), None)
            if twin is not None:  # the same prompt is being prefilled: share it
                if self.start(self.waiting.pop(0)):
                    twin.followers.append(r)
                continue
            coming = self._coming(r)
            if coming and coming > self.prefixes.reusable(r.ids, salt(r)):
                held.append(self.waiting.pop(0))
                continue
            longest = max([x.length for x in slots.decoding + slots.prefilling] + [len(r.ids) + 1])
            per_token = self._bytes_per_token()
            if per_token and len(slots) and (len(slots) + 1) * longest * per_token > budget:
                break
            self.waiting.pop(0)
            group = [r, *[w for w in self.waiting if _same_prompt(w, r)]]  # n > 1, or two clients, same prompt
            for other in group[1:]:
                self.waiting.remove(other)
            group = [x for x in group if self.start(x)]
            if not group:
                continue
            r, r.followers = group[0], group[1:]
            slot = slots.add(r, longest)
            self.stats["prefix_queries"] += len(r.ids)
            hit, kv = self.prefixes.lookup(r.ids, salt(r))
            if kv is not None:
                slots.cache.load(slot, kv, hit)
                r.done = r.length = hit
                self.stats["prefix_hits"] += hit
        self.waiting[:0] = held  # first in line again, in their order

    def _coming(self, r: Sequence) -> int:
        """How many tokens of r's prompt the prefix store will give it once a prompt being prefilled now ends there
        (the engine stores every prompt the store does not have)."""
        if not self.prefixes.max_bytes:
            return 0
        best, limit, head = 0, len(r.ids) - 1, r.ids[:PREFIX_BLOCK]
        for x in self.slots.prefilling:
            if x.lora is not r.lora or x.ids[:PREFIX_BLOCK] != head or not self.prefixes.wants(x.ids, salt(x)):
                continue
            n = next((i for i, (a, b) in enumerate(zip(x.ids[:limit], r.ids[:limit], strict=False)) if a != b),
                     min(limit, len(x.ids)))
            best = max(best, n if n >= PREFIX_BLOCK else 0)  # the store finds nothing shorter than a block
        return best

    def chunks(self) -> list[tuple[Sequence, int, int]]:
        """This step's prefill: (request, first prompt position, token count), at most `prefill_chunk` tokens."""
        out, budget = [], self.cfg.prefill_chunk
        for r in self.slots.prefilling:
            if budget <= 0:
                break
            n = min(budget, len(r.ids) - r.done)
            out.append((r, r.done, n))
            budget -= n
        return out

    def _bytes_per_token(self) -> int:
        cache = self.slots.cache
        n = cache.nbytes()
        return n // max(1, cache.slots * cache.capacity) if n else 0


def salt(r: Sequence) -> int:
    """What r's KV depends on besides its tokens: its LoRA adapter's id (0: the base), the prefix store's key."""
    return r.lora.uid if r.lora is not None else 0


def _same_prompt(a: Sequence, b: Sequence) -> bool:
    return a.lora is b.lora and a.ids == b.ids

"""The engine's KV cache: every admitted request owns one fixed slot, and a store of finished prompts' KV for
prefix reuse.

Why fixed slots and not paged blocks: on CPU there is no paged-attention kernel; attention runs in torch's SDPA,
which wants each row's keys contiguous. Decoding requests sit in slots 0..D-1, so a decode step attends over a
*view* of the cache (no copy); when one leaves, the last one moves into its place (one slot's KV copied, once).
Memory is slots x the longest live sequence, grown in steps as sequences grow (`reserve`). bench/serve.py
measures this against transformers' paged continuous batching.

`SlotCache` is what the Hugging Face model sees as its cache: the attention layers call `update(k, v, layer)`
and get back the keys and values to attend over. What that means for the current forward is a `plan` the engine
sets before calling the model: a decode step (one new token per slot 0..B-1) or a packed prefill (several
prompts' chunks back to back in one row, each written to its own slot).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from kollm.serve.lora import LoraRows

_GROW = 256  # token capacity grows in steps of this many positions


def windows(config: object) -> list[int]:
    """Each layer's sliding attention window, 0 for full attention (Gemma 3 mixes both; so may Qwen2/3). The
    one place both forwards (serve/forward.py and transformers' through engine.py's masks) learn it from."""
    n = int(config.num_hidden_layers)
    types = list(getattr(config, "layer_types", None) or ["full_attention"] * n)
    window = int(getattr(config, "sliding_window", 0) or 0)
    return [window if t == "sliding_attention" else 0 for t in types]


def allowed(qpos: torch.Tensor, kpos: torch.Tensor, window: int = 0) -> torch.Tensor:
    """Which keys each query may attend, [..., Q, K] from positions [..., Q] and [..., K]: the earlier ones, and
    with a sliding `window` only the last `window` of them (the query's own position included)."""
    ok = kpos[..., None, :] <= qpos[..., :, None]
    if window:
        ok &= qpos[..., :, None] - kpos[..., None, :] < window
    return ok


@dataclass
class Decode:
    """One new token for each of slots 0..B-1, written at `pos[b]`; attention over positions 0..length-1."""

    pos: torch.Tensor  # [B] long
    length: int
    lora: LoraRows | None = None  # which rows run which LoRA adapter (None: every row runs the base)


@dataclass
class Prefill:
    """Chunks of several prompts packed in one row: (slot, start, count) in order."""

    segments: list[tuple[int, int, int]]
    lora: LoraRows | None = None  # which tokens (whole segments) run which LoRA adapter


@dataclass
class Mixed:
    """A decode step and a packed prefill in one forward (the engine's own forward only): the decode rows' tokens
    first, as `decode` says, then the prompt chunks, as `prefill` says."""

    decode: Decode
    prefill: Prefill
    lora: LoraRows | None = None  # which of all the tokens run which LoRA adapter


class SlotCache:
    def __init__(self, layers: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * layers
        self.v: list[torch.Tensor | None] = [None] * layers
        self.slots, self.capacity = 0, 0  # what `reserve` asked for; layers follow at their next update
        self.plan: Decode | Prefill | Mixed | None = None  # transformers' forward: never Mixed

    # ---- what the model calls ---------------------------------------------------------------------------
    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, kwargs: object = None,
               **_: object) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self._layer(layer_idx, key)
        plan = self.plan
        if isinstance(plan, Decode):
            rows = torch.arange(key.shape[0], device=key.device)
            k[rows, :, plan.pos] = key[:, :, 0]
            v[rows, :, plan.pos] = value[:, :, 0]
            return k[:key.shape[0], :, :plan.length], v[:key.shape[0], :, :plan.length]
        at, ks, vs = 0, [], []
        for slot, start, n in plan.segments:
            k[slot, :, start:start + n] = key[0, :, at:at + n]
            v[slot, :, start:start + n] = value[0, :, at:at + n]
            ks.append(k[slot, :, :start + n])
            vs.append(v[slot, :, :start + n])
            at += n
        if len(ks) == 1:
            return ks[0][None], vs[0][None]
        return torch.cat(ks, dim=1)[None], torch.cat(vs, dim=1)[None]

    def get_seq_length(self, layer_idx: int = 0) -> int:  # the model asks only when not given position_ids
        return 0

    # ---- what the engine calls --------------------------------------------------------------------------
    def reserve(self, slots: int, length: int) -> None:
        """Room for `slots` slots of `length` positions (grows, never shrinks below what is asked)."""
        slots = max(slots, self.slots)
        if length > self.capacity:
            self.capacity = -(-length // _GROW) * _GROW
        if slots > self.slots:
            self.slots = max(slots, 2 * self.slots, 4)
        for i in range(len(self.k)):
            if self.k[i] is not None:
                self.k[i], self.v[i] = self._grow(self.k[i]), self._grow(self.v[i])

    def shrink(self) -> None:
        """With no sequence left, give back an allocation grown past the starting size."""
        if self.capacity > 2 * _GROW or self.slots > 8:
            self.capacity, self.slots = _GROW, 4
            for i in range(len(self.k)):
                if self.k[i] is not None:
                    self.k[i] = self.k[i][:self.slots, :, :self.capacity].clone()
                    self.v[i] = self.v[i][:self.slots, :, :self.capacity].clone()

    def move(self, src: int, dst: int, n: int) -> None:
        """Slot `src`'s first `n` positions into slot `dst`."""
        if src != dst and n:
            for k, v in self._layers():
                k[dst, :, :n] = k[src, :, :n]
                v[dst, :, :n] = v[src, :, :n]

    def swap(self, a: int, b: int, n: int) -> None:
        if a != b and n:
            idx = torch.tensor([a, b])
            for k, v in self._layers():
                k[[b, a], :, :n] = k[idx, :, :n]
                v[[b, a], :, :n] = v[idx, :, :n]

    def export(self, slot: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(k[slot, :, :n].clone(), v[slot, :, :n].clone()) for k, v in self._layers()]

    def load(self, slot: int, kv: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> None:
        for (k, v), (ks, vs) in zip(self._layers(), kv, strict=True):
            k[slot, :, :n] = ks[:, :n]
            v[slot, :, :n] = vs[:, :n]

    def layer(self, i: int, heads: int, dim: int, dtype: torch.dtype, device: torch.device,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer i's K and V, [slots, heads, capacity, dim]; allocated when the layer first runs (only then are
        its heads and head size known)."""
        if self.k[i] is None:
            shape = (self.slots, heads, self.capacity, dim)
            self.k[i] = torch.zeros(shape, dtype=dtype, device=device)
            self.v[i] = torch.zeros(shape, dtype=dtype, device=device)
        return self.k[i], self.v[i]

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for k, _ in self._layers())

    # ---- internals --------------------------------------------------------------------------------------
    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(k, v) for k, v in zip(self.k, self.v, strict=True) if k is not None]

    def _layer(self, i: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layer(i, like.shape[1], like.shape[3], like.dtype, like.device)

    def _grow(self, t: torch.Tensor) -> torch.Tensor:
        if t.shape[0] >= self.slots and t.shape[2] >= self.capacity:
            return t
        new = t.new_zeros((max(self.slots, t.shape[0]), t.shape[1], max(self.capacity, t.shape[2]), t.shape[3]))
        new[:t.shape[0], :, :t.shape[2]] = t
        return new


class Slots:
    """Which request holds which cache slot. Decoding requests sit in slots 0..D-1, in order, so a decode step
    attends over a view of the cache with no copy; prefilling ones follow, in D..D+P-1. Every change of place
    moves the request's KV with it (`length`: its positions in the cache). The scheduler and the engine change
    places only through here."""

    def __init__(self, cache: SlotCache) -> None:
        self.cache = cache
        self.decoding: list = []
        self.prefilling: list = []

    def __len__(self) -> int:
        return len(self.decoding) + len(self.prefilling)

    def slot(self, r: object) -> int:
        i = self._find(self.decoding, r)
        return i if i is not None else len(self.decoding) + self._index(self.prefilling, r)

    def add(self, r: object, room: int) -> int:
        """A new prefilling request in the next slot, with room for `room` positions; its slot."""
        self.cache.reserve(len(self) + 1, room)
        self.prefilling.append(r)
        return len(self) - 1

    def replace(self, old: object, new: object) -> None:
        """`new` takes over `old`'s prefilling slot and KV (a follower of a cancelled prefill)."""
        self.prefilling[self._index(self.prefilling, old)] = new

    def promote(self, r: object) -> None:
        """Prefilling r joins the decoding ones: it swaps slots with the first prefilling request."""
        D, j = len(self.decoding), self._index(self.prefilling, r)
        a = self.prefilling[0]
        self.cache.swap(D, D + j, max(a.length, r.length))
        self.prefilling[0], self.prefilling[j] = r, a
        self.decoding.append(self.prefilling.pop(0))

    def fork(self, r: object, src: object) -> None:
        """A new decoding request whose KV is decoding `src`'s first `src.length` positions (a shared prompt)."""
        D, P, n = len(self.decoding), len(self.prefilling), src.length
        self.cache.reserve(D + P + 1, n + 1)
        if P:  # the first prefilling request moves to the end to make room at slot D
            self.cache.move(D, D + P, self.prefilling[0].length)
            self.prefilling.append(self.prefilling.pop(0))
        self.cache.move(self.slot(src), D, n)
        self.decoding.append(r)

    def remove(self, r: object) -> None:
        """r leaves (finished, cancelled, failed): the last request of its kind moves into its place."""
        if (i := self._find(self.decoding, r)) is not None:
            last = len(self.decoding) - 1
            self.cache.move(last, i, self.decoding[last].length)
            self.decoding[i] = self.decoding[last]
            self.decoding.pop()
            if self.prefilling:  # the hole at slot `last` goes to the last prefilling request
                self.cache.move(last + len(self.prefilling), last, self.prefilling[-1].length)
                self.prefilling.insert(0, self.prefilling.pop())
        elif (j := self._find(self.prefilling, r)) is not None:
            D, last = len(self.decoding), len(self.prefilling) - 1
            self.cache.move(D + last, D + j, self.prefilling[last].length)
            self.prefilling[j] = self.prefilling[last]
            self.prefilling.pop()
        if not len(self):
            self.cache.shrink()

    def clear(self) -> list:
        """Everyone out (the step failed as a whole); who was in."""
        out, self.decoding, self.prefilling = self.decoding + self.prefilling, [], []
        return out

    @staticmethod
    def _find(rows: list, r: object) -> int | None:
        return next((i for i, x in enumerate(rows) if x is r), None)  # by identity: requests are not values

    def _index(self, rows: list, r: object) -> int:
        i = self._find(rows, r)
        assert i is not None, "the request holds no slot"
        return i


PREFIX_BLOCK = 16  # tokens per block of the prefix index (vLLM's prefix caching hashes blocks of 16 too)


def _blocks(ids: list[int] | tuple[int, ...], limit: int, salt: int = 0) -> list[int]:
    """Chained hashes of the whole blocks of ids[:limit]: block k stands for the first (k+1)*PREFIX_BLOCK tokens
    (under `salt`: the LoRA adapter the KV was computed with, 0 for the base)."""
    out, h = [], salt
    for i in range(0, limit - limit % PREFIX_BLOCK, PREFIX_BLOCK):
        h = hash((h, tuple(ids[i:i + PREFIX_BLOCK])))
        out.append(h)
    return out


class PrefixStore:
    """KV of recent prompts, for reuse by the next prompt that starts the same way (Studio apps resend one long
    few-shot prefix with every call). Least recently used first out, within `max_bytes`.

    Found through an index of chained block hashes (vLLM's prefix caching idea): a lookup hashes the prompt's
    blocks and finds, by binary search, the deepest block the index holds, then fewer than a block's worth of
    tokens after it in the entries that start that way: no stored prompt is compared whole under the engine lock
    (bench/serve_prefix.py: 1,000 entries). Unlike vLLM's paged blocks, an entry's KV is one piece, so the reuse
    ends where the prompts part, not at the block before.

    KV depends on the LoRA adapter it was computed under (`salt`: the adapter's lora.Adapter.uid, never reused; 0
    for the base), so an adapter's entry is keyed by its tokens after the uid negated, a first "token" no prompt
    has, and its block chain starts from the uid: a prefix computed under one adapter is never reused under
    another or the base."""

    def __init__(self, max_bytes: int, min_tokens: int = PREFIX_BLOCK) -> None:
        self.max_bytes, self.min_tokens = max_bytes, max(min_tokens, PREFIX_BLOCK)
        self.entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.index: dict[int, set[tuple[int, ...]]] = {}  # block-chain hash -> entries that start that way
        self.bytes = 0

    def lookup(self, ids: list[int], salt: int = 0) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """The longest stored prefix of `ids` (at most len(ids) - 1 tokens: the last prompt token must run to give
        the first logits), with its KV."""
        n, key = self._find(ids, salt)
        if key is None:
            return 0, None
        self.entries.move_to_end(key)
        return n, self.entries[key]

    def reusable(self, ids: list[int], salt: int = 0) -> int:
        """How many tokens of `ids` a lookup would reuse now, touching nothing."""
        return self._find(ids, salt)[0]

    def _find(self, ids: list[int], salt: int) -> tuple[int, tuple[int, ...] | None]:
        """A binary search over the prompt's blocks finds the deepest whole block the index holds (a prefix of a
        stored prefix is stored too); then the tokens after it that an entry starting that way shares, fewer than a
        block: the KV is stored whole, so a prefix need not end on a block (few-shot prompts that differ in their
        last line would otherwise each run up to 15 shared tokens again)."""
        limit = len(ids) - 1
        chain = _blocks(ids, limit, salt)
        depth = self._depth(chain)
        if depth == 0:
            return 0, None
        n = depth * PREFIX_BLOCK
        best, found = 0, None
        for key in self.index[chain[depth - 1]]:  # fewer than a block compared in each: cheap
            tokens = _split(key)[1]
            m, end = n, min(limit, len(tokens))
            while m < end and tokens[m] == ids[m]:
                m += 1
            if m > best:
                best, found = m, key
            if m == limit:  # none can give more
                break
        stored, tokens = _split(found)
        if stored != salt or tokens[:n] != tuple(ids[:n]):  # a hash collision (2^-64): never reuse the wrong KV
            return 0, None
        return best, found

    def _depth(self, chain: list[int]) -> int:
        """How many of the chained block hashes `chain` the index holds (a binary search)."""
        lo, hi = 0, len(chain)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if chain[mid - 1] in self.index:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def add(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]], salt: int = 0) -> None:
        key = _key(ids, salt)
        size = sum(k.numel() * k.element_size() * 2 for k, _ in kv)
        if len(ids) < self.min_tokens or size > self.max_bytes or key in self.entries:
            return
        self.entries[key] = kv
        for h in _blocks(ids, len(ids), salt):
            self.index.setdefault(h, set()).add(key)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def forget(self, salt: int) -> None:
        """Drop every entry computed under adapter `salt` (unloaded: nothing can use them again)."""
        for key in [k for k in self.entries if _split(k)[0] == salt]:
            self._drop(key)

    def clear(self) -> None:
        self.entries.clear()
        self.index.clear()
        self.bytes = 0

    def wants(self, ids: list[int], salt: int = 0) -> bool:
        return self.max_bytes > 0 and len(ids) >= self.min_tokens and _key(ids, salt) not in self.entries

    def _drop(self, key: tuple[int, ...]) -> None:
        kv = self.entries.pop(key)
        self.bytes -= sum(k.numel() * k.element_size() * 2 for k, _ in kv)
        salt, ids = _split(key)
        for h in _blocks(ids, len(ids), salt):
            keys = self.index.get(h)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.index[h]


def _key(ids: list[int] | tuple[int, ...], salt: int) -> tuple[int, ...]:
    return (-salt, *ids) if salt else tuple(ids)


def _split(key: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """An entry's key as (salt, tokens)."""
    return (-key[0], key[1:]) if key and key[0] < 0 else (0, key)

"""Running the model for one engine step: a packed prefill (chunks of several prompts back to back in one row, each
writing its own slot of the cache), a batched decode (one new token for each of slots 0..B-1), or, in the engine's
own forward, both in one forward (`mixed`).

For Llama, Qwen2, Qwen3 and Gemma 3 the forward is the engine's own (serve/forward.py: fused GEMMs on the model's
weights, ~1.2-1.5x transformers' forward per step); any other family runs transformers' forward with serve/packed.py's
weights, to which the runner gives the positions, the attention masks (the one rule in kv.allowed, per layer type)
and the slot cache. Both write to the same cache (kv.SlotCache).

Each row may run a LoRA adapter (serve/lora.py): which rows run which goes into the step's plan, and the engine's
own forward adds their deltas. transformers' forward has no per-row adapters, so adapters are refused there.
"""

from __future__ import annotations

import torch

from kollm.serve.forward import Forward
from kollm.serve.kv import Decode, Mixed, Prefill, SlotCache, allowed, windows
from kollm.serve.lora import Adapter, LoraRows, Stacks
from kollm.serve.packed import pack_linears
from kollm.serve.sampling import argmax_rows


class ModelRunner:
    def __init__(self, model: torch.nn.Module, cache: SlotCache, argmax_head: bool = True) -> None:
        self.model, self.cache = model, cache
        self.device = next(model.parameters()).device
        self.forward = Forward.build(model, argmax_head)
        self.stacks = Stacks()  # decode steps' adapters side by side (serve/lora.py)
        self._logits = torch.empty(0)  # transformers' forward: the last argmax-only step's logits (exact_row)
        if self.forward is None:  # float32 on an x86 CPU: ~2x the batched decode (serve/packed.py)
            pack_linears(model)
        mc = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        # sliding-window layers (Gemma 3) get their own mask; eager attention wants additive masks
        self.window = max(windows(mc), default=0)
        self.additive = getattr(mc, "_attn_implementation", "sdpa") == "eager"

    def exact_row(self, i: int) -> torch.Tensor:
        """Exact logits [vocab] of row i of the last step run with `argmax_only` (a row that must be masked)."""
        return self.forward.head.exact_row(i) if self.forward is not None else self._logits[i]

    def _argmax(self, logits: torch.Tensor, argmax_only: bool) -> torch.Tensor:
        """transformers' forward gives logits: an argmax-only step keeps them for `exact_row`."""
        if not argmax_only:
            return logits
        self._logits = logits
        return argmax_rows(logits)

    def prefill(self, segments: list[tuple[int, int, list[int]]], loras: list[Adapter | None] | None = None,
                every: bool = False, argmax_only: bool = False) -> torch.Tensor:
        """Logits [len(segments), vocab] at the last token of each chunk; a segment is (slot, start, chunk ids):
        the chunk's tokens sit at positions start.. of that slot's sequence. `loras`: each segment's adapter.
        `every`: logits at every token of every chunk instead, [total tokens, vocab] (speculative decoding checks
        a row's drafted tokens in one chunk: serve/spec.py). `argmax_only`: each row's argmax token [rows] instead
        of its logits (serve/head.py; `exact_row` gives a row's logits afterwards)."""
        ids, qpos, last = [], [], []
        _pack(segments, ids, qpos, last)
        dev = self.device
        q = torch.tensor(qpos, device=dev)
        rows = torch.arange(len(ids), device=dev) if every else torch.tensor(last, device=dev)
        lora = LoraRows.build([(a, len(chunk)) for a, (_, _, chunk) in zip(loras, segments, strict=True)], dev) \
            if loras else None
        self.cache.plan = Prefill(_spans(segments), lora)
        self.cache.reserve(max(slot for slot, _, _ in segments) + 1,
                           max(start + len(chunk) for _, start, chunk in segments) + 1)
        if self.forward is not None:
            return self.forward(torch.tensor(ids, device=dev), q, self.cache.plan, self.cache,
                                None if every else rows, argmax_only)
        assert lora is None, "LoRA adapters run only in the engine's own forward"
        # transformers' forward sees the chunks as one row: each query may see only its own prompt's keys
        k = torch.tensor([p for _, start, chunk in segments for p in range(start + len(chunk))], device=dev)
        qseg = [j for j, (_, _, chunk) in enumerate(segments) for _ in chunk]
        kseg = [j for j, (_, start, chunk) in enumerate(segments) for _ in range(start + len(chunk))]
        same = torch.tensor(qseg, device=dev)[:, None] == torch.tensor(kseg, device=dev)[None, :]
        return self._argmax(self.model(input_ids=torch.tensor([ids], device=dev), position_ids=q[None],
                                       attention_mask=self._masks(q, k, same), cache=self.cache, use_cache=True,
                                       logits_to_keep=rows).logits[0].float(), argmax_only)

    def decode(self, tokens: list[int], positions: list[int], loras: list[Adapter | None] | None = None,
               argmax_only: bool = False) -> torch.Tensor:
        """Logits [B, vocab] for one new token in each of slots 0..B-1, written at its position; `loras`: each
        row's adapter; `argmax_only` as in prefill."""
        dev = self.device
        pos = torch.tensor(positions, device=dev)
        length = int(pos.max()) + 1
        self.cache.reserve(len(tokens), length)
        lora = LoraRows.build([(a, 1) for a in loras], dev, self.stacks) if loras else None
        self.cache.plan = Decode(pos, length, lora)
        ids = torch.tensor(tokens, device=dev)
        if self.forward is not None:
            return self.forward(ids, pos, self.cache.plan, self.cache, argmax_only=argmax_only)
        assert lora is None, "LoRA adapters run only in the engine's own forward"
        k = torch.arange(length, device=dev)
        return self._argmax(self.model(input_ids=ids[:, None], position_ids=pos[:, None],
                                       attention_mask=self._masks(pos[:, None], k[None].expand(len(tokens), -1), None),
                                       cache=self.cache, use_cache=True).logits[:, -1].float(), argmax_only)

    @property
    def mixes(self) -> bool:
        """Whether `mixed` runs (the engine's own forward; transformers' takes one kind of step at a time)."""
        return self.forward is not None

    def mixed(self, tokens: list[int], positions: list[int], segments: list[tuple[int, int, list[int]]],
              loras: list[Adapter | None] | None = None, argmax_only: bool = False) -> torch.Tensor:
        """A decode step of slots 0..B-1 (`tokens` at `positions`, as `decode`) and a packed prefill of `segments`
        (as `prefill`) in one forward: every GEMM and the head run once over both. [B + len(segments), vocab]
        logits (or argmaxes, `argmax_only`): the decode rows, then each chunk's last token. `loras`: the decode
        rows' adapters, then the segments'."""
        assert self.forward is not None, "mixed steps run only in the engine's own forward"
        dev, B = self.device, len(tokens)
        ids, qpos, last = list(tokens), list(positions), list(range(B))
        _pack(segments, ids, qpos, last)
        pos = torch.tensor(positions, device=dev)
        sizes = [1] * B + [len(chunk) for _, _, chunk in segments]
        lora = LoraRows.build(list(zip(loras, sizes, strict=True)), dev) if loras else None
        self.cache.plan = Mixed(Decode(pos, int(pos.max()) + 1), Prefill(_spans(segments)), lora)
        self.cache.reserve(max(B, max(slot for slot, _, _ in segments) + 1),
                           max(max(positions), max(start + len(chunk) for _, start, chunk in segments)) + 1)
        return self.forward(torch.tensor(ids, device=dev), torch.tensor(qpos, device=dev), self.cache.plan,
                            self.cache, torch.tensor(last, device=dev), argmax_only)

    def score(self, ids: list[int], lora: Adapter | None) -> torch.Tensor:
        """Logits [len(ids), vocab] of every position of one prompt, in a cache of its own (prompt scoring under
        an adapter: transformers' forward, which scores the base, has no adapters)."""
        assert self.forward is not None, "LoRA adapters run only in the engine's own forward"
        dev, n = self.device, len(ids)
        cache = SlotCache(len(self.forward.layers))
        cache.reserve(1, n)
        plan = Prefill([(0, 0, n)], LoraRows.build([(lora, n)], dev))
        return self.forward(torch.tensor(ids, device=dev), torch.arange(n, device=dev), plan, cache)

    def _masks(self, qpos: torch.Tensor, kpos: torch.Tensor, same: torch.Tensor | None) -> object:
        """Attention masks [B, 1, Q, K] from query and key positions (and which query may see which key at all,
        for packed prompts): a dict per layer type when the model has sliding-window layers."""
        masks = {"full_attention": allowed(qpos, kpos)}
        if self.window:
            masks["sliding_attention"] = allowed(qpos, kpos, self.window)
        if same is not None:
            masks = {k: m & same for k, m in masks.items()}
        for k, m in masks.items():
            m = m[:, None] if m.dim() == 3 else m[None, None]
            masks[k] = torch.zeros(m.shape, dtype=self.model.dtype, device=m.device).masked_fill(~m, float("-inf")) \
                if self.additive else m
        return masks if self.window else masks["full_attention"]


def _pack(segments: list[tuple[int, int, list[int]]], ids: list[int], qpos: list[int], last: list[int]) -> None:
    """A packed prefill's layout, appended: each chunk's tokens to `ids`, their positions to `qpos`, the row of
    its last token to `last`."""
    for _, start, chunk in segments:
        ids += chunk
        qpos += range(start, start + len(chunk))
        last.append(len(ids) - 1)


def _spans(segments: list[tuple[int, int, list[int]]]) -> list[tuple[int, int, int]]:
    """(slot, start, count) of each segment: what a `Prefill` plan holds."""
    return [(slot, start, len(chunk)) for slot, start, chunk in segments]

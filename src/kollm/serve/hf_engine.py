"""The engine contract (serve/client.py) with nothing of the batching engine's: transformers' own forward and
DynamicCache, one request at a time, no packed weights, no prefix cache, no slots. Two uses: the reference the
batching engine is held to (the API's tests run on both, and greedy outputs must agree), and the proof that the
contract is all the HTTP app needs. Requests share the per-token step (serve/sequence.py), so the two engines
differ only in how they compute logits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import torch
from transformers import DynamicCache

from kollm.model.hf import load_hf_causal_lm
from kollm.serve.base import EngineBase
from kollm.serve.client import EngineStats
from kollm.serve.sampling import SamplingParams
from kollm.serve.sequence import Finish, Sequence, Token, delivered, failure


class HFEngine(EngineBase):
    @classmethod
    def load(cls, path: str | Path, chat_template: str | None = None, mask_pii: bool = False) -> HFEngine:
        model, tokenizer = load_hf_causal_lm(Path(path))
        return cls(model, tokenizer, Path(path).name, chat_template, mask_pii)

    async def agenerate(self, ids: list[int], p: SamplingParams) -> AsyncIterator[Token | Finish]:
        loop, q = asyncio.get_running_loop(), asyncio.Queue()
        r = Sequence(list(ids), p, self.mask_pii)
        thread = threading.Thread(target=self._run, args=(r, lambda items: loop.call_soon_threadsafe(
            q.put_nowait, items)), daemon=True)
        thread.start()
        try:
            async for item in delivered(q):
                yield item
        finally:
            r.cancelled = True  # the thread stops at its next token

    @torch.no_grad()
    def _run(self, r: Sequence, send: object) -> None:
        try:
            with self.lock:
                self.sampler.start(r)
                cache, dev = DynamicCache(), self.device
                feed = torch.tensor([r.ids], device=dev)
                while not r.cancelled:
                    logits = self.model(input_ids=feed, cache=cache, use_cache=True).logits[0, -1].float()
                    done = self.sampler.step(r, logits)
                    if r.outbox:
                        send(r.outbox)
                        r.outbox = []
                    if done:
                        return
                    feed = torch.tensor([[r.pending]], device=dev)
        except Exception as e:  # noqa: BLE001 - handed to the reader, raised there
            send([failure(e)])

    def stats(self) -> EngineStats:
        return EngineStats()

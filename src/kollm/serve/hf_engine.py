"""The engine contract (serve/client.py) with nothing of the batching engine's: transformers' own forward and
DynamicCache, one request at a time, no packed weights, no prefix cache, no slots. Two uses: the reference the
batching engine is held to (the API's tests run on both, and greedy outputs must agree), and the proof that the
contract is all the HTTP app needs. Requests share the per-token step (serve/sequence.py), so the two engines
differ only in how they compute logits. LoRA adapters run through peft itself (a PeftModel holding every loaded
adapter, the request's one set active), the reference for the batching engine's own per-row deltas."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import torch
from transformers import DynamicCache

from kollm.errors import KollmError
from kollm.model.hf import load_hf_causal_lm
from kollm.serve.base import EngineBase
from kollm.serve.client import EngineStats
from kollm.serve.lora import Adapter
from kollm.serve.sampling import SamplingParams
from kollm.serve.sequence import Finish, Sequence, Token, delivered, failure


class HFEngine(EngineBase):
    peft: object = None  # the PeftModel around self.model once an adapter is loaded (peft wraps it in place)

    @classmethod
    def load(cls, path: str | Path, chat_template: str | None = None, mask_pii: bool = False) -> HFEngine:
        model, tokenizer = load_hf_causal_lm(Path(path))
        return cls(model, tokenizer, Path(path).name, chat_template, mask_pii)

    # ---- LoRA adapters, through peft ---------------------------------------------------------------------
    def _install(self, adapter: Adapter) -> None:
        from peft import PeftModel

        adapter.modules = {}  # checked by read_adapter; peft reads the folder itself
        with self.lock:
            if adapter.name in self.loras:
                raise KollmError(f"a LoRA adapter named {adapter.name!r} is already loaded; unload it first")
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, adapter.path, adapter_name=adapter.name)
            else:
                self.peft.load_adapter(adapter.path, adapter_name=adapter.name)
            self.loras[adapter.name] = adapter

    def _uninstall(self, adapter: Adapter) -> None:
        with self.lock, warnings.catch_warnings():  # one request at a time holds the lock: none uses it now
            warnings.simplefilter("ignore")  # peft's note that another adapter is now active: each request sets its own
            self.loras.pop(adapter.name, None)
            self.peft.delete_adapter(adapter.name)

    @contextlib.contextmanager
    def _active(self, lora: Adapter | None) -> Iterator[None]:
        """peft's forward with `lora` active, or with every adapter off for the base (under the lock)."""
        if self.peft is None:
            yield
        elif lora is None:
            with self.peft.disable_adapter():
                yield
        else:
            self.peft.set_adapter(lora.name)
            yield

    def _prompt_logits(self, ids: list[int], lora: Adapter | None) -> torch.Tensor:
        with self._active(lora):
            return self.model(torch.tensor([ids], device=self.device)).logits[0]

    # ---- generation --------------------------------------------------------------------------------------
    async def agenerate(self, ids: list[int], p: SamplingParams, lora: str | None = None,
                        ) -> AsyncIterator[Token | Finish]:
        loop, q = asyncio.get_running_loop(), asyncio.Queue()
        r = Sequence(list(ids), p, self.mask_pii, self._adapter(lora))
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
            with self.lock, self._active(r.lora):
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

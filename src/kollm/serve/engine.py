"""The continuous-batching engine over any Hugging Face causal-LM folder (kollm-trained or not): the engine
contract (serve/client.py) the HTTP app uses, on one step loop.

One thread, the step loop, owns the model. Each step
  1. takes new requests and drops cancelled ones (a closed stream frees its slot here, within one step), and admits
     waiting ones (serve/scheduler.py: slots, the KV budget, shared prompts, stored prefixes);
  2. runs one packed prefill of up to `prefill_chunk` prompt tokens over the waiting prompts (serve/runner.py);
  3. runs one decode forward over every running request (in the engine's own forward, the same forward as the
     prefill when there is one: `_mixed_step`) and samples each row with its own seeded generator
     (serve/sequence.py), whose output processor (serve/output.py) releases text, logprobs and stop decisions;
     when drafting pays (serve/spec.py), the forward checks each row's drafted tokens too (from its own text, or
     from a draft model: serve/draft.py) and a row may output several tokens in one step, exactly those it would
     have output one by one;
  4. hands each reader its step's outputs at once (one wake-up per event loop, not one per token).
Requests hold cache slots in the order kv.Slots keeps; a request that fails fails alone. Each request may run a
LoRA adapter (serve/lora.py): its rows get the adapter's deltas in the same steps as everyone else's.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from kollm.errors import KollmError
from kollm.model.hf import load_hf_causal_lm
from kollm.runtime import release_memory
from kollm.serve.base import EngineBase
from kollm.serve.client import EngineStats
from kollm.serve.config import EngineConfig
from kollm.serve.draft import DraftModel, check_speculative
from kollm.serve.kv import PrefixStore, SlotCache, Slots
from kollm.serve.lora import Adapter
from kollm.serve.runner import ModelRunner
from kollm.serve.sampling import SamplingParams, argmax_rows, is_plain_greedy
from kollm.serve.scheduler import Scheduler, salt
from kollm.serve.sequence import Finish, Sequence, Token, delivered, failure, unpack
from kollm.serve.spec import MAX_DRAFT, Draft, Ngrams, Policy, SpecStats, Timer, update_accept

__all__ = ["Completion", "Engine", "Finish", "Token"]


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class _Sink:
    """Delivers a step's outputs to the requests' readers. One hand-over per step and reader thread: waking one
    thread per token per request would make the step loop fight every reader for the GIL."""

    def send(self, batch: list[tuple[Sequence, list]]) -> None:
        raise NotImplementedError


class _ThreadSink(_Sink):
    def __init__(self) -> None:
        self.q: queue.SimpleQueue = queue.SimpleQueue()

    def send(self, batch: list[tuple[Sequence, list]]) -> None:
        self.q.put([x for _, items in batch for x in items])


class _LoopSink(_Sink):
    """All requests read from one asyncio event loop (the HTTP server's): one wake-up of the loop per step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.queues = loop, {}

    def send(self, batch: list[tuple[Sequence, list]]) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, batch)

    def _deliver(self, batch: list[tuple[Sequence, list]]) -> None:
        for r, items in batch:
            q = self.queues.get(id(r))
            if q is not None:
                q.put_nowait(items)


class Engine(EngineBase):
    def __init__(self, model: torch.nn.Module, tokenizer: object, name: str, chat_template: str | None = None,
                 config: EngineConfig | None = None, mask_pii: bool = False) -> None:
        self.cfg = config or EngineConfig()
        super().__init__(model, tokenizer, name, chat_template, mask_pii, self.cfg.utf8_guard)
        mc = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.cache = SlotCache(int(mc.num_hidden_layers))
        self.slots = Slots(self.cache)
        self.prefixes = PrefixStore(self.cfg.prefix_cache_mb << 20)
        self.runner = ModelRunner(model, self.cache, self.cfg.argmax_head)
        self._stats = {"prefix_queries": 0, "prefix_hits": 0, "prefill_tokens": 0, "steps": 0}
        self.scheduler = Scheduler(self.cfg, self.slots, self.prefixes, self._start, self._stats)
        self.drafter = self._drafter(name)
        if self.cfg.max_model_len > self.max_len:
            raise KollmError(f"--max-model-len {self.cfg.max_model_len} is past what {name} was trained for "
                             f"({self.max_len} positions); give at most {self.max_len}")
        if self.cfg.max_model_len > 0:
            self.max_len = self.cfg.max_model_len
        self.policy, self.spec_stats = Policy(), SpecStats()
        self._trimmed_at = 0
        self._inbox: queue.SimpleQueue[Sequence] = queue.SimpleQueue()
        self._done: list[Sequence] = []  # requests with outputs this step
        self._sinks: dict[asyncio.AbstractEventLoop, _LoopSink] = {}
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="kollm-engine", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, path: str | Path, chat_template: str | Path | None = None, config: EngineConfig | None = None,
             mask_pii: bool = False) -> Engine:
        path = Path(path)
        model, tokenizer = load_hf_causal_lm(path)
        template = None
        if chat_template:
            p = Path(chat_template)
            if not p.is_file():
                raise KollmError(f"chat template {p} does not exist; pass a Jinja file to --chat-template")
            template = p.read_text(encoding="utf-8")
        return cls(model, tokenizer, path.name, template, config, mask_pii)

    def _drafter(self, name: str) -> DraftModel | None:
        """The draft model `--speculative draft` proposes with (None for ngram and off); a misuse is refused."""
        path = self.cfg.draft_model
        check_speculative(self.cfg.speculative, path)
        return DraftModel.load(path, self.tokenizer, self.utf8, name) if path else None

    def summary(self) -> str:
        """Which forward runs, the weights, the budgets and the memory it took, for the server's start-up line
        (beyond the weights: the fused q/k/v and gate/up copies, serve/forward.py, and torch's own)."""
        runs = "kollm's forward" if self.runner.forward is not None else "transformers' forward"
        params = {p.data_ptr(): p for p in self.model.parameters()}.values()  # tied weights once
        weights = sum(t.numel() * t.element_size() for t in params)
        if self.runner.forward is not None and self.runner.forward.head.half is not None:
            runs += f", float16 head for greedy steps {self.runner.forward.head.half_bytes / 2**30:.2f} GiB"
        runs += (f", weights {weights / 2**30:.2f} GiB, KV up to {self.cfg.kv_cache_mb} MB, prefix cache up to "
                 f"{self.cfg.prefix_cache_mb} MB, context {self.max_len} tokens, speculative decoding "
                 f"{self.cfg.speculative}")
        if self.drafter is not None:
            params = {p.data_ptr(): p for p in self.drafter.model.parameters()}.values()
            runs += (f" with draft model {self.drafter.name} ({type(self.drafter.model).__name__}, "
                     f"{sum(t.numel() * t.element_size() for t in params) / 2**30:.2f} GiB)")
        try:
            import resource  # Unix only
        except ImportError:
            return f"{type(self.model).__name__} on {self.device}, {runs}"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**30 if sys.platform == "darwin" else 2**20)
        return f"{type(self.model).__name__} on {self.device}, {runs}, peak memory {peak:.1f} GiB"

    # ---- LoRA adapters -----------------------------------------------------------------------------------
    def _can_serve_lora(self) -> None:
        if self.runner.forward is None:
            raise KollmError(f"{type(self.model).__name__} runs through transformers' forward, which has no "
                             "per-request LoRA adapters (kollm applies them in its own forward for Llama, Qwen2, "
                             "Qwen3 and Gemma 3); merge the adapter into the model (peft's merge_and_unload) and "
                             "serve that folder")

    def _install(self, adapter: Adapter) -> None:
        adapter.fuse(self.model)  # the deltas laid out like forward.py's fused q/k/v and gate/up
        adapter.modules = {}  # only the fused copies are used
        with self.lock:
            if adapter.name in self.loras:
                raise KollmError(f"a LoRA adapter named {adapter.name!r} is already loaded; unload it first")
            self.loras[adapter.name] = adapter

    def _uninstall(self, adapter: Adapter) -> None:
        with self.lock:  # between steps; running requests keep their reference to it and finish with it
            self.loras.pop(adapter.name, None)
            self.prefixes.forget(adapter.uid)
            self.runner.stacks.use([])  # the decode steps' side-by-side copy may hold its weights

    def _prompt_logits(self, ids: list[int], lora: Adapter | None) -> torch.Tensor:
        if lora is None:
            return super()._prompt_logits(ids, None)
        return self.runner.score(ids, lora)

    # ---- generation --------------------------------------------------------------------------------------
    def generate(self, ids: list[int], p: SamplingParams, lora: str | None = None) -> Iterator[Token | Finish]:
        """Tokens of one completion (under LoRA adapter `lora` when given), then a Finish. Closing the iterator
        early (a client that went away) frees the request's slot at the next step."""
        sink = _ThreadSink()
        req = self._submit(Sequence(list(ids), p, self.mask_pii, self._adapter(lora), sink=sink))
        try:
            while True:
                items, done = unpack(sink.q.get())
                yield from items
                if done:
                    return
        finally:
            req.cancelled = True

    async def agenerate(self, ids: list[int], p: SamplingParams, lora: str | None = None,
                        ) -> AsyncIterator[Token | Finish]:
        """`generate` for asyncio (the HTTP server): every request of one event loop shares one delivery per
        step."""
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(loop)
        if sink is None:
            sink = self._sinks[loop] = _LoopSink(loop)
        q: asyncio.Queue = asyncio.Queue()
        req = Sequence(list(ids), p, self.mask_pii, self._adapter(lora), sink=sink)
        sink.queues[id(req)] = q  # before the loop can answer
        try:
            self._submit(req)
            async for item in delivered(q):
                yield item
        finally:
            req.cancelled = True
            sink.queues.pop(id(req), None)
            self._wake.set()  # the loop drops it at its next step even when idle

    def _submit(self, req: Sequence) -> Sequence:
        if req.p.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1 to generate")
        self._inbox.put(req)
        self._wake.set()
        return req

    def complete(self, prompt: str, max_tokens: int = 16, temperature: float | None = None,
                 top_p: float | None = None, seed: int | None = None) -> Completion:
        """One string completion with the model's own sampling defaults where not given (CLI, quickstart)."""
        p = SamplingParams(max_tokens=max_tokens, seed=seed,
                           temperature=self.default_temperature if temperature is None else temperature,
                           top_p=self.default_top_p if top_p is None else top_p)
        ids = self.encode(prompt)
        p.max_tokens = max(0, min(max_tokens, self.max_len - len(ids)))
        text, n, reason = "", 0, "length"
        if p.max_tokens == 0:
            return Completion("", "length", len(ids), 0)
        for step in self.generate(ids, p):
            if isinstance(step, Finish):
                reason = step.reason
            else:
                text, n = text + step.text, n + 1
        return Completion(text, reason, len(ids), n)

    def stats(self) -> EngineStats:
        kv = self.cache.nbytes()
        sp = self.spec_stats
        return EngineStats(kv_usage=min(1.0, kv / max(1, self.cfg.kv_cache_mb << 20)), kv_bytes=kv,
                           prefix_bytes=self.prefixes.bytes, prefix_queries=self._stats["prefix_queries"],
                           prefix_hits=self._stats["prefix_hits"], spec_drafts=sp.drafts,
                           spec_draft_tokens=sp.draft_tokens, spec_accepted_tokens=sp.accepted_tokens)

    def num_running(self) -> int:
        return len(self.slots)

    @property
    def steps(self) -> int:
        return self._stats["steps"]

    def close(self) -> None:
        """Stop the step loop (requests still running or waiting fail with an error) and let the model go: an
        in-process user with several models (kollm eval) frees each one's engine when done with it."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=60)

    # ---- the step loop -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        sched = self.scheduler
        while True:
            if not (sched.waiting or len(self.slots) or self._closed):
                if self._stats["steps"] != self._trimmed_at:  # idle after work: give freed memory back
                    self._trimmed_at = self._stats["steps"]
                    if self.drafter is not None:
                        self.drafter.sweep()  # requests a failed step took with it
                    release_memory()
                self._wake.wait()
            self._wake.clear()
            if self._closed:
                with self.lock:
                    self._take_inbox()
                    self._fail_all(RuntimeError("the engine was closed"))
                    self._flush()
                    self.cache.k, self.cache.v = [], []  # the KV goes with the engine
                    if self.drafter is not None:
                        self.drafter.close()
                return
            try:
                with self.lock, torch.no_grad():
                    self._take_inbox()
                    sched.drop_cancelled()
                    sched.admit()
                    if not (self.slots.prefilling and self._mixed_step()):
                        if self.slots.prefilling:
                            self._prefill_step()
                            self._flush()  # first tokens leave now, not after this step's decode
                        if self.slots.decoding:
                            self._decode_step()
                    if self.drafter is not None:
                        self.drafter.sweep()  # the draft KV of requests that left
                    self._stats["steps"] += 1
                self._flush()
            except Exception as e:  # noqa: BLE001 - the step failed as a whole: everyone in it gets the error
                self._fail_all(e)
            self._flush()

    def _take_inbox(self) -> None:
        """New requests join the waiting ones."""
        while True:
            try:
                self.scheduler.waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                return

    def _fail_all(self, e: Exception) -> None:
        """Every request, waiting or running, gets the error and leaves."""
        for r in self.scheduler.waiting + self.slots.clear():
            self._fail(r, e)
        self.scheduler.waiting = []

    def _flush(self) -> None:
        """Hand this step's outputs over: one call per sink."""
        by_sink: dict[int, tuple[_Sink, list]] = {}
        for r in self._done:
            if r.outbox:
                by_sink.setdefault(id(r.sink), (r.sink, []))[1].append((r, r.outbox))
                r.outbox = []
        self._done = []
        for sink, batch in by_sink.values():
            sink.send(batch)

    def _start(self, r: Sequence) -> bool:
        """Set a request up to generate; False (and the request failed alone) if that raised."""
        try:
            self.sampler.start(r)
        except Exception as e:  # noqa: BLE001 - this request's own fault: it fails alone
            self._fail(r, e)
            return False
        if self.cfg.speculative != "off" and r.p.speculative and r.p.max_tokens > 1:
            r.draft = Draft(Ngrams(r.ids) if self.drafter is None else None, self.policy.accept)
        return True

    def _fail(self, r: Sequence, e: Exception) -> None:
        """One request's failure is its own: it (and its followers) get the error and leave; the batch goes on."""
        err = failure(e)
        for x in (r, *r.followers):
            x.outbox.append(err)
            self._done.append(x)
        r.followers = []
        r.cancelled = True
        self.slots.remove(r)

    def _prefill_step(self) -> None:
        chunks = self.scheduler.chunks()
        fast = self._argmax_only([x for r, _, _ in chunks for x in (r, *r.followers)])
        out = self.runner.prefill(self._segments(chunks), [r.lora for r, _, _ in chunks], argmax_only=fast)
        self._prefilled(chunks, out, None, fast)  # fast: `out` holds the argmaxes

    def _segments(self, chunks: list[tuple[Sequence, int, int]]) -> list[tuple[int, int, list[int]]]:
        """The runner's segments for this step's prompt chunks: (slot, first position, tokens); counted in the
        stats."""
        self._stats["prefill_tokens"] += sum(n for _, _, n in chunks)
        return [(self.slots.slot(r), start, r.ids[start:start + n]) for r, start, n in chunks]

    def _prefilled(self, chunks: list[tuple[Sequence, int, int]], out: torch.Tensor, best: list[int] | None,
                   fast: bool, at: int = 0) -> None:
        """After the forward: the chunks are in the cache; a finished prompt is stored for reuse, joins the decoding
        requests (its followers fork from it) and outputs its first token, from row `at` + its chunk's index.
        `best`: the rows' argmaxes (None: taken from `out` if a prompt finished)."""
        slots, finished = self.slots, []
        for j, (r, start, n) in enumerate(chunks):
            r.done = r.length = start + n
            if r.done == len(r.ids):
                finished.append((r, at + j))
        if finished and best is None:
            best = _best(out, fast)
        for r, j in finished:
            if self.prefixes.wants(r.ids, salt(r)):
                self.prefixes.add(r.ids, self.cache.export(slots.slot(r), r.length), salt(r))
            slots.promote(r)
            group = [r]
            for f in r.followers:  # share the prompt's KV and logits; each samples with its own generator
                f.done = f.length = r.length
                slots.fork(f, r)
                group.append(f)
            r.followers = []
            for x in group:
                self._emit(x, *self._row(out, j, x, best, fast))

    def _mixed_step(self) -> bool:
        """This step's prompt chunks and decode rows in one forward (vLLM's chunked prefill with decodes): the rows
        ride along with the prompt tokens, sharing every GEMM and the head, instead of a forward of their own. Such
        a step does not draft (its forward is priced by the prompt tokens, not the rows; the next one may), and the
        requests whose prompts it finishes decode from the next step on. False (nothing done) when it does not apply:
        no row to decode, or transformers' forward (one kind of step at a time)."""
        rows = self._rows()
        if not rows or not self.runner.mixes:
            return False
        if self.drafter is not None:  # feeding prompts to the draft: a recent average over every decode step
            self.policy.record("catch_up", 0, 0.0)
        chunks = self.scheduler.chunks()
        fast = self._argmax_only(rows + [x for r, _, _ in chunks for x in (r, *r.followers)])
        out = self.runner.mixed([r.pending for r in rows], [r.length for r in rows], self._segments(chunks),
                                [r.lora for r in rows] + [r.lora for r, _, _ in chunks], argmax_only=fast)
        best = _best(out, fast)
        # prompts first: the finished ones join the decoding requests after these rows, whose slots stay put
        self._prefilled(chunks, out, best, fast, at=len(rows))
        self._decoded(rows, out, best, fast)
        return True

    def _rows(self) -> list[Sequence]:
        """The decoding requests with a token to feed: slots 0..B-1."""
        rows = [r for r in self.slots.decoding if r.pending >= 0]
        assert rows == self.slots.decoding[:len(rows)]  # every decoding request has a token to feed
        return rows

    def _decode_step(self) -> None:
        rows = self._rows()
        if not rows:
            return
        if any(r.draft is not None for r in rows):
            drafts = [self._draft(r) for r in rows]
            k = self.policy.choose(drafts, [r.draft.accept if r.draft else 0.0 for r in rows])
            if k:
                if self.drafter is not None:
                    drafts = self._propose(rows, drafts, k)
                self._check_step(rows, [d[:k] for d in drafts])
                return
            if self.drafter is not None:  # feeding prompts to the draft: a recent average over every step
                self.policy.record("catch_up", 0, 0.0)
        fast = self._argmax_only(rows)
        with Timer() as t:
            out = self.runner.decode([r.pending for r in rows], [r.length for r in rows],
                                     [r.lora for r in rows], argmax_only=fast)  # fast: the argmaxes alone
        self.policy.record("decode", len(rows), t.seconds)
        # One argmax for the whole batch. A greedy row whose best token keeps the output valid UTF-8 is done:
        # masking first would change nothing but cost a pass over rows x vocabulary.
        self._decoded(rows, out, _best(out, fast), fast)

    def _decoded(self, rows: list[Sequence], out: torch.Tensor, best: list[int], fast: bool) -> None:
        """After a forward that fed each row its pending token (rows 0..B-1 of `out`): each row's next token."""
        for r in rows:
            r.length += 1
        for i in reversed(range(len(rows))):  # reversed: a finished row moves the last one into its slot
            self._emit(rows[i], *self._row(out, i, rows[i], best, fast))

    def _draft(self, r: Sequence) -> list[int]:
        """r's draft for this step: what followed the last occurrence of its text's ending (serve/spec.py), no
        longer than the tokens it may still output after the next one. With a draft model, as many placeholders
        (-1) as it may propose: its tokens cost forwards, so they are made only once the policy chose a length."""
        if r.draft is None:
            return []
        n = min(MAX_DRAFT, r.p.max_tokens - r.generated - 1)
        if self.drafter is not None:
            return [-1] * self.drafter.room(r, n)
        return r.draft.ngrams.draft(n)

    def _propose(self, rows: list[Sequence], room: list[list[int]], k: int) -> list[list[int]]:
        """The draft model's tokens for the rows with room (up to k each); the proposing forwards are timed for
        the policy, per forward, as ("draft", rows drafting), and what feeding new prompts to the draft cost, as a
        recent average over decode steps ("catch_up", 0: a prompt is fed once, so steps after it bring it down)."""
        drafting = [r for r, d in zip(rows, room, strict=True) if d]
        if not drafting:
            return room  # no row has room: a check of the pending tokens alone
        k = min(k, max(map(len, room)))
        with Timer() as fed:
            self.drafter.catch_up(drafting)
        with Timer() as t:
            got = iter(self.drafter.propose(drafting, k))
        self.policy.record("draft", len(drafting), t.seconds / k)
        self.policy.record("catch_up", 0, fed.seconds)
        return [next(got)[:len(d)] if d else [] for d in room]

    def _check_step(self, rows: list[Sequence], drafts: list[list[int]]) -> None:
        """One forward over each row's pending token and its draft (a chunk at its next positions); then each row
        outputs tokens as a decode step would, one position at a time, while they equal its draft."""
        segs = [(i, r.length, [r.pending, *d]) for i, (r, d) in enumerate(zip(rows, drafts, strict=True))]
        fast = self._argmax_only(rows)
        with Timer() as t:
            out = self.runner.prefill(segs, [r.lora for r in rows], every=True, argmax_only=fast)
        self.policy.record("check", out.shape[0], t.seconds)
        best = _best(out, fast)
        starts = [0]
        for _, _, chunk in segs[:-1]:
            starts.append(starts[-1] + len(chunk))
        st = self.spec_stats
        st.steps += 1
        for i in reversed(range(len(rows))):  # reversed: a finished row moves the last one into its slot
            r, d, at, base = rows[i], drafts[i], starts[i], rows[i].length
            kept = 0
            for j in range(len(d) + 1):
                r.length = base + j + 1  # the pending token and the j drafts before this position are in the cache
                if self._emit(r, *self._row(out, at + j, r, best, fast)):
                    break
                if j == len(d) or r.pending != d[j]:
                    break
                kept += 1
            if d:
                st.count(len(d), kept)
                update_accept(self.policy, r.draft, len(d), kept)

    def _greedy(self, r: Sequence, best: int) -> int | None:
        """The row's argmax when it is the greedy choice as is: no grammar, and it keeps the output valid UTF-8."""
        return best if r.constraint is None and not self.utf8.refuses(r.owed, best) else None

    def _argmax_only(self, rows: list[Sequence]) -> bool:
        """Whether a step of these rows needs only each row's argmax (serve/head.py): every row greedy, nothing
        changing its logits, no log-probabilities to report."""
        return all(is_plain_greedy(r.p) and r.p.logprobs is None for r in rows)

    def _row(self, out: torch.Tensor, i: int, r: Sequence, best: list[int], fast: bool,
             ) -> tuple[torch.Tensor | None, int | None]:
        """Row i's logits and greedy token for r, from the step's output `out`: logits, or after an argmax-only step
        (`fast`) the argmaxes alone, where a greedy row takes its argmax and a row whose argmax r cannot take as is
        (the UTF-8 guard refuses it) is masked and sampled from its exact logits."""
        greedy = self._greedy(r, best[i])
        if fast:
            return (self.runner.exact_row(i), None) if greedy is None else (None, greedy)
        return out[i], greedy

    def _emit(self, r: Sequence, logits: torch.Tensor | None, greedy: int | None = None) -> bool:
        """r's next token and what it releases; a finished r leaves its slot (True). Whatever goes wrong here fails
        r alone."""
        if not r.outbox:
            self._done.append(r)
        try:
            if self.sampler.step(r, logits, greedy):
                self.slots.remove(r)
                return True
        except Exception as e:  # noqa: BLE001 - e.g. a grammar or sampling error: this request's, not the batch's
            self._fail(r, e)
            return True
        if r.draft is not None and r.draft.ngrams is not None:
            r.draft.ngrams.append(r.pending)
        return False


def _best(out: torch.Tensor, fast: bool) -> list[int]:
    """Each row's argmax: the step's output itself after an argmax-only step (`fast`), else from its logits."""
    return (out if fast else argmax_rows(out)).tolist()

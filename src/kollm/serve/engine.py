"""The serving engine over any Hugging Face causal-LM folder (kollm-trained or not), with continuous batching.

The HTTP app talks to an engine through four calls: `encode` (text -> prompt ids, BOS as the tokenizer's config
says), `prompt_logprobs` (scores of a prompt's own tokens: `echo` + `logprobs`, the contract lm-eval's
`local-completions` uses for log-likelihood), `generate` (a stream of `Token`s for one request) and
`chat_prompt` (the tokenizer's chat template). Another engine (another runtime) implements the same four.

One thread, the step loop, owns the model. Each step it
  1. takes new requests and drops cancelled ones (a closed stream frees its slot here, within one step);
  2. runs one packed prefill of up to `prefill_chunk` prompt tokens over the waiting prompts (a long prompt takes
     several steps, so it never stalls the running streams for long), reusing stored prefix KV where a prompt
     starts like an earlier one, and running identical prompts (`n > 1`) once;
  3. runs one decode forward over every running request (one new token each) and samples each row with its own
     seeded generator.
For Llama, Qwen2, Qwen3 and Gemma 3 the forward is the engine's own (`forward.py`: fused GEMMs on the model's
weights, ~1.2-1.5x transformers' forward per step); any other family runs transformers' forward, which kollm gives
the positions, the attention masks and the cache. Both write to the same cache of fixed slots (`kv.py`).
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kollm.errors import KollmError
from kollm.model.hf import load_hf_causal_lm
from kollm.runtime import release_memory
from kollm.serve.config import EngineConfig
from kollm.serve.forward import Forward
from kollm.serve.kv import Decode, Prefill, PrefixStore, SlotCache, allowed, windows
from kollm.serve.output import Output, Token, token_string
from kollm.serve.packed import pack_linears
from kollm.serve.sampling import SamplingParams, argmax_rows, is_plain_greedy, next_token
from kollm.serve.structured import Constraint, Grammars
from kollm.serve.utf8 import Utf8Guard


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Finish:
    reason: str  # "stop" (EOS, a stop token or string) or "length"; every Token came before it


__all__ = ["Completion", "Engine", "Finish", "Token"]


@dataclass
class _Request:
    ids: list[int]
    p: SamplingParams
    mask_pii: bool
    sink: _Sink | None = None  # where this request's outputs go, once per step
    outbox: list = field(default_factory=list)  # outputs of the current step
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
    followers: list[_Request] = field(default_factory=list)  # same prompt: share this prefill (n > 1)


class _Sink:
    """Delivers a step's outputs to the requests' readers. One hand-over per step and reader thread: waking one
    thread per token per request would make the step loop fight every reader for the GIL."""

    def send(self, batch: list[tuple[_Request, list]]) -> None:
        raise NotImplementedError


class _ThreadSink(_Sink):
    def __init__(self) -> None:
        self.q: queue.SimpleQueue = queue.SimpleQueue()

    def send(self, batch: list[tuple[_Request, list]]) -> None:
        self.q.put([x for _, items in batch for x in items])


class _LoopSink(_Sink):
    """All requests read from one asyncio event loop (the HTTP server's): one wake-up of the loop per step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.queues = loop, {}

    def send(self, batch: list[tuple[_Request, list]]) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, batch)

    def _deliver(self, batch: list[tuple[_Request, list]]) -> None:
        for r, items in batch:
            q = self.queues.get(id(r))
            if q is not None:
                q.put_nowait(items)


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer: object, name: str, chat_template: str | None = None,
                 config: EngineConfig | None = None, mask_pii: bool = False) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.cfg = config or EngineConfig()
        self.mask_pii = mask_pii  # outputs pass the data stage's PII masker before they leave (`--mask-pii`)
        self.device = next(model.parameters()).device  # load_hf_causal_lm placed it by kollm.runtime
        # the engine's own forward where it knows the family (serve/forward.py), else transformers' with
        # MKL-packed weights (float32 on an x86 CPU: ~2x the batched decode, serve/packed.py)
        self.forward = Forward.build(model)
        if self.forward is None:
            pack_linears(model)
        mc = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_len = int(getattr(mc, "max_position_embeddings", 2048) or 2048)
        self.vocab = int(mc.vocab_size) if hasattr(mc, "vocab_size") else len(tokenizer)
        gen = getattr(model, "generation_config", None)  # the model folder's sampling defaults
        self.default_temperature = float(getattr(gen, "temperature", None) or 1.0)
        self.default_top_p = float(getattr(gen, "top_p", None) or 1.0)
        if chat_template:
            tokenizer.chat_template = chat_template
        eos = getattr(gen, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.utf8 = Utf8Guard(tokenizer, self.vocab)  # valid UTF-8 by construction (serve/utf8.py)
        self.special_ids = frozenset(tokenizer.all_special_ids)  # zero-width in an echoed prompt
        self.grammars = Grammars(tokenizer, self.vocab)  # response_format (serve/structured.py)
        # attention: sliding-window layers (Gemma 3) get their own mask; eager attention wants additive masks
        self.window = max(windows(mc), default=0)
        self.additive = getattr(mc, "_attn_implementation", "sdpa") == "eager"
        self.cache = SlotCache(int(mc.num_hidden_layers))
        self.prefixes = PrefixStore(self.cfg.prefix_cache_mb << 20)
        self.stats = {"prefix_queries": 0, "prefix_hits": 0, "prefill_tokens": 0, "steps": 0}
        self._trimmed_at = 0
        self.lock = threading.Lock()  # the model runs one forward at a time: steps, and prompt scoring
        self._inbox: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._done: list[_Request] = []  # requests with outputs this step
        self._sinks: dict[asyncio.AbstractEventLoop, _LoopSink] = {}
        self._wake = threading.Event()
        self.waiting: list[_Request] = []
        self.prefilling: list[_Request] = []  # in slots D.. after the decoding ones
        self.decoding: list[_Request] = []  # in slots 0..D-1, in this order
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

    def summary(self) -> str:
        """Which forward runs and the memory it took, for the server's start-up line (the MKL-packed copies of
        the weights are most of it beyond the weights themselves)."""
        runs = "kollm's forward" if self.forward is not None else "transformers' forward"
        runs += f", KV up to {self.cfg.kv_cache_mb} MB, prefix cache up to {self.cfg.prefix_cache_mb} MB"
        try:
            import resource  # Unix only
        except ImportError:
            return f"{type(self.model).__name__} on {self.device}, {runs}"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**30 if sys.platform == "darwin" else 2**20)
        return f"{type(self.model).__name__} on {self.device}, {runs}, peak memory {peak:.1f} GiB"

    # ---- prompts ---------------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """A string prompt as ids: BOS first when the tokenizer defines one (kollm models saw BOS at every
        document start; so did Gemma and Llama), unless `add_special_tokens` is False."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        return [bos, *ids] if bos is not None and add_special_tokens else ids

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special, clean_up_tokenization_spaces=False)

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        if not self.tokenizer.chat_template:
            raise ValueError("this model has no chat template; start the server with --chat-template FILE "
                             "(a Jinja template) or use /v1/completions")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template writes BOS itself

    def token_piece(self, token: int) -> tuple[str, bytes]:
        """A token as logprobs show it (OpenAI's `bytes:\\xNN` form when it is not whole characters) and its
        bytes."""
        data = self.utf8.pieces[token] if 0 <= token < len(self.utf8.pieces) else b""
        return token_string(data), data

    def output(self, p: SamplingParams) -> Output:
        """A request's output processor: text from token bytes, stop strings, PII masks (serve/output.py)."""
        return Output(self.utf8.pieces, self.special_ids, p.stop, self.mask_pii)

    # ---- scoring -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def prompt_logprobs(self, ids: list[int], top: int) -> list[tuple[float, dict[int, float]] | None]:
        """For each prompt position: None for the first token, else (its logprob, the `top` best alternatives)."""
        with self.lock:  # between two steps of the loop
            logits = self.model(torch.tensor([ids], device=self.device)).logits[0, :-1].float()
        out: list[tuple[float, dict[int, float]] | None] = [None]
        for start in range(0, logits.shape[0], 256):  # log-softmax in chunks: a 262k vocabulary is 1 MB a row
            lp = torch.log_softmax(logits[start:start + 256], dim=-1)
            target = torch.tensor(ids[start + 1:start + 1 + lp.shape[0]], device=lp.device)
            chosen = lp.gather(1, target[:, None])[:, 0]
            best = torch.topk(lp, max(top, 1), dim=-1) if top else None
            for i in range(lp.shape[0]):
                alts = dict(zip(best.indices[i].tolist(), best.values[i].tolist(), strict=True)) if best else {}
                out.append((float(chosen[i]), alts))
        return out

    # ---- generation --------------------------------------------------------------------------------------
    def generate(self, ids: list[int], p: SamplingParams) -> Iterator[Token | Finish]:
        """Tokens of one completion, then a Finish. Closing the iterator early (a client that went away) frees
        the request's slot at the next step."""
        sink = _ThreadSink()
        req = self._submit(_Request(list(ids), p, self.mask_pii, sink=sink))
        try:
            while True:
                for item in sink.q.get():
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                    if isinstance(item, Finish):
                        return
        finally:
            req.cancelled = True

    async def agenerate(self, ids: list[int], p: SamplingParams) -> AsyncIterator[Token | Finish]:
        """`generate` for asyncio (the HTTP server): every request of one event loop shares one delivery per
        step."""
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(loop)
        if sink is None:
            sink = self._sinks[loop] = _LoopSink(loop)
        q: asyncio.Queue = asyncio.Queue()
        req = _Request(list(ids), p, self.mask_pii, sink=sink)
        sink.queues[id(req)] = q  # before the loop can answer
        try:
            self._submit(req)
            while True:
                for item in await q.get():
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                    if isinstance(item, Finish):
                        return
        finally:
            req.cancelled = True
            sink.queues.pop(id(req), None)
            self._wake.set()  # the loop drops it at its next step even when idle

    def _submit(self, req: _Request) -> _Request:
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

    def kv_usage(self) -> float:
        """Share of the KV budget the slots hold now (vLLM's kv_cache_usage_perc)."""
        return min(1.0, self.cache.nbytes() / max(1, self.cfg.kv_cache_mb << 20))

    def num_running(self) -> int:
        return len(self.decoding) + len(self.prefilling)

    # ---- the step loop -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            if not (self.waiting or self.prefilling or self.decoding):
                if self.stats["steps"] != self._trimmed_at:  # idle after work: give freed memory back
                    self._trimmed_at = self.stats["steps"]
                    release_memory()
                self._wake.wait()
            self._wake.clear()
            try:
                with self.lock, torch.no_grad():
                    while True:
                        try:
                            self.waiting.append(self._inbox.get_nowait())
                        except queue.Empty:
                            break
                    self._drop_cancelled()
                    self._admit()
                    if self.prefilling:
                        self._prefill_step()
                        self._flush()  # first tokens leave now, not after this step's decode
                    if self.decoding:
                        self._decode_step()
                    self.stats["steps"] += 1
                self._flush()
            except Exception as e:  # noqa: BLE001 - every affected request gets the error; the loop lives on
                for r in self.waiting + self.prefilling + self.decoding:
                    for x in (r, *r.followers):
                        x.outbox.append(RuntimeError(f"generation failed: {type(e).__name__}: {e}"))
                        self._done.append(x)
                self.waiting, self.prefilling, self.decoding = [], [], []
            self._flush()

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

    def _start(self, r: _Request) -> bool:
        """Set a request up to generate; False (and the request failed alone) if that raised."""
        try:
            r.gen = torch.Generator(device=self.device)
            seed = r.p.seed if r.p.seed is not None else int.from_bytes(os.urandom(8), "little")
            r.gen.manual_seed(seed % 2**64)  # torch takes 64 bits; any integer maps into them
            r.out = Output(self.utf8.pieces, self.special_ids, r.p.stop, r.mask_pii)
            r.out.begin(r.ids)
            r.seen = list(r.ids)
            if r.p.grammar is not None:
                r.constraint = self.grammars.matcher(r.p.grammar)
        except Exception as e:  # noqa: BLE001 - this request's own fault: it fails alone
            self._fail(r, e)
            return False
        return True

    def _fail(self, r: _Request, e: Exception) -> None:
        """One request's failure is its own: it (and its followers) get the error and leave; the batch goes on."""
        err = RuntimeError(f"generation failed: {type(e).__name__}: {e}")
        for x in (r, *r.followers):
            x.outbox.append(err)
            self._done.append(x)
        r.followers = []
        self._finish(r)

    def _drop_cancelled(self) -> None:
        self.waiting = [r for r in self.waiting if not r.cancelled]
        for r in self.prefilling:
            r.followers = [f for f in r.followers if not f.cancelled]
        for i in reversed(range(len(self.prefilling))):
            r = self.prefilling[i]
            if r.cancelled and r.followers:  # a follower takes over the prefill
                f = r.followers.pop(0)
                f.done, f.length, f.followers = r.done, r.length, r.followers
                self.prefilling[i] = f
            elif r.cancelled:
                self._remove_prefilling(i)
        for i in reversed(range(len(self.decoding))):
            if self.decoding[i].cancelled:
                self._remove_decoding(i)

    def _slot_bytes_per_token(self) -> int:
        n = self.cache.nbytes()
        return n // max(1, self.cache.slots * self.cache.capacity) if n else 0

    def _admit(self) -> None:
        """Waiting requests become prefilling while slots and the KV budget allow; identical prompts run once."""
        budget = self.cfg.kv_cache_mb << 20
        while self.waiting and self.num_running() < self.cfg.max_num_seqs:
            r = self.waiting[0]
            twin = next((x for x in self.prefilling if x.ids == r.ids), None)
            if twin is not None:  # the same prompt is being prefilled: share it
                if self._start(self.waiting.pop(0)):
                    twin.followers.append(r)
                continue
            longest = max([x.length for x in self.decoding + self.prefilling] + [len(r.ids) + 1])
            per_token = self._slot_bytes_per_token()
            if per_token and self.num_running() and (self.num_running() + 1) * longest * per_token > budget:
                break
            self.waiting.pop(0)
            group = [r, *[w for w in self.waiting if w.ids == r.ids]]  # n > 1, or two clients, same prompt
            for other in group[1:]:
                self.waiting.remove(other)
            group = [x for x in group if self._start(x)]
            if not group:
                continue
            r, r.followers = group[0], group[1:]
            slot = len(self.decoding) + len(self.prefilling)
            self.cache.reserve(slot + 1, longest)
            self.stats["prefix_queries"] += len(r.ids)
            hit, kv = self.prefixes.lookup(r.ids)
            if kv is not None:
                self.cache.load(slot, kv, hit)
                r.done = r.length = hit
                self.stats["prefix_hits"] += hit
            self.prefilling.append(r)

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
            masks[k] = torch.zeros(m.shape, dtype=self.model.dtype).masked_fill(~m, float("-inf")) \
                if self.additive else m
        return masks if self.window else masks["full_attention"]

    def _prefill_step(self) -> None:
        segs, ids, qpos, kpos, qseg, kseg, last = [], [], [], [], [], [], []
        budget, D = self.cfg.prefill_chunk, len(self.decoding)
        for j, r in enumerate(self.prefilling):
            if budget <= 0:
                break
            n = min(budget, len(r.ids) - r.done)
            segs.append((D + j, r.done, n))
            ids += r.ids[r.done:r.done + n]
            qpos += range(r.done, r.done + n)
            kpos += range(r.done + n)
            qseg += [j] * n
            kseg += [j] * (r.done + n)
            budget -= n
            last.append(len(ids) - 1)
        dev = self.device
        self.stats["prefill_tokens"] += len(ids)
        q, rows = torch.tensor(qpos, device=dev), torch.tensor(last, device=dev)
        self.cache.plan = Prefill(segs)
        self.cache.reserve(D + len(self.prefilling), max(s + n for _, s, n in segs) + 1)
        if self.forward is not None:
            logits = self.forward(torch.tensor(ids, device=dev), q, self.cache.plan, self.cache, rows)
        else:
            k = torch.tensor(kpos, device=dev)
            same = torch.tensor(qseg, device=dev)[:, None] == torch.tensor(kseg, device=dev)[None, :]
            logits = self.model(input_ids=torch.tensor([ids], device=dev), position_ids=q[None],
                                attention_mask=self._masks(q, k, same), cache=self.cache, use_cache=True,
                                logits_to_keep=rows).logits[0].float()
        finished = []
        for j, (_, start, n) in enumerate(segs):
            r = self.prefilling[j]
            r.done = r.length = start + n
            if r.done == len(r.ids):
                finished.append((r, logits[j]))
        for r, row in finished:
            j = self.prefilling.index(r)
            if self.prefixes.wants(r.ids):
                self.prefixes.add(r.ids, self.cache.export(len(self.decoding) + j, r.length))
            self._to_decoding(j)
            group = [r]
            for f in r.followers:  # share the prompt's KV and logits; each samples with its own generator
                f.done = f.length = r.length
                self._insert_decoding(f, self.decoding.index(r), r.length)
                group.append(f)
            r.followers = []
            for x in group:
                self._emit(x, row)

    def _decode_step(self) -> None:
        rows = [r for r in self.decoding if r.pending >= 0]
        if not rows:
            return
        assert rows == self.decoding[:len(rows)]  # every decoding request has a token to feed
        dev = self.device
        pos = torch.tensor([r.length for r in rows], device=dev)
        length = int(pos.max()) + 1
        self.cache.reserve(len(self.decoding) + len(self.prefilling), length)
        self.cache.plan = Decode(pos, length)
        tokens = torch.tensor([r.pending for r in rows], device=dev)
        if self.forward is not None:
            logits = self.forward(tokens, pos, self.cache.plan, self.cache)
        else:
            k = torch.arange(length, device=dev)
            logits = self.model(input_ids=tokens[:, None], position_ids=pos[:, None],
                                attention_mask=self._masks(pos[:, None], k[None].expand(len(rows), -1), None),
                                cache=self.cache, use_cache=True).logits[:, -1].float()
        for r in rows:
            r.length += 1
        self._sample_rows(rows, logits)

    def _sample_rows(self, rows: list[_Request], logits: torch.Tensor) -> None:
        # One argmax for the whole batch. A greedy row whose best token keeps the output valid UTF-8 is done:
        # masking first would change nothing but cost a pass over rows x vocabulary.
        best = argmax_rows(logits).tolist()
        for i in reversed(range(len(rows))):  # reversed: a finished row moves the last one into its slot
            r = rows[i]
            ok = r.constraint is None and not self.utf8.blocked[r.owed, best[i]]
            self._emit(r, logits[i], greedy=best[i] if ok else None)

    def _emit(self, r: _Request, logits: torch.Tensor, greedy: int | None = None) -> None:
        """Sample r's next token from its logits row (`greedy`: the row's argmax, when it is a valid token),
        hand it out, and finish r if it is done. Whatever goes wrong here fails r alone."""
        self._done.append(r)
        try:
            self._sample(r, logits, greedy)
        except Exception as e:  # noqa: BLE001 - e.g. a grammar or sampling error: this request's, not the batch's
            self._fail(r, e)

    def _sample(self, r: _Request, logits: torch.Tensor, greedy: int | None) -> None:
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
            return self._end(r, "stop")
        r.outbox += r.out.push(tok, lp, top)
        if r.out.stopped or (r.constraint is not None and not r.constraint.advance(tok)):  # a stop string; whole JSON
            return self._end(r, "stop")
        if r.generated >= p.max_tokens:
            return self._end(r, "length")
        r.pending = tok
        r.seen.append(tok)
        return None

    def _end(self, r: _Request, reason: str) -> None:
        r.outbox += r.out.finish(cut=reason == "length")
        r.outbox.append(Finish(reason))
        self._finish(r)

    def _finish(self, r: _Request) -> None:
        r.cancelled = True
        if r in self.decoding:
            self._remove_decoding(self.decoding.index(r))
        elif r in self.prefilling:
            self._remove_prefilling(self.prefilling.index(r))

    # ---- slot bookkeeping: decoding requests in slots 0..D-1, prefilling ones in D..D+P-1 ----------------
    def _remove_decoding(self, i: int) -> None:
        last = len(self.decoding) - 1
        self.cache.move(last, i, self.decoding[last].length)
        self.decoding[i] = self.decoding[last]
        self.decoding.pop()
        if self.prefilling:  # the hole at slot `last` goes to the last prefilling request
            self.cache.move(last + len(self.prefilling), last, self.prefilling[-1].length)
            self.prefilling.insert(0, self.prefilling.pop())
        if not (self.decoding or self.prefilling):
            self.cache.shrink()

    def _remove_prefilling(self, j: int) -> None:
        D, last = len(self.decoding), len(self.prefilling) - 1
        self.cache.move(D + last, D + j, self.prefilling[last].length)
        self.prefilling[j] = self.prefilling[last]
        self.prefilling.pop()

    def _to_decoding(self, j: int) -> None:
        """Prefilling request j joins the decoding ones: it swaps slots with the first prefilling request."""
        D = len(self.decoding)
        a, b = self.prefilling[0], self.prefilling[j]
        self.cache.swap(D, D + j, max(a.length, b.length))
        self.prefilling[0], self.prefilling[j] = b, a
        self.decoding.append(self.prefilling.pop(0))

    def _insert_decoding(self, r: _Request, src: int, n: int) -> None:
        """A new decoding request whose KV is slot `src`'s first n positions (a forked prompt)."""
        D, P = len(self.decoding), len(self.prefilling)
        self.cache.reserve(D + P + 1, n + 1)
        if P:  # the first prefilling request moves to the end to make room at slot D
            self.cache.move(D, D + P, self.prefilling[0].length)
            self.prefilling.append(self.prefilling.pop(0))
        self.cache.move(src, D, n)
        self.decoding.append(r)

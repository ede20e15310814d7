"""`FastHF`: lm-eval's `hf` backend, with multiple-choice scoring that runs each shared context once and generation
on kollm's continuous-batching serving engine.

A multiple-choice item asks for log P(choice | context) for every choice after the same context (5 few-shot
examples and the question: hundreds of tokens; a choice: a few). lm-eval's `HFLM` runs context + choice once per
choice. Here the context runs once, its KV cache is repeated over the choices, and only the choices' tokens run
on top of it: for a 7-way topic item with a 300-token context, ~7x fewer tokens through the model.

Generation (`generate_until`: the kollm_qa, kollm_query_correction, kollm_review_summary and kollm_promo_copy
tasks) runs on one in-process `kollm.serve.engine.Engine` over the same loaded model (built at the first
generation request): every request at once, continuous batching, the prefix cache for shared few-shot prefixes,
instead of HFLM's fixed batches through transformers' `generate`, where a batch runs until its slowest row ends.
What HFLM does around `generate` is kept: its tokenisation (BOS, left truncation to max_length - max_gen_toks), its
stop rule (the model's generation_config EOS ids, the task's `until` strings plus the EOS text, looked for in
`tok_decode` of the tokens so far), its decoding and its cut at the first stop string. The engine runs greedy
requests only; anything else (sampling, beams, penalties, ...) goes to HFLM's own `generate_until`.

Everything else (tokenisation, BOS, truncation rules) is `HFLM`'s own, so the two give the same requests and the
same scores (to float rounding: a different batching of the same float32 maths).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from kollm.progress import progress

Request = tuple[tuple[str, str], list[int], list[int]]

# generation_config fields that would make transformers' greedy `generate` differ from a plain argmax (logits
# processors, beams, time limits), with the values that leave it a plain argmax; any other value: HFLM generates
_GREEDY_NEUTRAL: dict[str, tuple] = {
    "num_beams": (None, 1), "num_beam_groups": (None, 1), "num_return_sequences": (None, 1),
    "penalty_alpha": (None, 0, 0.0), "repetition_penalty": (None, 1, 1.0), "encoder_repetition_penalty": (None, 1, 1.0),
    "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0), "bad_words_ids": (None, []),
    "force_words_ids": (None, []), "constraints": (None, []), "min_length": (None, 0), "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "suppress_tokens": (None, []),
    "begin_suppress_tokens": (None, []), "sequence_bias": (None, {}), "exponential_decay_length_penalty": (None,),
    "guidance_scale": (None, 1, 1.0), "stop_strings": (None, []), "max_time": (None,), "dola_layers": (None,),
    "prompt_lookup_num_tokens": (None,), "watermarking_config": (None,), "token_healing": (None, False),
    "use_mtp": (None, False),
}


class FastHF(HFLM):
    """An lm-eval `LM`: HFLM + shared-context KV reuse + generation on kollm's serving engine. Not in lm-eval's
    model registry: `kollm eval` builds it directly as its `kollm` backend (`backends.make_backend`, the default;
    `--backend hf` runs plain HFLM)."""

    # the generation engine's limits (serve/config.py): every request is submitted at once, at most max_num_seqs
    # run in one batch; a larger prefill chunk than serving's (no streams to keep smooth here) means fewer steps
    max_num_seqs = 64
    prefill_chunk = 2048
    _engine: Any = None

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

    # ---- generation on the serving engine ---------------------------------------------------------------
    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        if self.backend != "causal" or not requests:
            return super().generate_until(requests, disable_tqdm)
        greedy = [self._engine_plan(r.args[1]) is not None for r in requests]
        ours = [i for i, g in enumerate(greedy) if g]
        rest = [i for i, g in enumerate(greedy) if not g]
        out: list[str | None] = [None] * len(requests)
        if rest:  # sampling, beams, penalties: transformers' generate, as HFLM runs it
            for i, s in zip(rest, super().generate_until([requests[i] for i in rest], disable_tqdm), strict=True):
                out[i] = s
        if ours:
            for i, s in zip(ours, self._engine_generate([requests[i].args for i in ours], disable_tqdm), strict=True):
                out[i] = s
        return out  # type: ignore[return-value]

    def _engine_plan(self, gen_kwargs: dict) -> tuple[list[str], int, int, list[int]] | None:
        """(until, max_gen_toks, new tokens, EOS ids) when HFLM would generate greedily with `gen_kwargs`, which the
        engine reproduces; None otherwise. HFLM passes whatever it does not consume to transformers' `generate`,
        on top of the model's generation_config: that merged config must be plain greedy search."""
        if not isinstance(gen_kwargs, dict):
            return None
        kw = dict(normalize_gen_kwargs(gen_kwargs, self.max_gen_toks))
        until = handle_stop_sequences(kw.pop("until", None), eos=self._eos_text())
        max_gen_toks = kw.pop("max_gen_toks")
        if "max_length" in kw or kw.get("do_sample") is not False:  # max_length: the padded batch's, in HFLM
            return None
        kw.pop("temperature", None)  # do_sample=False: greedy whatever the temperature (transformers' rule)
        gc = copy.deepcopy(self.model.generation_config)
        if any(not hasattr(gc, k) for k in kw):
            return None  # something transformers would take as a model input
        gc.update(**kw)
        for field, neutral in _GREEDY_NEUTRAL.items():
            if getattr(gc, field, None) not in neutral:
                return None
        # transformers lets generation_config's max_new_tokens win over the max_length HFLM passes
        new = gc.max_new_tokens if gc.max_new_tokens is not None else max_gen_toks
        eos = gc.eos_token_id
        eos_ids = [] if eos is None else [int(t) for t in (eos if isinstance(eos, (list, tuple)) else [eos])]
        return until, max_gen_toks, int(new), eos_ids

    def _eos_text(self) -> str:
        return self.tok_decode(self.eot_token_id, skip_special_tokens=False)

    def close(self) -> None:
        """Stop the serving engine, if one was built, so the model can be freed (kollm eval, after each model)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def engine(self) -> Any:
        """The serving engine over this LM's model, built once, at the first generation request. It makes the
        model's q/k/v and gate/up weights views of fused tensors (serve/forward.py): same values, so the
        transformers forward that scores log-likelihoods gives the same numbers."""
        if self._engine is None:
            from kollm.serve.config import EngineConfig
            from kollm.serve.engine import Engine

            # transformers' greedy `generate` takes the argmax token even when its bytes do not continue the
            # output as valid UTF-8; the engine's guard (serve/utf8.py) would take the next best: off here
            cfg = EngineConfig(max_num_seqs=self.max_num_seqs, prefill_chunk=self.prefill_chunk, utf8_guard=False,
                               argmax_head=False)
            self._engine = Engine(self.model, self.tokenizer, "eval", config=cfg)
        return self._engine

    def _engine_generate(self, args: list[tuple[str, dict]], disable_tqdm: bool) -> list[str]:
        """HFLM.generate_until for greedy requests, on the engine: the same contexts (encoded in HFLM's batches,
        so its BOS check on a batch's first string and its left truncation apply alike), the same stops and
        decoding; all requests submitted at once."""
        from kollm.serve.engine import Finish
        from kollm.serve.sampling import SamplingParams

        re_ords = Collator(list(args), sort_fn=lambda req: (-len(self.tok_encode(req[0])), req[0]),
                           group_by="gen_kwargs", group_fn=lambda x: x[1])
        n = int(self.batch_size) if str(self.batch_size).isdigit() else 1
        jobs: list[tuple[str, dict, list[int], SamplingParams, list[str]]] = []
        for chunk in re_ords.get_batched(n=n):
            contexts, all_kwargs = zip(*chunk, strict=True)
            until, max_gen_toks, new, eos_ids = self._engine_plan(all_kwargs[0])  # type: ignore[misc]
            max_ctx_len = self.max_length - max_gen_toks
            assert max_ctx_len > 0, (
                f"Invalid configuration: requested max tokens to generate ({max_gen_toks}) must be less than "
                f"model's maximum sequence length ({self.max_length}).")
            enc, mask = self.tok_batch_encode(list(contexts), left_truncate_len=max_ctx_len, truncation=self.truncation)
            # the engine ends a row at a stop string itself, in the step that made it, where the reader below
            # would close it only after: one decode step of every request saved (its check stays the rule)
            p = SamplingParams(max_tokens=new, temperature=0.0, ignore_eos=True, stop_token_ids=eos_ids,
                               stop=[s for s in until if s])
            for row, context in enumerate(contexts):
                ids = enc[row][mask[row].bool()].tolist()
                jobs.append((context, all_kwargs[0], ids, p, until))
        bar = progress(total=len(jobs), desc="generate_until (kollm serving engine)",
                       disable=disable_tqdm or self.rank != 0)
        engine = self.engine()

        async def one(ids: list[int], p: SamplingParams, until: list[str]) -> list[int]:
            toks: list[int] = []
            stops = [s for s in until if s]
            if p.max_tokens > 0:
                async with contextlib.aclosing(engine.agenerate(ids, p)) as stream:
                    async for item in stream:
                        if isinstance(item, Finish):
                            break
                        toks.append(item.id)
                        # HFLM's stopping criteria: a stop string in the decoded output (closing the stream
                        # frees the request's slot at the engine's next step)
                        if stops and any(s in self.tok_decode(toks) for s in stops):
                            break
            bar.update(1)
            return toks

        async def run_all() -> list[list[int]]:
            return await asyncio.gather(*(one(ids, p, until) for _, _, ids, p, until in jobs))

        generated = _run(run_all())
        bar.close()
        res = []
        for (context, gen_kwargs, _, _, until), toks in zip(jobs, generated, strict=True):
            res.append(self._finish_text(toks, until))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), res[-1])
        return re_ords.get_original(res)

    def _finish_text(self, toks: list[int], until: list[str]) -> str:
        """HFLM's text from the generated tokens: thinking cut, decoded, cut at the first stop string."""
        if isinstance(self.think_end_token, int):
            ends = [i for i, t in enumerate(toks) if t == self.think_end_token]
            if ends:
                toks = toks[ends[-1] + 1:]
        s = self.tok_decode(toks)
        if isinstance(self.think_end_token, int):
            s = s.lstrip()
        return postprocess_generated_text(generation=s, stop=until, think_end_token=self.think_end_token
                                          if isinstance(self.think_end_token, str) else None)


def _run(coro: Any) -> Any:
    """Run a coroutine to the end from synchronous code, also when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

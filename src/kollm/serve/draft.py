"""Speculative decoding with a draft model (`--speculative draft --draft-model DIR`): a second, smaller causal LM
that shares the served model's tokenizer proposes up to k tokens per row, and the engine checks them exactly as it
checks prompt-lookup drafts (engine.py's `_check_step`, serve/spec.py). This file only proposes.

Why greedy drafts, and why the check is then exact. Leviathan et al.'s rejection sampling keeps a draft token d
with probability min(1, p(d) / q(d)) and, when it refuses, draws from max(0, p - q) renormalised (p: the served
model, q: the draft). The draft here picks its argmax, so q is one-hot at d: keep d with probability p(d), else
draw from p without d. "Draw x from p with the request's own generator; keep d while x = d, else output x" does
exactly that, with one draw per output token as without speculation, which is what `_check_step` already does
for prompt-lookup drafts. So sampled outputs keep the model's distribution and a seeded request draws the very
tokens it would draw without drafts (a sampled draft, q a distribution, would need the p/q test and residual draws,
and give up that draw-for-draw identity). The draft applies the served model's UTF-8 guard to its argmax (the
sampler would refuse a token that breaks UTF-8 anyway); grammars, penalties and LoRA adapters it ignores: they
only lower acceptance, never change the output.

The draft's KV. The draft runs through the engine's own ModelRunner (serve/runner.py: kollm's forward or
transformers') over a SlotCache of its own. Each drafting request holds one slot of it, numbered here (the
engine's slots move as requests come and go; these stay put), and the list of tokens whose K/V that slot holds
(positions 0..n-1). Before each proposal that list is cut back to what it shares with the request's tokens
(prompt and output so far): drafts the check refused go, the ones it kept stay, so the cache holds exactly
accepted tokens; the missing ones (the pending token, a kept draft the draft model never fed, or everything after
steps that did not draft) are fed in the proposal's first forward. A request's slot is given back at the end of
the step in which it finished, was cancelled or failed (`sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kollm.errors import KollmError
from kollm.model.hf import load_hf_causal_lm
from kollm.serve.kv import SlotCache
from kollm.serve.runner import ModelRunner
from kollm.serve.sequence import Sequence
from kollm.serve.utf8 import Utf8Guard

# Tokens a row may lack before its proposal catches it up in a forward of its own (untimed, like a prefill): the
# pending token and one kept draft come with the first proposing forward, a new prompt does not (the policy
# measures proposing forwards, and a prompt's worth of tokens in one would make drafting look dear).
CATCH_UP = 2


@dataclass
class _Row:
    slot: int
    tokens: list[int]  # what the draft cache holds for this request, at positions 0..len-1
    sure: int = 0  # how many of them came from the request's own tokens (drafts after them may have been refused)


METHODS = ("ngram", "draft", "off")


def check_speculative(method: str, draft_model: str, model: str | None = None) -> None:
    """Refuse a misused --speculative / --draft-model pair, and with `model` (the served folder: `kollm serve` checks
    before its port opens) a draft folder that is none or whose tokenizer is not the model's; one line each."""
    if method not in METHODS:
        raise KollmError(f"unknown speculative method {method!r}; use ngram, draft or off")
    if method == "draft" and not draft_model:
        raise KollmError("--speculative draft needs --draft-model DIR (a small causal LM with the model's tokenizer)")
    if draft_model and method != "draft":
        raise KollmError(f"--draft-model is used only with --speculative draft (not {method}); add --speculative "
                         "draft or drop --draft-model")
    if model is None or not draft_model:
        return
    if not (Path(draft_model) / "config.json").is_file():
        raise KollmError(f"draft model {draft_model} is not a Hugging Face model folder (no config.json); pass "
                         "--draft-model DIR")
    from kollm.tokenizer import load_tokenizer

    _refuse_mismatch(load_tokenizer(model), load_tokenizer(draft_model), draft_model, Path(model).name)


def _refuse_mismatch(target: object, draft: object, path: str | Path, served: str) -> None:
    why = tokenizer_mismatch(target, draft)
    if why:
        raise KollmError(f"draft model {path} does not share {served}'s tokenizer ({why}); pass a --draft-model "
                         "trained with the same tokenizer (e.g. a smaller model of the same family)")


def tokenizer_mismatch(target: object, draft: object) -> str | None:
    """How the draft's tokenizer differs from the target's (None: the same token ids for the same pieces)."""
    if len(draft) != len(target):
        return f"{len(draft)} tokens against {len(target)}"
    a, b = target.get_vocab(), draft.get_vocab()
    if a != b:
        piece = next((t for t, i in a.items() if b.get(t) != i), None)
        if piece is None:
            return "different tokens"
        return f"{piece!r} is id {a[piece]} in the model but {b.get(piece)} in the draft"
    return None


class DraftModel:
    """A small causal LM proposing greedy tokens for the engine's rows, batched, with its own KV per request."""

    def __init__(self, model: torch.nn.Module, name: str, utf8: Utf8Guard) -> None:
        self.model, self.name, self.utf8 = model, name, utf8
        mc = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_len = int(getattr(mc, "max_position_embeddings", 2048) or 2048)
        self.cache = SlotCache(int(mc.num_hidden_layers))
        self.runner = ModelRunner(model, self.cache)
        self.rows: dict[Sequence, _Row] = {}  # by identity: Sequence compares by identity
        self.free: list[int] = []  # slots given back, reused first

    @classmethod
    def load(cls, path: str | Path, tokenizer: object, utf8: Utf8Guard, served: str) -> DraftModel:
        """The draft in folder `path`, refused unless it shares `tokenizer` (the served model's, named `served`)."""
        path = Path(path)
        model, draft_tokenizer = load_hf_causal_lm(path)
        _refuse_mismatch(tokenizer, draft_tokenizer, path, served)
        return cls(model, path.name, utf8)

    def room(self, r: Sequence, n: int) -> int:
        """How many of the n tokens r may still output after its next one the draft can propose: none past the
        draft's own context."""
        return max(0, min(n, self.max_len - len(r.seen)))

    def catch_up(self, rows: list[Sequence]) -> None:
        """Cut each row's draft KV back to what it shares with the row's tokens; rows lacking more than a few
        (a new prompt, steps that did not draft) get all but their pending token fed here, in one forward."""
        segs = []
        for r in rows:
            st = self._row(r)
            seen = r.seen  # only ever appended to: what came from it still matches
            limit = min(len(st.tokens), len(seen) - 1)  # the pending token is always fed: its logits propose
            n = min(st.sure, limit)
            while n < limit and st.tokens[n] == seen[n]:
                n += 1
            del st.tokens[n:]
            if len(seen) - n > CATCH_UP:
                segs.append((st.slot, n, seen[n:-1]))
                st.tokens += seen[n:-1]
            st.sure = len(st.tokens)
        if segs:
            self.runner.prefill(segs)

    def propose(self, rows: list[Sequence], k: int) -> list[list[int]]:
        """k greedy tokens after each row's tokens (call `catch_up` first), from k forwards over all rows: the first
        feeds what each row's cache lacks, the others the token just proposed."""
        states = [self.rows[r] for r in rows]
        segs = [(st.slot, len(st.tokens), r.seen[len(st.tokens):]) for r, st in zip(rows, states, strict=True)]
        owed = [r.owed for r in rows]
        out: list[list[int]] = [[] for _ in rows]
        for step in range(k):
            best = self.runner.prefill(segs, argmax_only=True).tolist()  # the argmax at each chunk's last token
            for i, b in enumerate(best):  # one the UTF-8 rule refuses (or past the vocabulary): the best allowed
                if self.utf8.refuses(owed[i], b):
                    row = self.runner.exact_row(i)[: self.utf8.vocab]  # not a padded vocabulary's extra rows
                    best[i] = int(self.utf8.mask(row, owed[i]).argmax())
            for i, (st, (_, _, chunk)) in enumerate(zip(states, segs, strict=True)):
                st.tokens += chunk
                if step == 0:
                    st.sure = len(st.tokens)  # the row's own tokens; the drafts fed next may be refused
                out[i].append(best[i])
                owed[i] = self.utf8.step(owed[i], best[i])
            if step + 1 < k:  # the last proposal is not fed: the check decides whether it stays
                segs = [(st.slot, len(st.tokens), [t[-1]]) for st, t in zip(states, out, strict=True)]
        return out

    def sweep(self) -> None:
        """Give back the slots of requests that have left (finished, cancelled, failed); the memory with the last."""
        for r in [r for r in self.rows if r.cancelled]:
            self.free.append(self.rows.pop(r).slot)
        if not self.rows and self.free:
            self.free = []
            self.cache.shrink()

    def close(self) -> None:
        self.rows, self.free = {}, []
        self.cache.k, self.cache.v = [], []

    def _row(self, r: Sequence) -> _Row:
        st = self.rows.get(r)
        if st is None:
            st = self.rows[r] = _Row(self.free.pop() if self.free else len(self.rows), [])
        return st


__all__ = ["METHODS", "DraftModel", "check_speculative", "tokenizer_mismatch"]

"""Speculative decoding: drafts from the request's own text (prompt lookup, vLLM's `ngram` method; a draft model
is serve/draft.py), checked by the engine in one forward, and the rule for when drafting pays.

Drafting. A request's prompt and output so far are indexed by n-grams as tokens arrive (`Ngrams`, O(1) per token);
the draft is what followed the last earlier occurrence of the longest suffix of 2..4 tokens. Query correction and
review summaries copy most of their output from the prompt, so such drafts are often right.

Checking (engine.py's speculative step). The row's pending token and its k drafts run as one chunk at positions
L..L+k (a packed prefill with logits at every token). Then, position by position, the sampler picks the token
exactly as a plain decode step would (same logits processors, UTF-8 mask, grammar, penalties over what was
accepted so far, the request's own generator) and the draft is kept while the picked token equals it; the first
token that differs, or the one after the last draft, is still output. Every output token is thus drawn from the
target model's distribution given the tokens before it, so greedy output is token-for-token and a seeded sample
draw-for-draw the output of non-speculative decoding. This is Leviathan et al.'s rejection sampling for a
deterministic draft (q = one draft token): "accept d with probability p(d), else draw from p without d" is what
"draw x from p, keep d when x = d" does, with one draw per output token, as without speculation.

When it pays (`Policy`). On a CPU a forward over T tokens costs more than one token as soon as T passes a few
(measured on Gemma-3-270M, 2 cores: the float32 output head 22 ms at one row, 45 at two, 67 at four; the argmax
head of greedy steps, serve/head.py, ~12 ms at each), so each step the engine picks the draft length k with the
most expected tokens per second: expected tokens from each row's recent acceptance, seconds from what steps of
that shape took on this machine (learned as the engine runs; `Policy.cost` says what an unmeasured shape is
assumed to cost). A draft model's proposing forwards are part of a step's cost:
k of them, each as long as one over that many rows took (measured as ("draft", rows); unmeasured, free, so it gets
tried), plus what feeding new prompts to the draft took over recent decode steps (a prompt is fed once, and the
steps after it, drafting or not, bring that average down; a batch that keeps taking new requests keeps paying
it); prompt lookup costs nothing. Large batches are compute-bound: past `MAX_TOKENS` tokens a step never drafts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

NGRAM_MIN, NGRAM_MAX = 2, 4  # suffix lengths looked up, longest first (vLLM's prompt_lookup_min/max)
MAX_DRAFT = 7  # draft tokens per row and step at most
MAX_TOKENS = 64  # tokens in one checking forward at most
DRAFT_LENGTHS = (1, 2, 3, 4, 5, 7)  # the step shapes the policy chooses among (and 0: a plain decode step)
ACCEPT_DECAY = 0.7  # weight of a row's old acceptance estimate at each of its checks
EXPLORE = 16  # steps with drafts at hand but none checked, after which one is checked anyway (costs change)


class Ngrams:
    """Where each n-gram of a token sequence (n = NGRAM_MIN..NGRAM_MAX) last occurred, as tokens are appended:
    `draft` finds what followed the latest earlier occurrence of the sequence's longest known suffix."""

    def __init__(self, ids: list[int]) -> None:
        self.ids: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token that followed it
        for t in ids:
            self.append(t)

    def append(self, token: int) -> None:
        ids, L = self.ids, len(self.ids)
        for n in range(NGRAM_MIN, NGRAM_MAX + 1):  # the n-grams ending at the old last token now have a successor
            if L >= n:
                self.after[tuple(ids[L - n:])] = L
        ids.append(token)

    def draft(self, k: int) -> list[int]:
        ids = self.ids
        for n in range(min(NGRAM_MAX, len(ids)), NGRAM_MIN - 1, -1):
            at = self.after.get(tuple(ids[-n:]))
            if at is not None:
                return ids[at:at + k]
        return []


@dataclass
class Draft:
    """One request's speculation state."""

    ngrams: Ngrams | None  # prompt lookup's index of the request's text; None when a draft model proposes
    accept: float  # recent share of this request's drafted tokens accepted (at first: the engine's, Policy.accept)


@dataclass
class SpecStats:
    drafts: int = 0  # rows that ran with a draft
    draft_tokens: int = 0  # tokens proposed
    accepted_tokens: int = 0  # of them accepted
    steps: int = 0  # speculative steps

    def count(self, proposed: int, accepted: int) -> None:
        """One row's check: `proposed` drafted tokens, `accepted` of them kept."""
        self.drafts += 1
        self.draft_tokens += proposed
        self.accepted_tokens += accepted


def expected_tokens(accept: float, k: int) -> float:
    """Tokens a row outputs in one step with k drafts, each accepted with probability `accept` in turn:
    1 + a + a^2 + ... + a^k."""
    return sum(accept**i for i in range(k + 1))


@dataclass
class Policy:
    """Chooses each step's draft length from measured step costs (seconds) and the rows' acceptance."""

    # ("decode", rows) / ("check", tokens) / ("draft", rows): one forward of a draft model over that many rows
    costs: dict[tuple[str, int], float] = field(default_factory=dict)
    accept: float = 0.8  # acceptance over all recent checks: a new request's first estimate
    idle: int = 0  # steps in a row that had drafts but checked none

    def choose(self, drafts: list[list[int]], accepts: list[float]) -> int:
        """The draft length cap for this step (0: a plain decode step), given each row's available draft."""
        B = len(drafts)
        plain = self.costs.get(("decode", B))
        if plain is None or not any(drafts):
            return 0  # measure the plain step first; nothing to check
        self.idle += 1
        # now and then check anyway when it nearly paid: costs and texts change
        explore = self.idle > EXPLORE
        best, best_rate = 0, B / plain * (0.8 if explore else 1.02)  # a clear gain, not noise
        # a draft model's forward over the drafting rows, and its feeding of new prompts (rows that join a batch
        # keep drafting dear); never recorded for prompt lookup, which costs nothing
        draft = self.costs.get(("draft", sum(1 for d in drafts if d)), 0.0)
        fixed = self.costs.get(("catch_up", 0), 0.0)
        for k in DRAFT_LENGTHS:
            lengths = [min(k, len(d)) for d in drafts]
            tokens = B + sum(lengths)
            if tokens > MAX_TOKENS:
                break
            rate = sum(expected_tokens(a, m) for a, m in zip(accepts, lengths, strict=True)) / \
                (self.cost(tokens, B, plain) + max(lengths) * draft + fixed)
            if rate > best_rate:
                best, best_rate = k, rate
            if max(lengths) < k:
                break  # longer caps change nothing
        if best:
            self.idle = 0
        return best

    def cost(self, tokens: int, rows: int, plain: float) -> float:
        """Seconds of a checking forward over `tokens` tokens of `rows` rows: as measured; else as a decode step
        of that many rows took; else, for a few rows, as cheap as a plain step (optimistic: so it gets tried and
        measured), and for many, as dear as decoding the tokens one row at a time (big batches are compute-bound:
        a wrong guess there costs a whole slow step)."""
        seconds = self.costs.get(("check", tokens)) or self.costs.get(("decode", tokens))
        if seconds is not None:
            return seconds
        return plain if rows <= 4 else plain * tokens / rows

    def record(self, kind: str, size: int, seconds: float) -> None:
        key = (kind, size)
        old = self.costs.get(key)
        self.costs[key] = seconds if old is None else 0.8 * old + 0.2 * seconds


def update_accept(policy: Policy, d: Draft, proposed: int, accepted: int) -> None:
    if proposed:
        d.accept = ACCEPT_DECAY * d.accept + (1 - ACCEPT_DECAY) * accepted / proposed
        policy.accept = 0.95 * policy.accept + 0.05 * accepted / proposed


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


__all__ = ["MAX_DRAFT", "Draft", "Ngrams", "Policy", "SpecStats", "Timer", "expected_tokens", "update_accept"]

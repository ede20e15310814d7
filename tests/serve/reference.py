"""What the engine is checked against: transformers' own greedy `generate`, one prompt alone, with the same
UTF-8 mask the engine applies; and the engine running several prompts at once."""

from __future__ import annotations

import threading

import torch

from kollm.serve.engine import Engine, Token
from kollm.serve.sampling import SamplingParams


def hf_greedy(engine: Engine, ids: list[int], n: int, model: torch.nn.Module | None = None,
              until_eos: bool = False) -> list[int]:
    """Exactly `n` greedy tokens from transformers' generate (of `model`, default the engine's own: a peft model
    for an adapter), masked as the engine masks invalid UTF-8; with `until_eos`, at most `n`, up to EOS (not
    included), as the engine outputs them without ignore_eos."""

    def utf8(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        owed = 0
        for t in input_ids[0, len(ids):].tolist():
            owed = engine.utf8.step(owed, t)
        return engine.utf8.mask(scores, owed)

    model = model if model is not None else engine.model
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=n, min_new_tokens=0 if until_eos else n, do_sample=False,
                         logits_processor=[utf8])[0, len(ids):].tolist()
    if until_eos:
        out = out[:next((i for i, t in enumerate(out) if t in engine.sampler.eos_ids), len(out))]
    return out


def engine_greedy_together(engine: Engine, prompts: list[list[int]], ns: list[int],
                           loras: list[str | None] | None = None, ignore_eos: bool = True) -> list[list[int]]:
    """Greedy tokens of every prompt (each under its LoRA adapter in `loras`), all submitted at once (so they share
    the engine's batch)."""
    params = [SamplingParams(max_tokens=n, temperature=0, ignore_eos=ignore_eos) for n in ns]
    return [[t.id for t in toks] for toks in engine_together(engine, prompts, params, loras)]


def engine_together(engine: Engine, prompts: list[list[int]], params: list[SamplingParams],
                    loras: list[str | None] | None = None) -> list[list[Token]]:
    """The Tokens of every prompt with its own params (and LoRA adapter), all submitted at once."""
    got: dict = {}

    def run(i: int) -> None:
        got[i] = [s for s in engine.generate(prompts[i], params[i], loras[i] if loras else None)
                  if isinstance(s, Token)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [got[i] for i in range(len(prompts))]


def outside_strings(json_text: str) -> str:
    """The characters of a JSON text (or a prefix of one) that are not inside string literals: where a grammar
    could let a model pad with whitespace."""
    out, inside, escaped = [], False, False
    for c in json_text:
        if escaped:
            escaped = False
        elif inside:
            escaped, inside = c == "\\", c != '"'
        elif c == '"':
            inside = True
        else:
            out.append(c)
    return "".join(out)


@torch.no_grad()
def second_token_dists(engine: Engine, ids: list[int], T: float, K: int) -> dict[int, tuple[list[int], torch.Tensor]]:
    """For each of the K likeliest first tokens after `ids`, the model's top-K second tokens and their probabilities
    at temperature T, renormalised (what the sampler draws from, under the UTF-8 mask): the reference of the
    speculative sampling tests."""

    def dist(prefix: list[int], owed: int) -> tuple[list[int], torch.Tensor]:
        logits = engine.utf8.mask(engine.model(torch.tensor([prefix])).logits[0, -1].float(), owed)  # valid UTF-8
        top = torch.topk(torch.softmax(logits / T, -1), K)
        return top.indices.tolist(), top.values / top.values.sum()

    firsts, _ = dist(ids, 0)
    return {t: dist(ids + [t], engine.utf8.step(0, t)) for t in firsts}


def assert_second_tokens_follow(outs: list[list[Token]], second: dict, K: int) -> None:
    """The sampled second tokens, by rank under their own distribution (given the first), pass a chi-square test
    against `second_token_dists`, and the forced draft (rank 0) was refused too."""
    from scipy.stats import chisquare

    counts, expected = torch.zeros(K), torch.zeros(K)
    for toks in outs:
        order, probs = second[toks[0].id]
        counts[order.index(toks[1].id)] += 1
        expected += probs
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3, (counts, expected)
    assert counts[0] < len(outs) * 0.95 and counts[1:].sum() > 0  # the draft was refused too

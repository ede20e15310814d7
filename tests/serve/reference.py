"""What the engine is checked against: transformers' own greedy `generate`, one prompt alone, with the same
UTF-8 mask the engine applies; and the engine running several prompts at once."""

from __future__ import annotations

import threading

import torch

from kollm.serve.engine import Engine, Token
from kollm.serve.sampling import SamplingParams


def hf_greedy(engine: Engine, ids: list[int], n: int) -> list[int]:
    """Exactly `n` greedy tokens from transformers' generate, masked as the engine masks invalid UTF-8."""

    def utf8(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        owed = 0
        for t in input_ids[0, len(ids):].tolist():
            owed = engine.utf8.step(owed, t)
        return engine.utf8.mask(scores, owed)

    out = engine.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=n, min_new_tokens=n, do_sample=False, logits_processor=[utf8])
    return out[0, len(ids):].tolist()


def engine_greedy_together(engine: Engine, prompts: list[list[int]], ns: list[int]) -> list[list[int]]:
    """Greedy tokens of every prompt, all submitted at once (so they share the engine's batch)."""
    got: dict = {}

    def run(i: int) -> None:
        p = SamplingParams(max_tokens=ns[i], temperature=0, ignore_eos=True)
        got[i] = [s.id for s in engine.generate(prompts[i], p) if isinstance(s, Token)]

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

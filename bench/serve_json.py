"""Which constrained-decoding library enforces `response_format` (JSON schema) in `kollm serve`: llguidance,
xgrammar and outlines-core measured side by side on the same tokenizers, schema and token sequence, on CPU.

    python bench/serve_json.py --tokenizer ~/.cache/kollm/test-models/gemma-3-270m/hf [--tokenizer DIR ...]

For each library and tokenizer: one-time tokenizer preparation, compiling the schema, and the mean time to
compute the allowed-token mask and advance by one token, over the tokens of a valid Korean JSON answer (what a
server pays per generated token). Libraries not installed are skipped (`pip install llguidance xgrammar
outlines-core`). Prints one table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}},
    "discount": {"type": "integer"}}, "required": ["title", "keywords", "discount"], "additionalProperties": False}
ANSWER = json.dumps({"title": "겨울 패딩 최대 50% 할인, 오늘 단 하루!", "keywords": ["패딩", "겨울", "특가"],
                     "discount": 50}, ensure_ascii=False)


def llguidance_run(tok: object, vocab: int, ids: list[int]) -> tuple[float, float, list[float]]:
    import llguidance
    import llguidance.hf
    import llguidance.torch as lt

    t0 = time.perf_counter()
    lltok = llguidance.hf.from_tokenizer(tok, n_vocab=vocab)
    t1 = time.perf_counter()
    m = llguidance.LLMatcher(lltok, llguidance.LLMatcher.grammar_from_json_schema(SCHEMA))
    t2 = time.perf_counter()
    mask, steps = lt.allocate_token_bitmask(1, vocab), []
    for t in ids:
        s = time.perf_counter()
        lt.fill_next_token_bitmask(m, mask)
        assert m.consume_token(t), m.get_error()
        steps.append(time.perf_counter() - s)
    return t1 - t0, t2 - t1, steps


def xgrammar_run(tok: object, vocab: int, ids: list[int]) -> tuple[float, float, list[float]]:
    import xgrammar as xgr

    t0 = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    compiler = xgr.GrammarCompiler(info)
    t1 = time.perf_counter()
    m = xgr.GrammarMatcher(compiler.compile_json_schema(json.dumps(SCHEMA)))
    t2 = time.perf_counter()
    mask, steps = xgr.allocate_token_bitmask(1, vocab), []
    for t in ids:
        s = time.perf_counter()
        m.fill_next_token_bitmask(mask)
        assert m.accept_token(t)
        steps.append(time.perf_counter() - s)
    return t1 - t0, t2 - t1, steps


def outlines_run(tok: object, vocab: int, ids: list[int]) -> tuple[float, float, list[float]]:
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    from kollm.serve.utf8 import token_bytes

    t0 = time.perf_counter()
    eos = tok.eos_token_id
    table: dict[bytes, list[int]] = {}
    for i, b in enumerate(token_bytes(tok)[:vocab]):
        if b and i != eos and i not in tok.all_special_ids:
            table.setdefault(b, []).append(i)
    voc = Vocabulary(eos, table)
    t1 = time.perf_counter()
    guide = Guide(Index(build_regex_from_schema(json.dumps(SCHEMA)), voc))
    t2 = time.perf_counter()
    steps = []
    for t in ids:
        s = time.perf_counter()
        allowed = torch.tensor(guide.get_tokens())
        assert t in set(allowed.tolist())
        guide.advance(t)
        steps.append(time.perf_counter() - s)
    return t1 - t0, t2 - t1, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", action="append", required=True, help="a HF tokenizer folder (repeatable)")
    args = ap.parse_args()
    rows = []
    for folder in args.tokenizer:
        tok = AutoTokenizer.from_pretrained(folder)
        vocab = len(tok)
        ids = tok.encode(ANSWER, add_special_tokens=False)
        for name, fn in (("llguidance", llguidance_run), ("xgrammar", xgrammar_run), ("outlines-core", outlines_run)):
            try:
                prep, comp, steps = fn(tok, vocab, ids)
            except ImportError:
                rows.append((Path(folder).parent.name + "/" + Path(folder).name, vocab, name, "not installed"))
                continue
            except Exception as e:  # noqa: BLE001 - a library that cannot do it is a row, not a crash
                rows.append((Path(folder).name, vocab, name, f"failed: {type(e).__name__}: {str(e)[:60]}"))
                continue
            rows.append((Path(folder).parent.name + "/" + Path(folder).name, vocab, name,
                         f"{prep * 1e3:9.0f} {comp * 1e3:10.1f} {statistics.mean(steps) * 1e3:10.3f} "
                         f"{max(steps) * 1e3:9.2f} {len(steps):6d}"))
    print(f"{'tokenizer':<24} {'vocab':>7} {'library':<14} {'prep ms':>9} {'schema ms':>10} {'mask+adv ms':>10} "
          f"{'max ms':>9} {'tokens':>6}")
    for folder, vocab, name, rest in rows:
        print(f"{folder:<24} {vocab:>7} {name:<14} {rest}")


if __name__ == "__main__":
    main()

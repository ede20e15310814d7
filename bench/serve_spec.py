"""Speculative decoding (serve/spec.py) on the Studio's three built-in test sets, side by side in one run.

    python bench/serve_spec.py [--model DIR] [--draft-model DIR] [--gguf F16.gguf] [--items 20] [--sets A,B]
                               [--clients 16,64] [--rounds 2]

One in-process engine (kollm's continuous batching, default config, float32) serves every row: a request with
`speculative=False` runs exactly as the engine did before speculation, so "off" and "ngram" alternate request by
request on the same loaded model. Each built-in template's items are rendered with the Studio's own prompt code
(few-shot examples, the template's max_tokens and stop), greedy, one stream at a time: decode tok/s (tokens after
the first / time after the first), the acceptance rate of drafted tokens, the share of steps that drafted, and
whether the two outputs are identical (they must be). --gguf: llama.cpp's server (xllamacpp, 2 threads, one slot)
on the same prompts, streamed over HTTP, for reference (its own tokens). Then 16 and 64 clients at once (items of
all three sets, 64 tokens each, EOS ignored): aggregate tok/s with speculation allowed vs off, alternating, `--rounds`
times. --draft-model: a second engine on the same model drafts with that model (`--speculative draft`,
serve/draft.py) and runs every item and load too ("draft" columns: tok/s, acceptance, identical output). Prints one
table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def stream(engine: object, ids: list[int], p: object) -> tuple[list[int], list[float]]:
    from kollm.serve.engine import Token

    t0, toks, times = time.perf_counter(), [], []
    for s in engine.generate(ids, p):
        if isinstance(s, Token):
            toks.append(s.id)
            times.append(time.perf_counter() - t0)
    return toks, times


def rate(times: list[float]) -> tuple[int, float]:
    """(tokens after the first, seconds after the first)."""
    return max(0, len(times) - 1), (times[-1] - times[0]) if len(times) > 1 else 0.0


def llamacpp_stream(base: str, prompt: str, n: int, stop: list[str]) -> list[float]:
    import httpx

    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "stop": stop, "stream": True}
    t0, times = time.perf_counter(), []
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                ch = json.loads(line[6:]).get("choices") or []
                if ch and ch[0].get("text"):
                    times.append(time.perf_counter() - t0)
    return times


def together(engine: object, prompts: list[list[int]], n: int, speculative: bool) -> float:
    from kollm.serve.sampling import SamplingParams

    counts = [0] * len(prompts)

    def run(i: int) -> None:
        p = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, speculative=speculative)
        counts[i] = len(stream(engine, prompts[i], p)[0])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(Path.home() / ".cache/kollm/test-models/gemma-3-270m/hf"))
    ap.add_argument("--draft-model", help="a small model sharing the tokenizer: adds `--speculative draft` columns")
    ap.add_argument("--gguf", help="an f16 GGUF of the same model for llama.cpp (kollm export gguf --type f16)")
    ap.add_argument("--items", type=int, default=20, help="items per test set (of 40)")
    ap.add_argument("--sets", default="", help="comma-separated built-in test sets (default: all)")
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    import torch

    from kollm.serve.config import EngineConfig
    from kollm.serve.engine import Engine
    from kollm.serve.sampling import SamplingParams
    from kollm.studio.apps import render_completion
    from kollm.studio.builtin import TEMPLATES, builtin_items, template

    torch.set_num_threads(os.cpu_count() or 1)
    engine = Engine.load(a.model)
    print(engine.summary(), flush=True)
    drafting = None  # the same model drafting with --draft-model (its own engine: the method is per engine)
    if a.draft_model:
        drafting = Engine.load(a.model, config=EngineConfig(speculative="draft", draft_model=a.draft_model))
        print(drafting.summary(), flush=True)
    engines = {"off": engine, "ngram": engine, **({"draft": drafting} if drafting else {})}
    llama = None
    if a.gguf:
        from serve import start_llamacpp

        llama = start_llamacpp(a.gguf, 1)
        llama.wait()
    rows, all_prompts = [], []
    for name in [s for s in a.sets.split(",") if s] or TEMPLATES:
        spec = template(name)["spec"]
        items = builtin_items(name)[:a.items]
        acc = {"off": [0, 0.0], "ngram": [0, 0.0], "draft": [0, 0.0], "llama": [0, 0.0]}
        same, same_draft = 0, 0
        st0 = (engine.spec_stats.draft_tokens, engine.spec_stats.accepted_tokens, engine.spec_stats.steps,
               engine.steps)
        dt0 = (drafting.spec_stats.draft_tokens, drafting.spec_stats.accepted_tokens) if drafting else (0, 0)
        for it in items:
            prompt = render_completion(spec, it["inputs"])
            ids = engine.encode(prompt)
            all_prompts.append(ids)
            outs = {}
            for mode in engines:  # alternating, item by item: the machine's drift hits all alike
                p = SamplingParams(max_tokens=spec.params.max_tokens or 64, temperature=0,
                                   stop=list(spec.params.stop or []), speculative=mode != "off")
                toks, times = stream(engines[mode], ids, p)
                k, s = rate(times)
                acc[mode][0] += k
                acc[mode][1] += s
                outs[mode] = toks
            same += outs["off"] == outs["ngram"]
            same_draft += outs["off"] == outs.get("draft")
            if llama is not None:
                k, s = rate(llamacpp_stream(llama.base, prompt, spec.params.max_tokens or 64,
                                            list(spec.params.stop or [])))
                acc["llama"][0] += k
                acc["llama"][1] += s
        st = engine.spec_stats
        drafted, accepted = st.draft_tokens - st0[0], st.accepted_tokens - st0[1]
        tps = {m: (k / s if s else 0.0) for m, (k, s) in acc.items()}
        draft = None
        if drafting:
            ds = drafting.spec_stats
            draft = (tps["draft"], tps["draft"] / max(tps["off"], 1e-9),
                     (ds.accepted_tokens - dt0[1]) / max(ds.draft_tokens - dt0[0], 1), f"{same_draft}/{len(items)}")
        rows.append((name, len(items), tps["off"], tps["ngram"], tps["ngram"] / max(tps["off"], 1e-9),
                     accepted / max(drafted, 1), (st.steps - st0[2]) / max(engine.steps - st0[3], 1),
                     f"{same}/{len(items)}", tps["llama"], draft))
        print(f"  {name}: {rows[-1]}", flush=True)
    if llama is not None:
        llama.stop()

    loads = []
    for cl in [int(c) for c in a.clients.split(",") if c]:
        prompts = [all_prompts[i % len(all_prompts)] for i in range(cl)]
        runs = {m: [] for m in engines}
        for _ in range(a.rounds):
            for mode in engines:
                runs[mode].append(together(engines[mode], prompts, 64, mode != "off"))
        med = {m: statistics.median(r) for m, r in runs.items()}
        loads.append((cl, med))
        print(f"  {cl} clients: " + " ".join(f"{m} {v:.1f}" for m, v in med.items()), flush=True)

    dtype = str(next(engine.model.parameters()).dtype).removeprefix("torch.")
    print(f"\n{type(engine.model).__name__} {dtype} ({Path(a.model).name}"
          + (f", draft model {Path(a.draft_model).name}" if a.draft_model else "")
          + f"), {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, greedy, one stream, decode tok/s")
    head = "| test set | items | off | ngram | ratio | accepted | steps drafting | same output | llama.cpp f16 |"
    print(head + (" draft | ratio | accepted | same output |" if drafting else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" * 4 if drafting else ""))
    for name, n, off, on, ratio, accept, steps, same, ll, draft in rows:
        print(f"| {name} | {n} | {off:.1f} | {on:.1f} | {ratio:.2f}x | {accept:.2f} | {steps:.2f} | {same} | "
              + (f"{ll:.1f} |" if ll else "- |")
              + (f" {draft[0]:.1f} | {draft[1]:.2f}x | {draft[2]:.2f} | {draft[3]} |" if draft else ""))
    print("\n| clients | off tok/s | ngram tok/s | ratio |" + (" draft tok/s | ratio |" if drafting else ""))
    print("|---|---|---|---|" + ("---|---|" if drafting else ""))
    for cl, med in loads:
        print(f"| {cl} | {med['off']:.1f} | {med['ngram']:.1f} | {med['ngram'] / med['off']:.2f}x |"
              + (f" {med['draft']:.1f} | {med['draft'] / med['off']:.2f}x |" if drafting else ""))


if __name__ == "__main__":
    main()

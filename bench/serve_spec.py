"""Speculative decoding (serve/spec.py) on the Studio's three built-in test sets, side by side in one run.

    python bench/serve_spec.py [--model DIR] [--gguf F16.gguf] [--items 20] [--clients 16,64] [--rounds 2]

One in-process engine (kollm's continuous batching, default config, float32) serves every row: a request with
`speculative=False` runs exactly as the engine did before speculation, so "off" and "ngram" alternate request by
request on the same loaded model. Each built-in template's items are rendered with the Studio's own prompt code
(few-shot examples, the template's max_tokens and stop), greedy, one stream at a time: decode tok/s (tokens after
the first / time after the first), the acceptance rate of drafted tokens, the share of steps that drafted, and
whether the two outputs are identical (they must be). --gguf: llama.cpp's server (xllamacpp, 2 threads, one slot)
on the same prompts, streamed over HTTP, for reference (its own tokens). Then 16 and 64 clients at once (items of
all three sets, 64 tokens each, EOS ignored): aggregate tok/s with speculation allowed vs off, alternating, `--rounds`
times. Prints one table.
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
    ap.add_argument("--gguf", help="an f16 GGUF of the same model for llama.cpp (kollm export gguf --type f16)")
    ap.add_argument("--items", type=int, default=20, help="items per test set (of 40)")
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    import torch

    from kollm.serve.engine import Engine
    from kollm.serve.sampling import SamplingParams
    from kollm.studio.apps import render_completion
    from kollm.studio.builtin import TEMPLATES, builtin_items, template

    torch.set_num_threads(os.cpu_count() or 1)
    engine = Engine.load(a.model)
    print(engine.summary(), flush=True)
    llama = None
    if a.gguf:
        from serve import start_llamacpp

        llama = start_llamacpp(a.gguf, 1)
        llama.wait()
    rows, all_prompts = [], []
    for name in TEMPLATES:
        spec = template(name)["spec"]
        items = builtin_items(name)[:a.items]
        acc = {"off": [0, 0.0], "ngram": [0, 0.0], "llama": [0, 0.0]}
        same, st0 = 0, (engine.spec_stats.draft_tokens, engine.spec_stats.accepted_tokens, engine.spec_stats.steps,
                        engine.steps)
        for it in items:
            prompt = render_completion(spec, it["inputs"])
            ids = engine.encode(prompt)
            all_prompts.append(ids)
            outs = {}
            for mode in ("off", "ngram"):  # alternating, item by item: the machine's drift hits both alike
                p = SamplingParams(max_tokens=spec.params.max_tokens or 64, temperature=0,
                                   stop=list(spec.params.stop or []), speculative=mode == "ngram")
                toks, times = stream(engine, ids, p)
                k, s = rate(times)
                acc[mode][0] += k
                acc[mode][1] += s
                outs[mode] = toks
            same += outs["off"] == outs["ngram"]
            if llama is not None:
                k, s = rate(llamacpp_stream(llama.base, prompt, spec.params.max_tokens or 64,
                                            list(spec.params.stop or [])))
                acc["llama"][0] += k
                acc["llama"][1] += s
        st = engine.spec_stats
        drafted, accepted = st.draft_tokens - st0[0], st.accepted_tokens - st0[1]
        tps = {m: (k / s if s else 0.0) for m, (k, s) in acc.items()}
        rows.append((name, len(items), tps["off"], tps["ngram"], tps["ngram"] / max(tps["off"], 1e-9),
                     accepted / max(drafted, 1), (st.steps - st0[2]) / max(engine.steps - st0[3], 1),
                     f"{same}/{len(items)}", tps["llama"]))
        print(f"  {name}: {rows[-1]}", flush=True)
    if llama is not None:
        llama.stop()

    loads = []
    for cl in [int(c) for c in a.clients.split(",") if c]:
        prompts = [all_prompts[i % len(all_prompts)] for i in range(cl)]
        runs = {True: [], False: []}
        for _ in range(a.rounds):
            for spec_on in (False, True):
                runs[spec_on].append(together(engine, prompts, 64, spec_on))
        off, on = statistics.median(runs[False]), statistics.median(runs[True])
        loads.append((cl, off, on, on / off))
        print(f"  {cl} clients: off {off:.1f} ngram {on:.1f}", flush=True)

    print(f"\nGemma-3-270M float32 ({Path(a.model).name}), {os.cpu_count()} cores, greedy, one stream, decode tok/s")
    print("| test set | items | off | ngram | ratio | accepted | steps drafting | same output | llama.cpp f16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, off, on, ratio, accept, drafting, same, ll in rows:
        print(f"| {name} | {n} | {off:.1f} | {on:.1f} | {ratio:.2f}x | {accept:.2f} | {drafting:.2f} | {same} | "
              + (f"{ll:.1f} |" if ll else "- |"))
    print("\n| clients | off tok/s | ngram tok/s | ratio |")
    print("|---|---|---|---|")
    for cl, off, on, ratio in loads:
        print(f"| {cl} | {off:.1f} | {on:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()

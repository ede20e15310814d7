"""The argmax head (serve/head.py) against the float32 head, side by side in one run.

    python bench/serve_head.py [--model DIR] [--items 20] [--repeat 7]

1. The head alone, on the model's own final hidden states (the Studio's query-correction prompts run through
   transformers): for 1..64 rows, ms of each row's argmax from the float32 head as the engine runs it without
   the copy (serve/packed.py, slice by slice) and from the float16 head with its float32 recheck, whether every
   row's argmax agrees with the float32 logits', and how many tokens a row rechecks.
2. One stream: two engines on the same model folder, the argmax head on and off, alternating item by item over
   the Studio's query-correction and review-summary items (their own prompts, greedy), speculation off and
   n-gram: decode tok/s after the first token, and whether the outputs are identical (they must be).
3. Many clients: 16 and 64 at once (those items' prompts, 64 tokens each, EOS ignored), aggregate tok/s of each
   engine, alternating, median of `--rounds`.
Gemma-3-270M float32 by default; prints one table per part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(Path.home() / ".cache/kollm/test-models/gemma-3-270m/hf"))
    ap.add_argument("--items", type=int, default=20, help="items per test set (of 40)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per head measurement (median)")
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    import torch
    from serve_linear import median_ms
    from serve_spec import rate, stream, together

    from kollm.serve.config import EngineConfig
    from kollm.serve.engine import Engine
    from kollm.serve.sampling import SamplingParams
    from kollm.studio.apps import render_completion
    from kollm.studio.builtin import builtin_items, template

    torch.set_num_threads(os.cpu_count() or 1)
    fast = Engine.load(a.model)
    print(fast.summary(), flush=True)
    head = fast.runner.forward.head
    assert head.half is not None, "this model's head gets no float16 copy (too small, not float32, or no fbgemm)"
    sets = {name: builtin_items(name)[:a.items] for name in ("search-query-correction", "review-summary")}
    specs = {name: template(name)["spec"] for name in sets}

    # 1. the head alone, on real hidden states
    text = "\n".join(render_completion(specs["search-query-correction"], it["inputs"])
                     for it in sets["search-query-correction"][:4])
    ids = torch.tensor([fast.encode(text)[:256]])
    with torch.no_grad():
        hidden = fast.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].float().contiguous()
    rows_out = []
    for n in (1, 2, 4, 8, 16, 64):
        h = hidden[:n] if n <= len(hidden) else hidden.repeat(n // len(hidden) + 1, 1)[:n]
        exact_ms = median_ms(lambda h=h: head.exact.argmax(h), a.repeat)  # the engine without the copy
        fast_ms = median_ms(lambda h=h: head.argmax(h), a.repeat)
        agree = bool((head.forward(h).argmax(-1) == head.argmax(h)).all())
        near = head.near(torch.ops.quantized.linear_dynamic_fp16(h, head.half), h)
        rows_out.append((n, exact_ms, fast_ms, agree, near.sum(-1).float().mean().item()))
        print(f"  head, {n} rows: {rows_out[-1]}", flush=True)

    # 2. one stream, head on and off, alternating item by item
    plain = Engine.load(a.model, config=EngineConfig(argmax_head=False))
    engines = {"float32 head": plain, "argmax head": fast}
    table, prompts = [], []
    for name, items in sets.items():
        spec = specs[name]
        acc = {(e, s): [0, 0.0] for e in engines for s in (False, True)}
        same = 0
        for it in items:
            prompt_ids = fast.encode(render_completion(spec, it["inputs"]))
            prompts.append(prompt_ids)
            outs = []
            for spec_on in (False, True):
                for e, eng in engines.items():
                    p = SamplingParams(max_tokens=spec.params.max_tokens or 64, temperature=0,
                                       stop=list(spec.params.stop or []), speculative=spec_on)
                    toks, times = stream(eng, prompt_ids, p)
                    k, s = rate(times)
                    acc[e, spec_on][0] += k
                    acc[e, spec_on][1] += s
                    outs.append(toks)
            same += all(o == outs[0] for o in outs)
        tps = {key: (k / s if s else 0.0) for key, (k, s) in acc.items()}
        table.append((name, len(items), tps, f"{same}/{len(items)}"))
        print(f"  {name}: {table[-1]}", flush=True)

    # 3. many clients
    loads = []
    for cl in [int(c) for c in a.clients.split(",") if c]:
        batch = [prompts[i % len(prompts)] for i in range(cl)]
        runs: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(a.rounds):
            for e, eng in engines.items():
                runs[e].append(together(eng, batch, 64, True))
        loads.append((cl, {e: statistics.median(r) for e, r in runs.items()}))
        print(f"  {cl} clients: {loads[-1]}", flush=True)

    print(f"\n{type(fast.model).__name__} float32 ({Path(a.model).name}), {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; the head on the model's own hidden states, ms (median of {a.repeat})")
    print("| rows | float32 head | argmax head | ratio | argmax agrees | tokens rechecked a row |")
    print("|---|---|---|---|---|---|")
    for n, e, f, agree, near in rows_out:
        print(f"| {n} | {e:.1f} | {f:.1f} | {e / f:.2f}x | {agree} | {near:.2f} |")
    print("\nOne stream, greedy, decode tok/s after the first token (same output: all four runs of an item equal)")
    print("| test set | items | float32 head | argmax head | ratio | float32 head + ngram | argmax head + ngram | "
          "ratio | same output |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, t, same in table:
        f0, a0, f1, a1 = t["float32 head", False], t["argmax head", False], t["float32 head", True], \
            t["argmax head", True]
        print(f"| {name} | {n} | {f0:.1f} | {a0:.1f} | {a0 / f0:.2f}x | {f1:.1f} | {a1:.1f} | {a1 / f1:.2f}x | "
              f"{same} |")
    print("\nMany clients, 64 tokens each, aggregate tok/s (speculation allowed: the engine decides)")
    print("| clients | float32 head | argmax head | ratio |")
    print("|---|---|---|---|")
    for cl, med in loads:
        f, g = med["float32 head"], med["argmax head"]
        print(f"| {cl} | {f:.1f} | {g:.1f} | {g / f:.2f}x |")
    fast.close()
    plain.close()


if __name__ == "__main__":
    main()

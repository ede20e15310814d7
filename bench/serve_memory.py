"""Where `kollm serve`'s memory goes: the server's RSS after each phase of a load a public API sees, next to the
two caches that may grow (KV slots up to kv_cache_mb, stored prompt prefixes up to prefix_cache_mb), read from
/metrics. What is left over is memory freed but kept by the allocator (the engine hands it back when idle).

    python bench/serve_memory.py --model ~/.cache/kollm/test-models/gemma-3-270m/hf [--clients 32] [--rounds 3] \
        [--kv-cache-mb 1024]

Phases: fresh (model loaded); load (--rounds x --clients requests of distinct prompts, 32 sampled tokens);
cancel (as many streams closed after a few tokens, and non-streamed requests dropped by a 2 s client timeout);
big (a 1 MB chunked body: refused while it arrives; a 300,000-character prompt: tokenized, then refused);
idle (20 s later).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve import rss_mb, start_kollm  # noqa: E402 - bench/serve.py's helpers


def gauges(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics").text
    get = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1)) / 2**20  # noqa: E731
    return get("kollm:kv_cache_bytes"), get("kollm:prefix_cache_bytes")


async def load(url: str, clients: int, rounds: int) -> None:
    async with httpx.AsyncClient(timeout=600) as c:
        async def one(i: int) -> None:
            prompt = f"{i}번째 고객 리뷰: 배송이 빠르고 포장도 꼼꼼해서 만족스러웠어요. " * random.randint(1, 12)
            await c.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 32, "temperature": 0.8,
                                                        "seed": i})
        for r in range(rounds):
            await asyncio.gather(*(one(r * 1000 + i) for i in range(clients)))


async def cancel(url: str, clients: int) -> None:
    async with httpx.AsyncClient(timeout=600) as c:
        async def one(i: int) -> None:
            body = {"prompt": f"옛날 옛적에 {i}", "max_tokens": 400, "stream": True, "ignore_eos": True}
            async with c.stream("POST", f"{url}/v1/completions", json=body) as r:
                n = 0
                async for _ in r.aiter_lines():
                    n += 1
                    if n > 5:
                        break
            try:
                await c.post(f"{url}/v1/completions", json={**body, "stream": False, "prompt": body["prompt"] * 20},
                             timeout=2)
            except httpx.TimeoutException:
                pass
        await asyncio.gather(*(one(i) for i in range(clients)))


def big(url: str) -> None:
    def chunks():
        yield b'{"prompt": "'
        for _ in range(60):
            yield ("가나다라 " * 2000).encode()
        yield b'"}'
    httpx.post(f"{url}/v1/completions", content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    httpx.post(f"{url}/v1/completions", json={"prompt": "가나다라마바사 " * 37500, "max_tokens": 2}, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kv-cache-mb", type=int, default=1024, help="the server's KV budget (kollm serve's flag)")
    args = ap.parse_args()
    server = start_kollm(args.model, "--kv-cache-mb", str(args.kv_cache_mb))
    url, proc = server.base, server.proc
    rows = []

    def row(phase: str, seconds: float) -> None:
        kv, prefix = gauges(url)
        rows.append((phase, rss_mb(proc.pid), kv, prefix, seconds))
        print(f"  {phase}: RSS {rows[-1][1]:,.0f} MB", flush=True)

    try:
        server.wait()
        row("fresh", 0)
        for phase, run in (("load", lambda: asyncio.run(load(url, args.clients, args.rounds))),
                           ("cancel", lambda: asyncio.run(cancel(url, args.clients))),
                           ("big", lambda: big(url)), ("idle", lambda: time.sleep(20))):
            t = time.time()
            run()
            time.sleep(2)
            row(phase, time.time() - t)
    finally:
        server.stop()
    base = rows[0][1]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_kollm_serve.log"
    loaded = [line for line in log.read_text(encoding="utf-8").splitlines() if " loaded (" in line]
    print(f"\n`kollm serve --kv-cache-mb {args.kv_cache_mb}` memory, {args.model} ({args.clients} clients x "
          f"{args.rounds} rounds)\n{loaded[0] if loaded else ''}\n")
    print("| phase | s | RSS MB | growth MB | KV MB | prefix cache MB | other growth MB |")
    print("|---|---|---|---|---|---|---|")
    for phase, rss, kv, prefix, secs in rows:
        print(f"| {phase} | {secs:.0f} | {rss:,.0f} | {rss - base:+,.0f} | {kv:,.0f} | {prefix:,.0f} | "
              f"{rss - base - kv - prefix:+,.0f} |")


if __name__ == "__main__":
    main()

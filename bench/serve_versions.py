"""`kollm serve` from this working tree against itself at an earlier git revision, side by side in one run.

    python bench/serve_versions.py --rev 3e4dd96 [--model DIR] [--clients 1,16,64] [--tokens 64] [--rounds 3] \
        [--flags "--kv-cache-mb 1024"]

Both servers are up at once (the revision's source checked out with `git worktree` into a temporary folder and
run with the same Python), and each round measures one stream (decode tok/s after the first token, streamed) and
the aggregate tok/s of each client count (bench/serve.py's prompts, --tokens greedy tokens each, EOS ignored),
alternating servers, so the machine's drift hits both alike. Prints medians, the median per-round ratio, and each
server's RSS after the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve import PROMPTS, Server, decode_rate, free_port, rss_mb  # noqa: E402 - bench/serve.py's helpers


def start(src: Path, model: str, name: str, flags: list[str]) -> Server:
    port = free_port()
    log = open(Path(tempfile.gettempdir()) / f"bench_versions_{name}.log", "w")
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen([sys.executable, "-m", "kollm.cli", "serve", "--model", model, "--port", str(port),
                             "--keys-db", "/tmp/bench-serve-keys.db", *flags], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    return Server(name, f"http://127.0.0.1:{port}", proc, {"model": Path(model).name})


async def measure(server: Server, clients: list[int], n: int) -> dict:
    out = {}
    async with httpx.AsyncClient(timeout=1800) as c:
        k, times = await server.one(c, PROMPTS[0], n, stream=True)
        out["1 stream"] = decode_rate(k, times)
        for cl in clients:
            out[f"{cl} clients"] = await server.agg(c, cl, n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="the earlier git revision")
    ap.add_argument("--model", default=str(Path.home() / ".cache/kollm/test-models/gemma-3-270m/hf"))
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flags", default="", help="extra `kollm serve` flags for both servers")
    a = ap.parse_args()
    clients = [int(c) for c in a.clients.split(",") if c]
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="kollm-rev-"))
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tmp / "tree"), a.rev], check=True,
                   capture_output=True)
    flags = shlex.split(a.flags)
    servers = [start(tmp / "tree" / "src", a.model, a.rev, flags), start(root / "src", a.model, "this tree", flags)]
    try:
        for s in servers:
            s.wait()
            asyncio.run(measure(s, [], a.tokens))  # warm-up
        runs: dict[str, list[dict]] = {s.name: [] for s in servers}
        for r in range(a.rounds):
            for s in (servers if r % 2 == 0 else servers[::-1]):
                runs[s.name].append(asyncio.run(measure(s, clients, a.tokens)))
                print(f"  round {r + 1} {s.name}: " + ", ".join(f"{k} {v:.1f}" for k, v in runs[s.name][-1].items()),
                      flush=True)
        rss = {s.name: rss_mb(s.proc.pid) for s in servers}
    finally:
        for s in servers:
            s.stop()
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tmp / "tree")],
                       capture_output=True)
    cols = list(runs[servers[0].name][0])
    old, new = servers[0].name, servers[1].name
    print(f"\n`kollm serve` {a.rev} vs this tree, {Path(a.model).name}, {os.cpu_count()} cores, {a.tokens} greedy "
          f"tokens per request, medians of {a.rounds} rounds ({a.flags or 'default flags'})\n")
    print("| server | " + " | ".join(cols) + " | RSS MB |")
    print("|---" * (len(cols) + 2) + "|")
    for name in (old, new):
        med = [statistics.median(x[c] for x in runs[name]) for c in cols]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in med) + f" | {rss[name]:,.0f} |")
    ratios = [statistics.median(b[c] / a_[c] for a_, b in zip(runs[old], runs[new], strict=True)) for c in cols]
    print("| **this tree / " + old + "** | " + " | ".join(f"{v:.2f}x" for v in ratios) + " | |")


if __name__ == "__main__":
    main()

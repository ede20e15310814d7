"""Training-loop throughput and MFU at a given model size, against the fp32 matmul peak measured at start.

    python bench/train_mfu.py --depth 4 --width 256 --vocab 4096 --seq 256 --batch 32 --steps 20 [--compile]
    python bench/train_mfu.py --depth 3 --batch 16 --optimizer muon --compile     # the CPU speedrun's loop
    python bench/train_mfu.py --run RUN_DIR     # MFU of a finished `kollm train` run, from its metrics.jsonl

Prints a table, then the same numbers as one JSON line. MFU counts 6 FLOPs/parameter/token for every matmul
(head included, embedding not) plus causal attention, the convention kollm.train.mfu uses in the training
progress bar. `gemm_ceiling` is the MFU the loop would have if everything but its matrix multiplications were
free: the same GEMMs (forward, both backward products, at the model's shapes) timed alone; it shows how far small
shapes keep even a perfect loop from the square-matmul peak. The machine is shared: run `uptime` alongside and
report the load with any number.

`--run` reads the MFU the training loop logged per window (skipping the first `--skip` windows: compilation and
warm-up) and compares the mean with `--floor`, the regression floor of the CPU speedrun (`kollm train --recipe
recipes/speedrun-cpu.toml`: 61% measured, bench/SPEEDRUN.md; below 25% the loop got much slower). This check
lived in tests/train/test_train_speedrun.py until timing claims moved out of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from kollm.model import KollmLM, ModelConfig
from kollm.train.mfu import flops_per_token, measure_matmul_peak


def gemm_ceiling(cfg: ModelConfig, tokens: int, peak: float) -> float:
    """MFU if only the model's GEMMs took time (attention's FLOPs counted, its time not)."""
    d, f, v = cfg.width, cfg.ffn_dim, cfg.vocab_size
    qkv = (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim
    shapes = []
    for _ in range(cfg.depth):
        for k, n in ((d, qkv), (cfg.n_heads * cfg.head_dim, d), (d, 2 * f), (f, d)):
            shapes += [(tokens, k, n), (tokens, n, k), (k, tokens, n)]  # forward, grad input, grad weight
    shapes += [(tokens, d, v), (tokens, v, d), (v, tokens, d)]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    best = float("inf")
    for i in range(8):
        t0 = time.perf_counter()
        for a, b in mats:
            a @ b
        if i:
            best = min(best, time.perf_counter() - t0)
    return flops_per_token(cfg, cfg.max_seq_len) * tokens / best / peak


def table(row: dict) -> str:
    """A two-line markdown table of one result."""
    cells = [str(v) if not isinstance(v, float) else f"{v:g}" for v in row.values()]
    return "| " + " | ".join(row) + " |\n|" + "---|" * len(row) + "\n| " + " | ".join(cells) + " |"


def run_mfu(run: Path, skip: int, floor: float) -> dict:
    """Mean and median MFU the training loop logged in RUN/metrics.jsonl, after the first `skip` windows."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found; pass --run the --out folder of a `kollm train` run")
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    mfu = [x["mfu"] for x in rows if isinstance(x.get("mfu"), float | int)][skip:]
    if not mfu:
        raise SystemExit(f"{path} has no more than {skip} windows with an MFU; lower --skip or train longer")
    tok_s = [x["tok_s"] for x in rows if "tok_s" in x][skip:]
    mean = statistics.fmean(mfu)
    return {"run": str(run), "windows": len(mfu), "tok_s_mean": round(statistics.fmean(tok_s)) if tok_s else 0,
            "mfu_mean": round(mean, 3), "mfu_median": round(statistics.median(mfu), 3), "floor": floor,
            "above_floor": mean >= floor, "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a finished `kollm train --out` folder: report the MFU it logged")
    ap.add_argument("--skip", type=int, default=5, help="with --run: windows to skip (compile, warm-up)")
    ap.add_argument("--floor", type=float, default=0.25, help="with --run: the regression floor of the mean MFU")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--micro", type=int, default=0, help="micro-batch (gradient accumulation); 0 = the batch")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--optimizer", default="adamw")
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    if a.run:
        row = run_mfu(a.run, a.skip, a.floor)
        print(table(row))
        print(json.dumps(row))
        return
    cfg = ModelConfig(depth=a.depth, width=a.width, vocab_size=a.vocab, max_seq_len=a.seq).resolved()
    torch.manual_seed(0)
    model = KollmLM(cfg)
    from kollm.train.config import TrainConfig
    from kollm.train.optim import make_optimizers

    opts = make_optimizers(model, TrainConfig(optimizer=a.optimizer, lr=1e-3))
    if a.compile:
        model.compile_blocks()  # as `compile = true` in a recipe
    x = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    peak = measure_matmul_peak(torch.device("cpu"), torch.float32)

    micro = a.micro or a.batch

    def step() -> None:
        for i in range(0, a.batch, micro):  # as the trainer: accumulate micro-batches, one optimiser step
            (model.loss(x[i:i + micro, :-1], x[i:i + micro, 1:]) * (micro / a.batch)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    tok_s = a.batch * a.seq * a.steps / dt
    peak_after = measure_matmul_peak(torch.device("cpu"), torch.float32)
    # the higher of the two peaks: another job may have depressed one measurement (conservative MFU)
    mfu = flops_per_token(cfg, a.seq) * tok_s / max(peak, peak_after)
    ceiling = gemm_ceiling(cfg, micro * a.seq, max(peak, peak_after))
    row = {"depth": a.depth, "width": cfg.width, "vocab": a.vocab, "seq": a.seq, "batch": a.batch, "micro": micro,
           "optimizer": a.optimizer, "compile": a.compile, "tok_s": round(tok_s),
           "peak_gflops": round(peak / 1e9, 1), "peak_after_gflops": round(peak_after / 1e9, 1),
           "mfu": round(mfu, 3), "gemm_ceiling": round(ceiling, 3),
           "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}
    print(table(row))
    print(json.dumps(row))


if __name__ == "__main__":
    main()

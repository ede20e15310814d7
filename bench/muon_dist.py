"""Muon's optimiser step under FSDP2: Newton-Schulz split over the ranks vs repeated on every rank.

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 bench/muon_dist.py --depths 3 6

Both variants run in the same processes, alternately, on the same sharded model with random gradients; the
table gives the best step time of each (ms) and their ratio. "every rank" is what kollm did before the split:
each rank gathers every matrix and orthogonalises all of them.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist

from kollm.model import KollmLM, ModelConfig
from kollm.train import muon
from kollm.train.config import TrainConfig
from kollm.train.distributed import init_distributed, shard_model
from kollm.train.optim import make_optimizers


def every_rank(stack: torch.Tensor, mesh: object, ns: object) -> torch.Tensor:
    return ns(stack)


def step_ms(opt: torch.optim.Optimizer, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        opt.step()
        dist.barrier()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depths", type=int, nargs="+", default=[3, 6])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    info = init_distributed()
    if not info.sharded:
        raise SystemExit("run under torchrun --nproc_per_node K (K >= 2)")
    split = muon._split_over_ranks
    rows = []
    for depth in a.depths:
        cfg = ModelConfig(depth=depth, vocab_size=4096, max_seq_len=256).resolved()
        torch.manual_seed(0)
        model = KollmLM(cfg)
        shard_model(model, info, torch.float32)
        opt = make_optimizers(model, TrainConfig(optimizer="muon", lr=1e-3))[0]
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        times = {"split": [], "every rank": []}
        for _ in range(2):  # alternate, so a noisy minute hits both
            for name, fn in (("split", split), ("every rank", every_rank)):
                muon._split_over_ranks = fn
                times[name].append(step_ms(opt, a.repeats))
        muon._split_over_ranks = split
        s, e = min(times["split"]), min(times["every rank"])
        rows.append(f"| {depth} | {cfg.width} | {info.world} | {e:.1f} | {s:.1f} | {e / s:.2f}x |")
    if info.is_main:
        print(f"threads per rank: {torch.get_num_threads()}")
        print("| depth | width | ranks | every rank (ms) | split (ms) | speed-up |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

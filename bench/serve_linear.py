"""One row through a serving linear (kollm/serve/packed.py), side by side: nn.functional.linear, an MKL packing for
one row (a second copy of the weight: what packed.py did before), and the row blocks packed.py runs now (no copy).
Medians of --repeat calls on random float32 weights of serving shapes, ms, with ratios against F.linear. A second
table takes more rows (decode batches, prompt chunks) through F.linear and (W x^T)^T: where PackedLinear switches.
A third takes row counts that are not a multiple of 8 (decode batches as requests end, a few prompts' tokens)
through (W x^T)^T as they are and through PackedLinear, which pads them with zero rows to a multiple of 8.

    python bench/serve_linear.py [--repeat 31]
"""

from __future__ import annotations

import argparse
import time

import torch

from kollm.serve.packed import LINEAR_MIN_ROWS, SLICE, SLICED_MIN_ROWS, PackedLinear

ROWS = (2, 16, 64, 128, 256, 512, 2048)
BODY = {"gate/up 4096 x 640": (4096, 640), "qkv 1536 x 640": (1536, 640), "down 640 x 2048": (640, 2048)}
ODD_ROWS = (7, 13, 31, 42, 58, 63, 123)
ODD = {"head 262144 x 640 (Gemma 3)": (262144, 640), **BODY}
SHAPES = {"head 262144 x 640 (Gemma 3)": (262144, 640), "head 151936 x 896 (Qwen2.5-0.5B)": (151936, 896),
          "8192 x 640": (8192, 640), "gate/up 4096 x 640": (4096, 640)}


def median_ms(f, repeat: int) -> float:
    f()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=31)
    args = ap.parse_args()
    torch.manual_seed(0)
    mkl = bool(getattr(torch._C, "has_mkl", False)) and hasattr(torch.ops.mkl, "_mkl_linear")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MKL {'yes' if mkl else 'no'}")
    print("| one row, ms | F.linear | MKL one-row packed | PackedLinear | vs F.linear | "
          "vs MKL packed | extra copy MB |")
    print("|---|---|---|---|---|---|---|")
    for name, (out, inp) in SHAPES.items():
        w, x = torch.randn(out, inp), torch.randn(1, inp)
        plain = median_ms(lambda w=w, x=x: torch.nn.functional.linear(x, w), args.repeat)
        packed = float("nan")
        if mkl:
            p = torch.ops.mkl._mkl_reorder_linear_weight(w, 1)
            packed = median_ms(lambda w=w, x=x, p=p: torch.ops.mkl._mkl_linear(x, p, w, None, 1), args.repeat)
            del p
        lin = PackedLinear(w)
        ours = median_ms(lambda lin=lin, x=x: lin(x), args.repeat)
        print(f"| {name} | {plain:.2f} | {packed:.2f} | {ours:.2f} | {plain / ours:.2f}x | {packed / ours:.2f}x | "
              f"{w.numel() * 4 / 2**20:.0f} |")
    print(f"\nPackedLinear: (W x^T)^T below {LINEAR_MIN_ROWS} rows, F.linear from there on")
    print("| weight | product | " + " | ".join(f"{n} rows" for n in ROWS) + " |")
    print("|---|---|" + "---|" * len(ROWS))
    for name, (out, inp) in BODY.items():
        w = torch.randn(out, inp)
        xs = [torch.randn(n, inp) for n in ROWS]
        plain = [median_ms(lambda x=x, w=w: torch.nn.functional.linear(x, w), args.repeat) for x in xs]
        turned = [median_ms(lambda x=x, w=w: torch.mm(w, x.T).T.contiguous(), args.repeat) for x in xs]
        print(f"| {name} | F.linear | " + " | ".join(f"{t:.2f}" for t in plain) + " |")
        print(f"| {name} | (W x^T)^T | " + " | ".join(f"{t:.2f}" for t in turned) + " |")
    print("\nRow counts that are not a multiple of 8: (W x^T)^T as they are (a big weight slice by slice, as "
          "PackedLinear did) vs PackedLinear (padded to a multiple of 8)")
    print("| weight | product | " + " | ".join(f"{n} rows" for n in ODD_ROWS) + " |")
    print("|---|---|" + "---|" * len(ODD_ROWS))
    for name, (out, inp) in ODD.items():
        w = torch.randn(out, inp)
        lin = PackedLinear(w)
        xs = [torch.randn(n, inp) for n in ODD_ROWS]
        repeat = max(3, args.repeat // 10) if lin.big else args.repeat
        plain = [median_ms(lambda x=x, w=w: _unpadded(w, x), repeat) for x in xs]
        ours = [median_ms(lambda x=x, lin=lin: lin(x), repeat) for x in xs]
        print(f"| {name} | as they are | " + " | ".join(f"{t:.2f}" for t in plain) + " |")
        print(f"| {name} | PackedLinear | " + " | ".join(f"{t:.2f}" for t in ours) + " |")
        print(f"| {name} | ratio | " + " | ".join(f"{a / b:.2f}x" for a, b in zip(plain, ours, strict=True)) + " |")


def _unpadded(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(W x^T)^T without padding: slice by slice on a big weight, as PackedLinear runs it."""
    if w.numel() < 1 << 22 or len(x) < SLICED_MIN_ROWS:
        return torch.mm(w, x.T).T.contiguous()
    out = x.new_empty(len(x), w.shape[0])
    for s in range(0, w.shape[0], SLICE):
        out[:, s:s + SLICE] = torch.mm(w[s:s + SLICE], x.T).T
    return out


if __name__ == "__main__":
    main()

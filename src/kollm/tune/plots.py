"""loss.png for a tuning run: training loss per step, and the held-out score (the job's metric, or bits per
byte) at each validation."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kollm.files import atomic_path, read_jsonl  # noqa: E402


def plot_tuning(metrics_path: str | Path, png_path: str | Path, metric: str) -> None:
    rows = list(read_jsonl(metrics_path))
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_bpb" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    left.set(xlabel="optimiser steps", ylabel="loss (nats/token)", title="training loss (supervised tokens)")
    key = metric if val and metric in val[0] else "val_bpb"
    right.plot([r["step"] for r in val], [r[key] for r in val], "o-", color="tab:orange")
    right.set(xlabel="optimiser steps", ylabel=key, title=f"held-out {key} (step 0 = before tuning)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)

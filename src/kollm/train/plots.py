"""PNG curves from a run's metrics.jsonl (a person reads a curve faster than a log): training loss and
validation bits-per-byte, each against optimiser steps, training tokens and training seconds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kollm.files import atomic_path, read_jsonl  # noqa: E402

AXES = (("step", "optimiser steps"), ("tokens", "training tokens"), ("seconds", "training seconds"))


def plot_run(metrics_path: str | Path, png_path: str | Path) -> None:
    rows = list(read_jsonl(metrics_path))
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_bpb" in r]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for col, (key, label) in enumerate(AXES):
        top, bottom = axes[0][col], axes[1][col]
        top.plot([r[key] for r in train], [r["loss"] for r in train], lw=1)
        top.set(xlabel=label, ylabel="train loss (nats/token)", title=f"training loss vs {label}")
        if val:
            bottom.plot([r[key] for r in val], [r["val_bpb"] for r in val], "o-", color="tab:orange")
        bottom.set(xlabel=label, ylabel="bits per byte", title=f"validation bits-per-byte vs {label}")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)

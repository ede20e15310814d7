"""PNG curves from a run's metrics.jsonl (a person reads a curve faster than a log)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kollm.files import atomic_path, read_jsonl  # noqa: E402


def plot_run(metrics_path: str | Path, png_path: str | Path) -> None:
    rows = list(read_jsonl(metrics_path))
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_bpb" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["tokens"] for r in train], [r["loss"] for r in train], lw=1)
    ax1.set(xlabel="training tokens", ylabel="train loss (nats/token)", title="training loss")
    ax1.grid(alpha=0.3)
    if val:
        ax2.plot([r["tokens"] for r in val], [r["val_bpb"] for r in val], "o-", color="tab:orange")
    ax2.set(xlabel="training tokens", ylabel="bits per byte", title="validation bits-per-byte")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

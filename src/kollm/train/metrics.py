"""Where a run's numbers go: OUT/metrics.jsonl (one JSON row per log/eval) and TensorBoard (OUT/tensorboard).
Only rank 0 writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kollm.files import append_jsonl, read_jsonl, write_jsonl


class MetricsLog:
    def __init__(self, out: Path, enabled: bool, tensorboard: bool) -> None:
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))

    def start(self, resume_step: int | None) -> None:
        """Fresh run: start a new file. Resume: drop rows after the checkpoint (they will be recomputed)."""
        if not self.enabled:
            return
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            write_jsonl(self.path, [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step])

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}" if k != "val_bpb" else "val/bpb", v, row["step"])
                elif isinstance(v, str):
                    self.tb.add_text(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

"""Stage 4: pretrain decoder-only LMs (float32 on CPU, bf16 on capable GPUs; FSDP2 under torchrun)."""

from __future__ import annotations

from typing import Any

from kollm.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "train_model"]


def __getattr__(name: str) -> Any:
    # torch takes seconds to import; `kollm --help` imports this package (for `kollm train`), so load it on use.
    if name in ("TrainResult", "train_model"):
        from kollm.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'kollm.train' has no attribute {name!r}")

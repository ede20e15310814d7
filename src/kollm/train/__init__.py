"""Stage 4: pretrain decoder-only LMs (float32 on CPU, bf16 on capable GPUs; FSDP2 under torchrun)."""

from kollm.train.config import TrainConfig
from kollm.train.loop import TrainResult, train_model

__all__ = ["TrainConfig", "TrainResult", "train_model"]

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """What to train on and how. The model's shape lives in ModelConfig."""

    data: str = ""  # training corpus: .jsonl (`text` field) or .txt
    val_data: str = ""  # validation corpus; empty = hold out ~5% of `data`
    tokenizer: str = ""  # tokenizer folder (tokenizer.json)

    batch_size: int = 16  # sequences per step; each is model.max_seq_len tokens
    lr: float = 3e-3
    warmup_steps: int = 20
    decay_frac: float = 0.4  # warmup-stable-decay: the last 40% of the run decays the LR linearly
    final_lr_frac: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    time_budget: float = 0.0  # seconds of training (evaluation excluded); 0 = no limit
    max_steps: int = 0  # 0 = no limit; at least one of the two limits must be set
    eval_every_s: float = 30.0  # periodic val bits-per-byte, in seconds of training
    checkpoint_every_s: float = 60.0
    log_every: int = 10
    seed: int = 0

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("adamw", "muon", "adamp")


@dataclass
class TrainConfig:
    """What to train on and how. The model's shape lives in ModelConfig.

    Fields left at 0 are derived from the model size (see kollm.train.hparams and docs/train.md).
    """

    data: str = ""  # training corpus: a file or folder of text (`kollm data run`'s clean/), or token shards (tokens/)
    val_data: str = ""  # validation corpus; empty = hold out `val_fraction` of `data` (written to OUT/val.jsonl)
    val_fraction: float = 0.05
    tokenizer: str = ""  # tokenizer folder (tokenizer.json)

    batch_size: int = 0  # sequences per optimiser step, over all processes; 0 = derived
    micro_batch_size: int = 0  # sequences per forward pass per process; 0 = largest divisor <= 32
    optimizer: str = "adamw"  # adamw | muon (Muon for hidden matrices, AdamW for the rest) | adamp
    lr: float = 0.0  # AdamW/AdamP learning rate (embeddings, norms, head under Muon); 0 = derived
    matrix_lr: float = 0.02  # Muon learning rate for hidden 2-D weights
    muon_momentum: float = 0.95
    warmup_steps: int = 20
    decay_frac: float = 0.4  # warmup-stable-decay: the last 40% of the run decays the LR linearly
    final_lr_frac: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 = off

    # When training ends: whichever limit comes first. None set = the compute-optimal token horizon.
    time_budget: float = 0.0  # seconds of training (evaluation and checkpointing excluded); 0 = no limit
    max_steps: int = 0  # optimiser steps; 0 = no limit
    max_tokens: int = 0  # training tokens; 0 = no limit
    tokens_per_param: float = 20.0  # compute-optimal horizon (Chinchilla) used when no limit is set

    eval_every_s: float = 30.0  # periodic val bits-per-byte, in seconds of training
    eval_every_steps: int = 0  # 0 = by time only
    val_max_docs: int = 0  # score at most this many val documents during training (0 = all)
    sample_tokens: int = 32  # greedy continuation logged at each evaluation (0 = off)
    checkpoint_every_s: float = 60.0
    checkpoint_every_steps: int = 0  # 0 = by time only (use steps for reproducible kill/resume tests)
    keep_checkpoints: int = 2  # older complete checkpoints are deleted; >= 2 leaves a fallback if one is corrupt
    log_every: int = 10
    tensorboard: bool = True
    compile: bool = False  # torch.compile each block for training (needs a C++ compiler on CPU; bench/SPEEDRUN.md)
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default (every core)
    seed: int = 0

"""The `[tune]` recipe section: what to tune, on which examples, and how long."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TuneConfig:
    data: list[str] = field(default_factory=list)  # jsonl files: messages | prompt+completion | text | inputs+expected
    # prompt template (`{{name}}` variables, the Studio's syntax) for rows that carry inputs instead of a prompt:
    # Studio test sets ({"inputs": {...}, "expected": ...}) or flat rows named by `target` (typo pairs)
    template: str = ""
    target: str = "expected"  # the field holding the wanted output, for flat rows with a template
    # also train on (typo -> correct) pairs synthesized from the shipped clean queries, as `kollm data typos` makes
    # them (its rates: the recipe's [data] typo_* fields)
    typos: bool = False
    method: str = "lora"  # lora | full
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    lr: float = 0.0  # 0: 2e-4 for LoRA, 2e-5 for full fine-tuning
    weight_decay: float = 0.0
    warmup_steps: int = 10
    steps: int = 300  # optimiser steps (an upper bound when early stopping)
    batch_tokens: int = 2048  # tokens per optimiser step: examples packed into rows, never padded
    seq_len: int = 512  # longest packed row; a longer example is cut (its completion kept first)
    eos: bool = True  # end each completion with EOS so the served model stops by itself
    val_fraction: float = 0.05  # held out by a hash of the expected output (no answer seen in training)
    val_max: int = 200  # at most this many held-out examples scored
    eval_every: int = 50  # steps between validations (loss and the task metric); the best is kept
    patience: int = 4  # validations without improvement before stopping early (0: never stop early)
    metric: str = "auto"  # auto | exact_match | rouge_l | chrf | loss: what "best" means
    max_new_tokens: int = 48  # generation length when scoring the metric
    checkpoint_every: int = 25  # steps between resume points (kill -9 loses at most this many)
    seed: int = 0
    merge: bool = False  # also write OUT/merged: the base with the adapter folded in (a plain HF folder)

"""Tuning: make a model good at one Korean job (LoRA with peft, or full fine-tuning) on that job's examples."""

from kollm.tune.config import TuneConfig

__all__ = ["TuneConfig"]

"""Stage 5: evaluation (bits-per-byte of any HF causal LM)."""

from kollm.eval.config import EvalConfig

__all__ = ["EvalConfig"]

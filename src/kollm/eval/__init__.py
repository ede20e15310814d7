"""Stage 6: evaluation. Korean few-shot tasks on lm-evaluation-harness (`kollm_*` tasks, Korean metrics, reports
and plots) for a HF causal-LM folder or an OpenAI-compatible server, and bits-per-byte of a HF folder on text."""

from kollm.eval.config import EvalConfig

__all__ = ["EvalConfig"]

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    """`kollm eval`: the [eval] section of a recipe, CLI flags on top."""

    model: str = ""  # Hugging Face causal-LM folder
    data: str = ""  # text to score (.jsonl/.txt file or folder)
    ctx: int = 0  # context window in tokens; 0 = the model's maximum, at most 1024
    out: str = ""  # metrics.json path; empty = print only

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    """`kollm serve` / `kollm serve generate`: the [serve] section of a recipe, CLI flags on top.

    Sampling defaults are not here: they come from the model folder's generation_config.json."""

    model: str = ""  # Hugging Face causal-LM folder
    host: str = "127.0.0.1"
    port: int = 8000
    chat_template: str = ""  # Jinja file for /v1/chat/completions when the model's tokenizer has none

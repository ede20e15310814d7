from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """`kollm eval`: the [eval] section of a recipe, CLI flags on top.

    With `data`, bits-per-byte of `model` on that text; with `tasks`, few-shot tasks on lm-evaluation-harness
    for every model in `models` (and `model`) at every shot count.
    """

    model: str = ""  # Hugging Face causal-LM folder (or an OpenAI-compatible server URL, for tasks)
    data: str = ""  # text to score (.jsonl/.txt file or folder): bits-per-byte
    ctx: int = 0  # context window in tokens; 0 = the model's maximum, at most 1024
    out: str = ""  # bits-per-byte: metrics.json path (empty = print only); tasks: the run folder
    models: list[str] = field(default_factory=list)  # more models to compare (folders or URLs)
    tasks: str = ""  # comma-separated lm-eval task names, YAML paths or NAME=DATA (kollm_* tasks on other data)
    shots: str = "0"  # comma-separated few-shot counts, e.g. "0,1,5"
    limit: int = 0  # items per task (0 = all); for smoke runs
    backend: str = "kollm"  # in-process engine: kollm (shared-context KV reuse) or hf (lm-eval's own)
    tokenizer: str = ""  # tokenizer folder (required with a server URL; default: the model folder)
    batch_size: int = 8

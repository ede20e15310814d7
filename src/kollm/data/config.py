from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    """Corpus preparation used by `kollm quickstart` (the full pipeline is `kollm data run`)."""

    # Input files or folders (.jsonl with a `text` field, .txt with blank-line separated documents).
    # Empty means the sample corpus embedded in kollm.
    sources: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    min_chars: int = 10  # shorter documents carry too little to learn from (search queries are ~15)
    seed: int = 0

"""stats.json and the funnel chart of a run, and `kollm data inspect`.

Every task of every executor saves its block counters in logs/<executor>/stats/<task>.json
(datatrove does that); summing those per block gives numbers that stay right after a resume,
when the executor's own merged stats.json only covers the tasks of the last attempt.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from kollm.errors import KollmError
from kollm.files import atomic_path, write_json

_ORDER = ("read", "ocr_floor", "normalize", "repair", "quality", "pii", "exact_dedup", "near_dedup")


def _total(v: object) -> float:
    return v["total"] if isinstance(v, dict) else v  # counters are plain numbers, sized stats dicts


def summarize(out: str | Path) -> dict:
    """Documents and bytes in/out per stage and removal reasons, summed over all tasks."""
    out = Path(out)
    stages: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for f in sorted(out.glob("logs/*/stats/*.json")):
        for block in json.loads(f.read_text()):
            name = block["name"].split(": ", 1)[-1]
            if name not in _ORDER and not name.startswith("tokens"):
                continue
            for key, v in block["stats"].items():
                stages[name][key] += _total(v)
    rows = []
    for name in [n for n in _ORDER if n in stages] + [n for n in stages if n not in _ORDER]:
        s = stages[name]
        rows.append({
            "stage": name,
            "docs_in": int(s.get("docs_in", s.get("docs_out", 0) + sum(v for k, v in s.items()
                                                                       if k.startswith("removed/")))),
            "bytes_in": int(s.get("bytes_in", s.get("bytes_read", 0))),
            "docs_out": int(s.get("docs_out", 0)),
            "bytes_out": int(s.get("bytes_out", 0)),
            "removed": {k.split("/", 1)[1]: int(v) for k, v in sorted(s.items()) if k.startswith("removed/")},
            **({"masked": {k.split("/", 1)[1]: int(v) for k, v in s.items() if k.startswith("masked/")}}
               if any(k.startswith("masked/") for k in s) else {}),
            **({"tokens": int(s["tokens"])} if "tokens" in s else {}),
            **({"duplicate_clusters": int(s["clusters"]), "docs_in_clusters": int(s.get("cluster_size", 0))}
               if "clusters" in s else {}),
        })
    return {"stages": rows}


def plot_funnel(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in stats["stages"] if r["stage"] != "tokens"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.6 * len(rows) + 2))
    labels = [r["stage"] for r in rows][::-1]
    for ax, key, unit, scale in ((ax1, "docs_out", "documents", 1), (ax2, "bytes_out", "MB", 1e6)):
        vals = [r[key] / scale for r in rows][::-1]
        ax.barh(labels, vals, color="#3b6fb6")
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:,.0f}" if scale == 1 else f" {v:,.2f}", va="center", fontsize=8)
        ax.set_xlabel(f"{unit} left after each stage")
    fig.suptitle("kollm data: corpus funnel")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(out: str | Path) -> dict:
    out = Path(out)
    stats = summarize(out)
    write_json(out / "stats.json", stats)
    plot_funnel(stats, out / "funnel.png")
    return stats


class Report(PipelineStep):
    """The last executor's one task: writes stats.json and funnel.png (so it runs on a cluster too)."""

    type = "🇰🇷 kollm"
    name = "report"

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        write_report(self.out)
        return iter(())


def inspect_removed(out: str | Path, per_reason: int = 3, seed: int = 0, reason: str | None = None) -> dict[str, list]:
    """Random removed documents for each reason, to judge whether a filter is right."""
    folder = Path(out) / "removed"
    if not folder.is_dir():
        raise KollmError(f"{folder} not found; run `kollm data run` with keep_removed = true first")
    by_reason: dict[str, list] = defaultdict(list)
    for f in sorted(folder.glob("*/*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if reason is None or reason in row["removed"]:
                    by_reason[row["removed"]].append(row)
    rng = random.Random(seed)
    return {r: rng.sample(rows, min(per_reason, len(rows))) for r, rows in sorted(by_reason.items())}

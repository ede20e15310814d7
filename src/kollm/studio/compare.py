"""What a run's scores mean: the do-nothing baseline (output = input) beside a run, and two runs of one test set
side by side, per metric and per item, on all items and on the held-out ones (training.held_out) alone.

The baseline answers "is 0.78 ROUGE-L good?": for query correction, copying the query already scores that much.
It applies where the output could be the input: one input variable and an expected text to score against."""

from __future__ import annotations

from kollm import metrics
from kollm.studio.testsets import METRICS, compare
from kollm.studio.training import held_out

TEXT_METRICS = ("exact", "rouge_l", "chrf")


def _text_scores(output: str, expected: str) -> dict[str, float]:
    return {"exact": metrics.exact_match(output, expected), "rouge_l": metrics.rouge_l(output, expected),
            "chrf": metrics.chrf(output, expected)}


def copy_scores(row: dict) -> dict[str, float] | None:
    """One item's text metrics if the output were its input; None where that does not apply."""
    if len(row.get("inputs") or {}) != 1 or row.get("expected") is None:
        return None
    return _text_scores(next(iter(row["inputs"].values())), row["expected"])


def baseline(results: list[dict]) -> dict | None:
    """The copy baseline's mean text metrics over the items it applies to; None when it applies to none."""
    scored = [x for x in (copy_scores(r) for r in results) if x is not None]
    if not scored:
        return None
    return {"items": len(scored), **{m: sum(x[m] for x in scored) / len(scored) for m in TEXT_METRICS}}


def means(rows: list[dict]) -> dict:
    """Mean of each metric over the rows that have it (rows: a run's results)."""
    out: dict = {"items": len(rows), "errors": sum(1 for r in rows if r.get("error"))}
    for m in METRICS:
        vals = [r["scores"][m] for r in rows if m in r.get("scores", {})]
        if vals:
            out[m] = sum(vals) / len(vals)
    return out


def pair_runs(a: list[dict], b: list[dict]) -> dict:
    """Paired items (by explicit id) with regressions marked and held-out items flagged, and per-metric means of
    A, B and the copy baseline over all paired items and over the held-out ones."""
    rows = compare(a, b)
    for r in rows:
        r["held_out"] = r.get("expected") is not None and held_out(r["inputs"])
        r["copy"] = copy_scores(r)
    subsets = {"all": rows, "held-out": [r for r in rows if r["held_out"]]}
    tables = {}
    for name, sub in subsets.items():
        if not sub:
            continue
        base = baseline([{"inputs": r["inputs"], "expected": r["expected"]} for r in sub])
        tables[name] = {"a": means([r["a"] for r in sub]), "b": means([r["b"] for r in sub]), "copy": base,
                        "regressions": sum(r["regressed"] for r in sub), "items": len(sub)}
    return {"rows": rows, "tables": tables, "regressions": sum(r["regressed"] for r in rows)}

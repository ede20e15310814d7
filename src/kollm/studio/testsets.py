"""Test sets: parsing uploads (CSV or JSONL, inputs + expected output + optional assertions) within limits, and
scoring a version's outputs with the evaluation stage's Korean metrics (`kollm.metrics`, not reimplemented).

An item is {"id", "inputs": {var: text}, "expected": text | None, "contains": [text], "regex": text | None,
"is_json": bool}. In a flat row (a CSV line, or a JSONL object without "inputs"), every column that is not one of
RESERVED is an input variable. In CSV, `contains` holds several needles separated by `|`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterable

from kollm import metrics
from kollm.errors import KollmError
from kollm.studio.apps import AppSpec
from kollm.studio.client import ModelClient
from kollm.studio.runner import run_once

RESERVED = ("id", "expected", "contains", "regex", "is_json", "inputs")
SUFFIXES = (".csv", ".jsonl")
# metric -> what the UI calls it; in this order in tables and exports
METRICS = {"exact": "exact match (spacing-insensitive)", "rouge_l": "ROUGE-L (morphemes)", "chrf": "chrF",
           "contains": "contains", "regex": "regex", "json": "JSON valid"}


def _truthy(v: object) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "y"))


def _item(row: dict, n: int) -> dict:
    if not isinstance(row, dict):
        raise KollmError(f"item {n}: expected an object with input columns, got {type(row).__name__}")
    inputs = row.get("inputs") if isinstance(row.get("inputs"), dict) else {
        k: v for k, v in row.items() if k not in RESERVED}
    inputs = {str(k): "" if v is None else str(v) for k, v in inputs.items()}
    contains = row.get("contains") or []
    if isinstance(contains, str):
        contains = [c for c in (s.strip() for s in contains.split("|")) if c]
    regex = (row.get("regex") or "").strip() or None
    if regex is not None:
        try:
            metrics.matches_regex("", regex)
        except ValueError as e:
            raise KollmError(f"item {n}: {e}") from None
    expected = row.get("expected")
    return {"id": str(row.get("id") or n), "inputs": inputs,
            "expected": None if expected is None or expected == "" else str(expected),
            "contains": [str(c) for c in contains], "regex": regex, "is_json": _truthy(row.get("is_json"))}


def parse_upload(filename: str, data: bytes, max_bytes: int = 1_000_000, max_items: int = 2000) -> list[dict]:
    """Items from an uploaded file. Only the suffix of `filename` is used (never as a path)."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in SUFFIXES:
        raise KollmError(f"upload a .csv or .jsonl file (got {filename!r})")
    if len(data) > max_bytes:
        raise KollmError(f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    try:
        text = data.decode("utf-8-sig")  # Excel writes a BOM before UTF-8 CSV
    except UnicodeDecodeError:
        raise KollmError("the file is not UTF-8 text; save it as UTF-8 (CSV UTF-8 in Excel)") from None
    if "\x00" in text:
        raise KollmError("the file is binary, not CSV or JSONL text")
    rows: Iterable[dict]
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise KollmError("the CSV has no header row; the first row names the columns (inputs, expected)")
        rows = list(reader)
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise KollmError(f"line {i} is not JSON ({e.msg})") from None
    items = []
    for n, row in enumerate(rows, 1):
        if n > max_items:
            raise KollmError(f"more than {max_items} items; split the file")
        items.append(_item(row, n))
    if not items:
        raise KollmError("the file has no items")
    return items


def score(item: dict, output: str, spec: AppSpec | None = None) -> dict[str, float]:
    """The metrics that apply to this item, each in [0, 1]."""
    s: dict[str, float] = {}
    if item.get("expected") is not None:
        ref = item["expected"]
        s["exact"] = metrics.exact_match(output, ref)
        s["rouge_l"] = metrics.rouge_l(output, ref)
        s["chrf"] = metrics.chrf(output, ref)
    if item.get("contains"):
        s["contains"] = float(all(metrics.contains(output, c, spacing=False) for c in item["contains"]))
    if item.get("regex"):
        s["regex"] = float(metrics.matches_regex(output, item["regex"]))
    if item.get("is_json") or (spec is not None and spec.json_schema.strip()):
        s["json"] = float(metrics.is_json(output))
    return s


def summarize(results: list[dict]) -> dict:
    """Mean of each metric over the items that have it, plus counts."""
    out: dict = {"items": len(results), "errors": sum(1 for r in results if r.get("error"))}
    for m in METRICS:
        vals = [r["scores"][m] for r in results if m in r.get("scores", {})]
        if vals:
            out[m] = sum(vals) / len(vals)
    lat = [r["latency_ms"] for r in results if not r.get("error")]
    if lat:
        out["latency_ms"] = sum(lat) / len(lat)
    return out


async def run_items(client: ModelClient, spec: AppSpec, items: list[dict], model: str = "",
                    concurrency: int = 2) -> list[dict]:
    """Each item through the version; an item whose inputs miss a variable, or whose call fails, is an error row."""
    sem = asyncio.Semaphore(concurrency)

    async def one(item: dict) -> dict:
        row = {"id": item["id"], "inputs": item["inputs"], "expected": item.get("expected"), "output": "",
               "scores": {}, "error": "", "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
        try:
            async with sem:
                out = await run_once(client, spec, item["inputs"], model)
        except KollmError as e:
            row["error"] = str(e)
            return row
        row.update(output=out.output, error=out.error, latency_ms=out.latency_ms, prompt_tokens=out.prompt_tokens,
                   completion_tokens=out.completion_tokens)
        if not out.error:
            row["scores"] = score(item, out.output, spec)
        return row

    return list(await asyncio.gather(*(one(it) for it in items)))


def compare(a: list[dict], b: list[dict]) -> list[dict]:
    """Items of two runs side by side (matched by id), each metric marked as a regression (b < a) or a gain."""
    by_id = {r["id"]: r for r in a}
    rows = []
    for rb in b:
        ra = by_id.get(rb["id"])
        if ra is None:
            continue
        marks = {}
        for m in METRICS:
            if m in ra["scores"] and m in rb["scores"]:
                d = rb["scores"][m] - ra["scores"][m]
                marks[m] = "regression" if d < -1e-9 else "gain" if d > 1e-9 else ""
        rows.append({"id": rb["id"], "inputs": rb["inputs"], "expected": rb.get("expected"), "a": ra, "b": rb,
                     "marks": marks, "regressed": "regression" in marks.values()
                     or (bool(rb.get("error")) and not ra.get("error"))})
    return rows


def _cell(value: object) -> object:
    # a spreadsheet runs a cell that starts with = + - @ as a formula; model output must not become one
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def export(results: list[dict], fmt: str) -> str:
    """A run's items as CSV (one column per metric) or JSONL."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "inputs", "expected", "output", *METRICS, "error", "latency_ms"])
    for r in results:
        w.writerow([_cell(r["id"]), _cell(json.dumps(r["inputs"], ensure_ascii=False)), _cell(r.get("expected") or ""),
                    _cell(r["output"]), *(r["scores"].get(m, "") for m in METRICS), _cell(r.get("error", "")),
                    round(r.get("latency_ms", 0), 1)])
    return buf.getvalue()

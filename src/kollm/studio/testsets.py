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
import threading
from collections.abc import Callable, Iterable

import anyio

from kollm import metrics
from kollm.errors import KollmError
from kollm.studio.apps import AppSpec
from kollm.studio.client import ModelClient
from kollm.studio.messages import msg
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
        raise KollmError(msg("upload.object", n=n))
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
            raise KollmError(msg("upload.item", n=n, error=e)) from None
    expected = row.get("expected")
    rid = row.get("id")  # an explicit id, 0 included ("or n" once made id 0 into "1" and paired runs wrongly)
    return {"id": str(n) if rid is None or str(rid).strip() == "" else str(rid).strip(), "inputs": inputs,
            "expected": None if expected is None or expected == "" else str(expected),
            "contains": [str(c) for c in contains], "regex": regex, "is_json": _truthy(row.get("is_json"))}


class UploadError(KollmError):
    """A refused upload; `columns` are the file's columns when it had any (the page offers them for mapping)."""

    def __init__(self, message: str, columns: list[str] | None = None) -> None:
        super().__init__(message)
        self.columns = columns


def parse_mapping(text: str) -> dict[str, str]:
    """`file column = name` lines (`=`, `->` or `→`) as {file column: name}; name `-` drops the column."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        for sep in ("→", "->", "="):
            if sep in line:
                src, _, dst = line.partition(sep)
                break
        else:
            raise KollmError(msg("upload.mapping", line=line.strip()))
        src, dst = src.strip(), dst.strip()
        if not src or not dst:
            raise KollmError(msg("upload.mapping", line=line.strip()))
        if src != dst:
            out[src] = dst
    return out


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM, as Excel's "CSV UTF-8" writes, dropped), else CP949: Korean Excel's default "CSV" (CP949 is a
    superset of EUC-KR). A file that is neither is refused rather than read as mojibake."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp949")
    except UnicodeDecodeError:
        raise UploadError(msg("upload.encoding")) from None


def _mapped(row: dict, mapping: dict[str, str]) -> dict:
    if not mapping or not isinstance(row, dict):
        return row
    out: dict = {}
    for k, v in row.items():
        name = mapping.get(str(k).strip(), str(k).strip()) if isinstance(k, str) else k
        if name == "-":
            continue
        if name == "inputs" and isinstance(v, dict):  # a JSONL row's inputs map too
            v = {mapping.get(ik, ik): iv for ik, iv in v.items() if mapping.get(ik, ik) != "-"}
        out[name] = v
    return out


def _check_columns(items: list[dict], variables: list[str], columns: list[str]) -> None:
    """Refuse a file that would score nothing, or whose inputs do not fill the template (#25: such a file was
    accepted and every item failed or scored nothing)."""
    shown = ", ".join(columns) or "-"
    if not any(it["expected"] is not None or it["contains"] or it["regex"] or it["is_json"] for it in items):
        raise UploadError(msg("upload.no_check", columns=shown), columns)
    have = set().union(*(it["inputs"] for it in items))
    missing = [v for v in variables if v not in have]
    if missing:
        raise UploadError(msg("upload.missing_vars", missing=", ".join(missing), columns=shown), columns)
    extra = sorted(have - set(variables))
    if extra:
        raise UploadError(msg("upload.extra_cols", extra=", ".join(extra), variables=", ".join(variables)), columns)


def parse_upload(filename: str, data: bytes, max_bytes: int = 1_000_000, max_items: int = 2000,
                 variables: list[str] | None = None, mapping: dict[str, str] | None = None) -> list[dict]:
    """Items from an uploaded file (UTF-8 or CP949). Only the suffix of `filename` is used (never as a path).
    `mapping` renames columns first; given the template's `variables`, the columns are checked against them."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in SUFFIXES:
        raise UploadError(msg("upload.suffix", name=filename))
    if len(data) > max_bytes:
        raise UploadError(msg("upload.size", size=len(data), limit=max_bytes))
    text = decode_text(data)
    if "\x00" in text:
        raise UploadError(msg("upload.binary"))
    rows: Iterable[dict]
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise UploadError(msg("upload.header"))
        reader.fieldnames = [str(f).strip() for f in reader.fieldnames]  # "검색어 , 정답" as typed in Excel
        rows = list(reader)
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise UploadError(msg("upload.json", line=i, error=e.msg)) from None
    columns = list(dict.fromkeys(str(k) for r in rows if isinstance(r, dict) for k in (
        r["inputs"] if isinstance(r.get("inputs"), dict) else r)))
    items = []
    for n, row in enumerate(rows, 1):
        if n > max_items:
            raise UploadError(msg("upload.too_many", n=max_items))
        items.append(_item(_mapped(row, mapping or {}), n))
    if not items:
        raise UploadError(msg("upload.empty"))
    if variables is not None:
        if isinstance(rows[0], dict) and isinstance(rows[0].get("inputs"), dict):
            columns += [k for k in RESERVED if k in rows[0]]
        _check_columns(items, variables, columns)
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


_SCORING = threading.Lock()  # Kiwi (ROUGE-L's morphemes) is not known to be thread-safe: one scorer at a time


def _score_locked(item: dict, output: str, spec: AppSpec | None) -> dict[str, float]:
    with _SCORING:
        return score(item, output, spec)


async def scored(item: dict, output: str, spec: AppSpec | None = None) -> dict[str, float]:
    """`score` in a worker thread: Kiwi's morpheme analysis is CPU work that would stall every other request
    on the event loop while it runs."""
    return await anyio.to_thread.run_sync(_score_locked, item, output, spec)


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
                    concurrency: int = 2, on_done: Callable[[dict], None] | None = None,
                    stop: Callable[[], bool] | None = None) -> list[dict]:
    """Each item through the version; an item whose inputs miss a variable, or whose call fails, is an error row.
    `on_done(row)` after each item (a job's progress); once `stop()` is true, items not started yet are skipped
    (rows with `skipped`): a cancelled run stops between items."""
    sem = asyncio.Semaphore(concurrency)

    async def one(item: dict) -> dict:
        row = {"id": item["id"], "inputs": item["inputs"], "expected": item.get("expected"), "output": "",
               "scores": {}, "error": "", "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0,
               "input_chars": 0}
        try:
            async with sem:
                if stop is not None and stop():
                    row["skipped"] = True
                    return row
                out = await run_once(client, spec, item["inputs"], model)
        except KollmError as e:
            row["error"] = str(e)
        else:
            row.update(output=out.output, error=out.error, latency_ms=out.latency_ms, input_chars=out.input_chars,
                       prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens)
            if not out.error:
                row["scores"] = await scored(item, out.output, spec)
        if on_done is not None:
            on_done(row)
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

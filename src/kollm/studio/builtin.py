"""The built-in templates (검색어 교정, 쇼핑 리뷰 요약, 쇼핑 기획전 문구, 회의록 요약, 영수증 정리), each a JSON
spec with a project-written Korean test set (JSONL, 30-40 items) next to it in `builtin/`. 회의록 요약's
`transcript` and 영수증 정리's `receipt` are the variables a recording or a receipt photo fills (transcribed or
OCR'd first); their test sets hold the text."""

from __future__ import annotations

import json
from importlib import resources

from kollm.errors import KollmError
from kollm.studio.apps import AppSpec
from kollm.studio.testsets import _item

TEMPLATES = ("search-query-correction", "review-summary", "promo-copy", "meeting-minutes", "receipt-json")


def _file(name: str) -> str:
    return (resources.files("kollm.studio") / "builtin" / name).read_text(encoding="utf-8")


def template(name: str) -> dict:
    """{"name", "description", "spec": AppSpec}; `name` must be one of TEMPLATES (never a path)."""
    if name not in TEMPLATES:
        raise KollmError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")
    t = json.loads(_file(f"{name}.json"))
    return {**t, "spec": AppSpec.from_dict(t["spec"])}


def builtin_items(name: str) -> list[dict]:
    if name not in TEMPLATES:
        raise KollmError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")
    rows = [json.loads(line) for line in _file(f"{name}.jsonl").splitlines() if line.strip()]
    return [_item(r, i) for i, r in enumerate(rows, 1)]

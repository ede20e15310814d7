"""The project-written Korean smoke sets: they parse, are NFC, have the promised shape, and their own checks pass."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

import kollm.eval
from kollm.metrics import char_edit_distance, exact_match, has_pii, keywords_present, length_ok

DATA = Path(kollm.eval.__file__).parent / "tasks" / "data"

FIELDS = {
    "sentiment.jsonl": {"id", "text", "label"},
    "topic.jsonl": {"id", "title", "label"},
    "sts.jsonl": {"id", "sentence1", "sentence2", "score", "label"},
    "qa.jsonl": {"id", "title", "context", "question", "answers"},
    "query_correction.jsonl": {"id", "query", "target"},
    "query_correction_heldout.jsonl": {"id", "typo", "correct", "error_type"},
    "review_summary.jsonl": {"id", "review", "summary"},
    "promo_copy.jsonl": {"id", "product", "event", "keywords", "min_chars", "max_chars", "example"},
}
TOPICS = {"IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"}


def load(name: str) -> list[dict]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def test_no_unexpected_files():
    assert {p.name for p in DATA.glob("*.jsonl")} == set(FIELDS)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_file_shape(name):
    rows = load(name)
    assert len(rows) >= 100
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), "ids must be unique"
    for r in rows:
        assert set(r) == FIELDS[name], r["id"]
        for s in strings(r):
            assert s == unicodedata.normalize("NFC", s), f"{r['id']}: not NFC"
            assert s == s.strip() and s, f"{r['id']}: empty or padded string"


def test_sentiment_balanced():
    labels = Counter(r["label"] for r in load("sentiment.jsonl"))
    assert set(labels) == {0, 1}
    assert abs(labels[0] - labels[1]) <= 4


def test_topic_labels():
    rows = load("topic.jsonl")
    labels = Counter(r["label"] for r in rows)
    assert set(labels) == TOPICS
    assert len(rows) >= 105 and min(labels.values()) >= 15
    assert len({r["title"] for r in rows}) == len(rows)


def test_sts_scores_and_labels():
    rows = load("sts.jsonl")
    for r in rows:
        assert isinstance(r["score"], float) and 0.0 <= r["score"] <= 5.0
        assert round(r["score"], 1) == r["score"]
        assert r["label"] == int(r["score"] >= 3.0), r["id"]
    buckets = Counter(min(int(r["score"]), 4) for r in rows)  # 0-1, 1-2, 2-3, 3-4, 4-5
    assert set(buckets) == {0, 1, 2, 3, 4} and min(buckets.values()) >= 10


def test_qa_offsets_exact():
    rows = load("qa.jsonl")
    assert len({r["context"] for r in rows}) >= 20
    for r in rows:
        answers = r["answers"]
        assert set(answers) == {"text", "answer_start"}
        assert len(answers["text"]) == len(answers["answer_start"]) >= 1
        for text, start in zip(answers["text"], answers["answer_start"], strict=True):
            assert r["context"][start : start + len(text)] == text, r["id"]


def test_query_correction_mostly_changes_the_query():
    rows = load("query_correction.jsonl")
    unchanged = sum(r["query"] == r["target"] for r in rows)
    assert 5 <= unchanged <= len(rows) // 5
    # a few queries differ only in spacing, which the spacing-insensitive match forgives; most do not
    assert sum(exact_match(r["query"], r["target"]) == 0.0 for r in rows) >= len(rows) * 0.7
    assert all(char_edit_distance(r["query"], r["target"]) > 0 for r in rows if r["query"] != r["target"])
    assert any(r["query"].isascii() and not r["target"].isascii() for r in rows), "한/영 keyboard slips expected"


def test_review_summaries_are_one_sentence():
    for r in load("review_summary.jsonl"):
        assert len(r["summary"]) < len(r["review"]), r["id"]
        assert r["summary"].count(". ") == 0, r["id"]


def test_promo_examples_pass_their_checks():
    for r in load("promo_copy.jsonl"):
        assert isinstance(r["keywords"], list) and r["keywords"]
        assert 0 < r["min_chars"] < r["max_chars"]
        assert length_ok(r["example"], r["min_chars"], r["max_chars"]), r["id"]
        assert keywords_present(r["example"], r["keywords"]), r["id"]
        assert not has_pii(r["example"]), r["id"]

"""Each reader on a fixture made here; bad input is counted per reason, never fatal."""

from __future__ import annotations

import bz2
import gzip
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from kollm.data.mediawiki import strip_wiki_markup
from kollm.data.sources import iter_documents

DOCS = ["첫 번째 문서입니다. 한국어 텍스트.", "두 번째 문서입니다.", "세 번째 문서."]


def _read(path, **kw):
    problems: Counter = Counter()
    docs = list(iter_documents(path, lambda reason, msg: problems.update([reason]), **kw))
    return docs, problems


def _jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def test_jsonl_plain_gz_zst(tmp_path):
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(DOCS)]
    (tmp_path / "a.jsonl").write_bytes(_jsonl_bytes(rows))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(_jsonl_bytes(rows)))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl_bytes(rows)))
    for name in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst"):
        docs, problems = _read(tmp_path / name)
        assert [d["text"] for d in docs] == DOCS and [d["id"] for d in docs] == ["d0", "d1", "d2"]
        assert docs[0]["source"].endswith(name) and not problems


def test_bad_lines_are_counted_and_good_ones_kept(tmp_path):
    bad = b'{"text": "\xff\xfe broken"}\n{not json\n{"title": "x"}\n'
    raw = _jsonl_bytes([{"text": DOCS[0]}]) + bad + _jsonl_bytes([{"text": DOCS[1]}])
    (tmp_path / "bad.jsonl").write_bytes(raw)
    docs, problems = _read(tmp_path / "bad.jsonl")
    assert [d["text"] for d in docs] == DOCS[:2]
    assert problems == Counter({"invalid_utf8": 1, "malformed_json": 1, "no_text_field": 1})


def test_truncated_gz_keeps_docs_before_the_cut(tmp_path):
    rows = [{"text": f"문서 {i} " + "가나다라 " * 50} for i in range(200)]
    blob = gzip.compress(_jsonl_bytes(rows))
    (tmp_path / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    docs, problems = _read(tmp_path / "cut.jsonl.gz")
    assert 0 < len(docs) < 200 and problems["truncated_file"] == 1
    assert docs == [{"id": f"cut.jsonl.gz:{i + 1}", "source": str(tmp_path / "cut.jsonl.gz"), "text": r["text"]}
                    for i, r in enumerate(rows[: len(docs)])]


def test_binary_file_skipped(tmp_path):
    (tmp_path / "x.jsonl").write_bytes(b"\x00\x01\x02PNG\x00" * 100)
    docs, problems = _read(tmp_path / "x.jsonl")
    assert docs == [] and problems == Counter({"binary_file": 1})


def test_txt_blocks_and_whole_file(tmp_path):
    (tmp_path / "a.txt").write_text("첫 문단\n둘째 줄\n\n\n두 번째 문단\n", encoding="utf-8")
    docs, _ = _read(tmp_path / "a.txt")
    assert [d["text"].strip() for d in docs] == ["첫 문단\n둘째 줄", "두 번째 문단"]
    docs, _ = _read(tmp_path / "a.txt", txt_doc_per_file=True)
    assert len(docs) == 1 and "두 번째 문단" in docs[0]["text"]


def test_parquet_text_column(tmp_path):
    pq.write_table(pa.table({"id": ["x", "y", "z"], "text": DOCS, "url": ["u"] * 3}), tmp_path / "f.parquet")
    docs, problems = _read(tmp_path / "f.parquet")
    assert [(d["id"], d["text"]) for d in docs] == list(zip(["x", "y", "z"], DOCS, strict=False)) and not problems
    pq.write_table(pa.table({"content": DOCS}), tmp_path / "g.parquet")
    docs, problems = _read(tmp_path / "g.parquet")
    assert docs == [] and problems == Counter({"no_text_field": 1})


WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="ko">
<page><title>서울특별시</title><ns>0</ns><id>7</id><revision><id>99</id>
<text xml:space="preserve">'''서울특별시'''는 [[대한민국]]의 [[수도 (도시)|수도]]이다.&lt;ref&gt;출처 문헌&lt;/ref&gt;
{{인구|9,586,195}}
== 역사 ==
[[파일:Seoul.jpg|thumb|서울 사진]]
조선의 수도였다.
[[분류:대한민국의 도시]]</text></revision></page>
<page><title>서울</title><ns>0</ns><id>8</id><redirect title="서울특별시" />
<revision><id>100</id><text>#넘겨주기 [[서울특별시]]</text></revision></page>
<page><title>틀:인구</title><ns>10</ns><id>9</id><revision><id>101</id><text>{{{1}}}명</text></revision></page>
</mediawiki>
"""


def test_mediawiki_dump(tmp_path):
    (tmp_path / "kowiki.xml.bz2").write_bytes(bz2.compress(WIKI.encode()))
    docs, problems = _read(tmp_path / "kowiki.xml.bz2")
    assert len(docs) == 1 and docs[0]["id"] == "wiki-7"
    text = docs[0]["text"]
    assert text.startswith("서울특별시\n\n서울특별시는 대한민국의 수도이다.")
    assert "조선의 수도였다." in text
    for junk in ("[[", "'''", "출처 문헌", "thumb", "분류", "{{"):
        assert junk not in text
    assert problems == Counter({"wiki_redirect": 1, "wiki_not_article": 1})
    (tmp_path / "cut.xml.bz2").write_bytes(bz2.compress(WIKI.encode())[:-40])
    docs, problems = _read(tmp_path / "cut.xml.bz2")
    assert problems["truncated_file"] == 1


def test_strip_wiki_markup_keeps_link_text():
    assert strip_wiki_markup("[[부산광역시|부산]]과 [[대구]]") == "부산과 대구"

"""The pure parts: rendering a version into a prompt or chat messages, diffs, test-set parsing and scoring,
the built-in templates, the config."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path

import httpx
import pytest

import kollm
from kollm.errors import KollmError
from kollm.prompts import fill
from kollm.studio.apps import AppSpec, Params, diff, render_chat, render_completion
from kollm.studio.builtin import TEMPLATES, builtin_items, template
from kollm.studio.client import ModelClient, request_body, root_url
from kollm.studio.config import StudioConfig
from kollm.studio.testsets import compare, export, parse_upload, run_items, score, summarize

from .helpers import FakeModel


def _spec(**kw) -> AppSpec:
    return AppSpec(template="검색어: {{query}}\n교정:", instruction="오타를 고치세요.",
                   examples=[{"inputs": {"query": "유모챠"}, "output": "유모차"}], **kw)


def test_fill_replaces_variables_once_and_names_missing_ones():
    assert fill("{{a}} 와 {{ b }} 그리고 {{a}}", {"a": "1", "b": "{{a}}"}) == "1 와 {{a}} 그리고 1"
    assert fill("{{검색어}}", {"검색어": "유모차"}) == "유모차"  # Korean variable names
    with pytest.raises(KollmError, match="missing input 'b'"):
        fill("{{a}} {{b}}", {"a": "1"})
    assert fill("{{a}} {{b}}", {"a": "1"}, strict=False) == "1 "


def test_render_completion_and_chat():
    spec = _spec()
    assert render_completion(spec, {"query": "노트븍"}) == ("오타를 고치세요.\n\n검색어: 유모챠\n교정: 유모차\n\n"
                                                             "검색어: 노트븍\n교정:")
    assert render_chat(spec, {"query": "노트븍"}) == [
        {"role": "system", "content": "오타를 고치세요."},
        {"role": "user", "content": "검색어: 유모챠\n교정:"}, {"role": "assistant", "content": "유모차"},
        {"role": "user", "content": "검색어: 노트븍\n교정:"}]
    assert render_completion(AppSpec(template="{{q}}\n"), {"q": "a"}) == "a\n"


def test_spec_checks_and_round_trip():
    spec = _spec(params=Params(stop=["\n"], top_k=40))
    assert AppSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.variables() == ["query"]
    for bad, words in [(AppSpec(template=""), "template is empty"), (AppSpec(template="x"), "no {{variable}}"),
                       (AppSpec(mode="x"), "mode"), (AppSpec(params=Params(top_p=0)), "top-p"),
                       (AppSpec(params=Params(stop=list("abcde"))), "at most 4"),
                       (AppSpec(json_schema="[1"), "not valid JSON")]:
        with pytest.raises(KollmError, match=words):
            bad.check()


def test_diff_is_readable():
    a, b = _spec(), _spec(params=Params(temperature=0.2))
    lines = diff(a, b, "v1", "v2")
    assert "-temperature: model default" in lines and "+temperature: 0.2" in lines and lines[0] == "--- v1"
    assert diff(a, a) == []
    assert all(line.startswith(("+", "@", "-")) for line in diff(None, a))


def test_request_body_sends_only_what_is_set():
    spec = _spec()
    body = request_body(spec, "p", "", stream=False)
    assert "top_k" not in body and "repetition_penalty" not in body and "stop" not in body and "model" not in body
    # no temperature or top-p of its own: the server applies the model's generation_config.json
    assert "temperature" not in body and "top_p" not in body
    spec.params = Params(temperature=0.0, top_p=1.0)  # greedy is an app's choice, and 0 is sent
    body = request_body(spec, "p", "", stream=False)
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0
    # a version saved before the default was "the model's" holds its numbers, and they are still sent
    old = AppSpec.from_dict({**_spec().to_dict(), "params": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 128}})
    assert request_body(old, "p", "", stream=False)["temperature"] == 0.7 and old.params.top_p == 0.9
    spec.params = Params(top_k=5, repetition_penalty=1.2, stop=["\n"])
    spec.json_schema = '{"type": "object"}'
    body = request_body(spec, [{"role": "user", "content": "x"}], "m", stream=True)
    assert body["top_k"] == 5 and body["repetition_penalty"] == 1.2 and body["stop"] == ["\n"]
    assert body["model"] == "m" and body["stream_options"] == {"include_usage": True}
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert root_url("http://h:1/v1/") == "http://h:1" and root_url("http://h:1") == "http://h:1"


def test_parse_upload_csv_and_jsonl():
    items = parse_upload("t.CSV", b"id,query,expected,contains\n1,a,b,x|y\n,c,,\n")
    assert items[0] == {"id": "1", "inputs": {"query": "a"}, "expected": "b", "contains": ["x", "y"], "regex": None,
                        "is_json": False}
    assert items[1]["id"] == "2" and items[1]["expected"] is None
    items = parse_upload("t.jsonl", b'{"inputs": {"q": 1}, "expected": "b", "is_json": "true", "regex": "^b"}\n')
    assert items[0]["inputs"] == {"q": "1"} and items[0]["is_json"] and items[0]["regex"] == "^b"
    with pytest.raises(KollmError, match="입력 열을 가진 객체"):
        parse_upload("t.jsonl", b"[1, 2]\n")
    with pytest.raises(KollmError, match="머리글 행이 없습니다"):
        parse_upload("t.csv", b"")


def test_scores_use_the_eval_metrics():
    item = {"expected": "유모차 추천", "contains": ["유모차"], "regex": "추천$", "is_json": False}
    s = score(item, "유모차추천")
    assert s["exact"] == 1.0 and s["contains"] == 1.0 and s["regex"] == 1.0  # spacing-insensitive
    assert 0 < s["rouge_l"] <= 1 and 0 < s["chrf"] <= 1
    s = score({"expected": None, "is_json": True}, '{"a": 1}')
    assert s == {"json": 1.0}
    assert score({"expected": "x"}, "y", _spec(json_schema='{"type": "object"}'))["json"] == 0.0


def test_summaries_comparisons_and_exports():
    a = [{"id": "1", "inputs": {"q": "x"}, "expected": "y", "output": "y", "scores": {"exact": 1.0}, "error": "",
          "latency_ms": 10.0},
         {"id": "2", "inputs": {"q": "x"}, "expected": "y", "output": "n", "scores": {"exact": 0.0}, "error": "",
          "latency_ms": 30.0}]
    b = [{**a[0], "output": "=HYPERLINK(1)", "scores": {"exact": 0.0}}, {**a[1], "scores": {"exact": 1.0}}]
    assert summarize(a) == {"items": 2, "errors": 0, "exact": 0.5, "latency_ms": 20.0}
    rows = compare(a, b)
    assert [r["marks"]["exact"] for r in rows] == ["regression", "gain"] and rows[0]["regressed"]
    assert "'=HYPERLINK(1)" in export(b, "csv")  # no spreadsheet formulas from model output
    assert json.loads(export(a, "jsonl").splitlines()[1])["id"] == "2"


@pytest.mark.parametrize("name", TEMPLATES)
def test_builtin_templates_have_korean_test_sets(name):
    t = template(name)
    items = builtin_items(name)
    assert len(items) >= 30 and len({i["id"] for i in items}) == len(items)
    spec = t["spec"].check()
    for it in items:
        render_completion(spec, it["inputs"])  # every item fills every variable
        assert it["expected"] and any("\uac00" <= ch <= "\ud7a3" for ch in it["expected"])
    example_inputs = [json.dumps(e["inputs"], sort_keys=True) for e in spec.examples]
    assert not {json.dumps(i["inputs"], sort_keys=True) for i in items} & set(example_inputs)  # no leakage
    assert {"검색어 교정", "쇼핑 리뷰 요약", "쇼핑 기획전 문구", "회의록 요약", "영수증 정리"} >= {t["name"]}


def test_unknown_template_names_are_refused():
    for bad in ("../builtin/promo-copy", "promo-copy.json", "x"):
        with pytest.raises(KollmError, match="unknown template"):
            template(bad)


def test_run_items_marks_failures_per_item():
    fake = FakeModel()
    client = ModelClient("http://m.test/v1", transport=httpx.MockTransport(fake.handler))
    items = parse_upload("t.jsonl", b'{"query": "a", "expected": "\xec\x9c\xa0"}\n{"other": "b"}\n')
    fake.reply = "유"
    rows = asyncio.run(run_items(client, _spec(), items))
    assert rows[0]["scores"]["exact"] == 1.0 and rows[0]["error"] == ""
    assert "missing input 'query'" in rows[1]["error"] and rows[1]["scores"] == {}


def test_config_from_recipe_and_database_urls(tmp_path):
    from kollm.config import read_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('[studio]\nmodel_url = "http://x:9/v1"\nport = 9100\n')
    cfg = read_recipe(recipe, "studio", {"studio": StudioConfig})["studio"]
    assert cfg.model_url == "http://x:9/v1" and cfg.port == 9100
    recipe.write_text("[studio]\nportt = 1\n")
    with pytest.raises(KollmError, match="unknown recipe key"):
        read_recipe(recipe, "studio", {"studio": StudioConfig})
    assert StudioConfig(db="postgresql://u:p@h/d").url() == "postgresql+psycopg://u:p@h/d"
    assert StudioConfig(data=str(tmp_path)).url() == f"sqlite:///{tmp_path}/studio.db"


def _imports(package: Path, prefix: str) -> dict[str, set[str]]:
    """Each module of `package` -> the kollm modules it imports, anywhere in it (a lazy import inside a function
    is still an edge: hiding a circle in a function body does not remove it)."""
    graph = {}
    for path in package.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join((prefix, *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        is_pkg = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package this module is in
                    parts = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                    base = ".".join([*parts, *([base] if base else [])])
                deps.add(base)
                deps |= {f"{base}.{a.name}" for a in node.names}  # `from kollm.studio import api`
        graph[name] = {d for d in deps if d.startswith("kollm")}
    return graph


def test_studio_modules_import_no_circle_and_nothing_from_serve():
    src = Path(kollm.__file__).parent
    graph = _imports(src / "studio", "kollm.studio")
    assert not {d for deps in graph.values() for d in deps if d.startswith("kollm.serve")}
    assert not {d for deps in _imports(src / "serve", "kollm.serve").values() for d in deps
                if d.startswith("kollm.studio")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m] & graph.keys()):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join([*path, m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])

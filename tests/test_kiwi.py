"""One Kiwi per process (kollm.kiwi): every stage that analyses morphemes shares it, none loads its own."""

from __future__ import annotations

import ast
from pathlib import Path

from kollm.kiwi import kiwi

SRC = Path(__file__).resolve().parents[1] / "src" / "kollm"


def test_one_instance_per_thread_count():
    assert kiwi() is kiwi(0) is kiwi(threads=0) is kiwi(-1)
    assert [t.form for t in kiwi().tokenize("학교에 갔다")][:2] == ["학교", "에"]


def test_only_kollm_kiwi_imports_kiwipiepy():
    importers = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "kiwipiepy" for n in names):
                importers.append(path.relative_to(SRC).as_posix())
    assert sorted(set(importers)) == ["kiwi.py"]

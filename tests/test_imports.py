"""The architecture's import rules, checked on the source: no module imports itself back through others (no
circles), and a stage imports only the stages before it (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import kollm

SRC = Path(kollm.__file__).parent
STAGES = ["data", "tokenizer", "model", "train", "interop", "tune", "serve", "eval", "studio"]


def graph() -> dict[str, set[str]]:
    """module -> the kollm modules it imports (at any level of the file: lazy imports count)."""
    names = {".".join(("kollm", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in names.items():
        out = edges.setdefault(name, set())
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import submodule` depends on the submodule; `from pkg import name`, on pkg itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
            else:
                continue
            out |= {t for t in targets if t in names and t != name}
    return edges


def test_no_import_circles():
    edges, state, cycles = graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*path[path.index(n):], n]))
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_stages_import_only_earlier_stages():
    rank = {s: i for i, s in enumerate(STAGES)}
    bad = []
    for m, targets in graph().items():
        parts = m.split(".")
        if len(parts) < 2 or parts[1] not in rank:
            continue
        for t in targets:
            tp = t.split(".")
            if len(tp) > 1 and tp[1] in rank and rank[tp[1]] > rank[parts[1]]:
                bad.append(f"{m} imports {t}")
    assert not bad, bad

"""A tuning run from its config: gather the examples (the user's files, and synthesized typo pairs when the recipe
asks for them), then tune."""

from __future__ import annotations

from pathlib import Path

from kollm.data.config import DataConfig
from kollm.data.typos import clean_queries_from_corpus, make_pairs
from kollm.files import write_jsonl
from kollm.tune.config import TuneConfig
from kollm.tune.examples import read_rows
from kollm.tune.loop import TuneResult, check, check_model, tune

TYPO_TEMPLATE = "검색어: {{typo}}\n교정:"  # the Studio's query-correction template, on a typo pair's fields


def typo_rows(cfg: TuneConfig, data: DataConfig, out: Path) -> list:
    """(typo -> correct) pairs from the shipped clean queries, written to OUT/data/typos.jsonl (to look at) and
    read back as examples with the query-correction template."""
    path = out / "data" / "typos.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, make_pairs(clean_queries_from_corpus(), data))
    return list(read_rows([path], cfg.template or TYPO_TEMPLATE, "correct"))


def run_tune(cfg: TuneConfig, model: str | Path, out: str | Path, resume: bool = False,
             data: DataConfig | None = None, show: bool = True) -> TuneResult:
    out = Path(out).expanduser()
    check(cfg)  # the cheap checks before reading any data
    check_model(Path(model).expanduser())
    rows = list(read_rows(cfg.data, cfg.template, cfg.target)) if cfg.data or not cfg.typos else []
    if cfg.typos:
        rows += typo_rows(cfg, data or DataConfig(), out)
    return tune(cfg, model, out, resume, rows=rows, show=show)

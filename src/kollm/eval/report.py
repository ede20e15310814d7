"""report.md and plots from one or more runs' results.json: the HyperCLOVA / Polyglot-Ko table layout.

One table per task and metric: models as rows, shot counts as columns, value ± stderr. Plots: per task, its
first metric against shots (one line per model: the k-shot sweep; multiple-choice tasks add their macro-F1 as a
dashed line), and all tasks' first metrics side by side at the largest shot count (the model comparison).

The first metric of a task (lm-eval's metric_list order) is its headline: accuracy for the multiple-choice
tasks, because HyperCLOVA's NSMC anchor is an accuracy; their macro-F1 (Polyglot-Ko's KoBEST measure) is in
the tables and the k-shot plots beside it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from kollm.errors import KollmError
from kollm.files import atomic_path, write_text

SMOKE_NOTE = ("The `kollm_*` tasks' shipped data are **smoke sets, not benchmarks**: about 100 original Korean "
              "items each, written for kollm to check that a task loads, prompts and scores end to end. Their "
              "scores say nothing about how a model compares with published results; point the tasks at the "
              "real datasets (`--tasks kollm_sentiment=ratings_test.txt`, a HF id, or lm-eval's own `kobest_*`, "
              "`kmmlu`, `haerae`) for that.")
ANCHORS = ("For context, published few-shot numbers on the real benchmarks: HyperCLOVA (Kim et al., 2021) "
           "few-shot NSMC accuracy 83.9 (1.3B) ... 88.2 (82B); Polyglot-Ko model cards, KoBEST COPA F1 0.72 (1.3B) "
           "... 0.84 (12.8B, 50-shot). The multiple-choice tasks below report both measures: acc and macro-F1 (f1).")
MC_F1_NOTE = ("macro-F1 over the answer classes, as lm-eval's `kobest_*` tasks report it: a model that always gives "
              "the same answer gets accuracy at the majority rate but a low F1. lm-eval computes no stderr for it.")
# Fonts with Hangul, tried after matplotlib's default: model and task names may be Korean (fonts-nanum on Debian)
HANGUL_FONTS = ("NanumGothic", "Noto Sans CJK KR", "Noto Sans CJK JP", "Noto Sans KR", "UnDotum", "Malgun Gothic",
                "AppleGothic")

Cell = tuple[float, float | None]  # value, stderr


def read_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json" if Path(run_dir).is_dir() else Path(run_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KollmError(f"cannot read {path} ({type(e).__name__}); pass a folder written by kollm eval --tasks"
                         ) from None
    if not isinstance(doc, dict) or "runs" not in doc:
        raise KollmError(f"{path} is not a kollm eval results.json (no `runs`); pass a kollm eval --out folder")
    return doc


def collect(docs: list[dict]) -> tuple[dict[tuple[str, str], dict[str, dict[int, Cell]]], list[str], list[int],
                                        dict[str, str]]:
    """{(task, metric): {model: {shots: (value, stderr)}}}, models in order, shot counts, and each model's backend."""
    table: dict[tuple[str, str], dict[str, dict[int, Cell]]] = defaultdict(lambda: defaultdict(dict))
    models: list[str] = []
    shots: set[int] = set()
    backends: dict[str, str] = {}
    for doc in docs:
        for run in doc["runs"]:
            model, k = run["model"], int(run["shots"])
            models += [model] if model not in models else []
            backends[model] = run.get("backend", "?")
            shots.add(k)
            results = run["lm_eval"].get("results", {})
            order = run["lm_eval"].get("higher_is_better", {})
            for task, vals in results.items():
                metric_names = list(order.get(task, {})) or [m.split(",")[0] for m in vals if "," in m]
                for metric in metric_names:
                    key = next((m for m in vals if m.split(",")[0] == metric and "_stderr" not in m), None)
                    if key is None or not isinstance(vals[key], (int, float)):
                        continue
                    se = vals.get(key.replace(",", "_stderr,", 1))
                    table[(task, metric)][model][k] = (float(vals[key]), float(se) if isinstance(se, (int, float))
                                                        else None)
    return table, models, sorted(shots), backends


def output_types(docs: list[dict]) -> dict[str, str]:
    """Each task's lm-eval output_type (multiple_choice, generate_until, ...), from the runs' own configs."""
    types: dict[str, str] = {}
    for doc in docs:
        for run in doc["runs"]:
            for task, cfg in (run["lm_eval"].get("configs") or {}).items():
                if isinstance(cfg, dict) and cfg.get("output_type"):
                    types[task] = cfg["output_type"]
    return types


def _cell(c: Cell | None) -> str:
    if c is None:
        return "—"
    return f"{c[0]:.4f} ± {c[1]:.4f}" if c[1] is not None else f"{c[0]:.4f}"


def markdown(docs: list[dict], plots: list[str]) -> str:
    table, models, shots, backends = collect(docs)
    types = output_types(docs)
    limits = sorted({str(d.get("limit")) for d in docs})
    lines = ["# kollm eval report", "", SMOKE_NOTE, "", ANCHORS, "",
             f"Models: {', '.join(f'`{m}` ({backends[m]})' for m in models)}. Shots: {', '.join(map(str, shots))}. "
             f"Items per task: {'all' if limits == ['None'] else ', '.join(limits)} (limit).", ""]
    for task in sorted({t for t, _ in table}):
        lines += [f"## {task}", ""]
        for (t, metric), rows in sorted(table.items()):
            if t != task:
                continue
            note = f": {MC_F1_NOTE}" if metric == "f1" and types.get(task) == "multiple_choice" else ""
            lines += [f"**{metric}**{note}", "", "| model | " + " | ".join(f"{k}-shot" for k in shots) + " |",
                      "|---|" + "---:|" * len(shots)]
            lines += [f"| {m} | " + " | ".join(_cell(rows.get(m, {}).get(k)) for k in shots) + " |"
                      for m in models if m in rows]
            lines.append("")
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _first_metrics(table: dict) -> dict[str, str]:
    first: dict[str, str] = {}
    for task, metric in table:  # insertion order = lm-eval's metric_list order
        first.setdefault(task, metric)
    return first


def _hangul_rc() -> dict:
    """matplotlib settings that draw Hangul: the first installed Korean font as a fallback after DejaVu Sans
    (which has Latin and digits but no Hangul: Korean labels would be boxes). Empty when none is installed."""
    from matplotlib import font_manager

    def first() -> str | None:
        installed = {f.name for f in font_manager.fontManager.ttflist}
        return next((f for f in HANGUL_FONTS if f in installed), None)

    korean = first()
    if korean is None:
        # matplotlib scans the system fonts once, into a cache it never refreshes: a Korean font installed after
        # that (apt-get install fonts-nanum) is missing from it until the files are added by hand
        stems = {f.replace(" ", "") for f in HANGUL_FONTS} | {"NotoSansCJK-Regular", "NotoSansCJKkr-Regular"}
        for path in font_manager.findSystemFonts():
            if Path(path).stem in stems:
                font_manager.fontManager.addfont(path)
        korean = first()
    return {"font.family": ["DejaVu Sans", korean]} if korean else {}


def plot(docs: list[dict], out: Path) -> list[str]:
    """The k-shot sweep per task and the model comparison, as PNGs in `out`; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    with plt.rc_context(_hangul_rc()):
        return _plot(docs, out, plt)


def _plot(docs: list[dict], out: Path, plt: Any) -> list[str]:
    table, models, shots, _ = collect(docs)
    types = output_types(docs)
    first = _first_metrics(table)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # models' points side by side at each shot count, so error bars of equal scores do not hide each other
    span = 0.08 * (shots[-1] - shots[0] or 1)
    offset = {m: (i - (len(models) - 1) / 2) * span / max(len(models), 1) for i, m in enumerate(models)}
    names = []
    for task, metric in sorted(first.items()):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        f1 = (task, "f1") if metric != "f1" and types.get(task) == "multiple_choice" else None
        for i, m in enumerate(models):
            color = colors[i % len(colors)]
            pts = sorted(table[(task, metric)].get(m, {}).items())
            if pts:
                ax.errorbar([k + offset[m] for k, _ in pts], [c[0] for _, c in pts], yerr=[c[1] or 0 for _, c in pts],
                            marker="o", capsize=3, color=color, label=f"{m} ({metric})")
            pts = sorted(table[f1].get(m, {}).items()) if f1 in table else []
            if pts:
                ax.plot([k + offset[m] for k, _ in pts], [c[0] for _, c in pts], ls="--", marker="s", ms=4,
                        color=color, alpha=0.8, label=f"{m} (macro-F1)")
        ax.set(title=task, xlabel="shots", ylabel=metric if not f1 else f"{metric} (solid), macro-F1 (dashed)",
               xticks=shots)
        ax.grid(alpha=0.3)
        # below the axes: inside, the legend covered points and error bars; headline entries first (matplotlib
        # lists plain lines before error-bar containers), so each model's two entries sit side by side
        handles, labels = ax.get_legend_handles_labels()
        pairs = sorted(zip(handles, labels, strict=True), key=lambda hl: hl[1].endswith("(macro-F1)"))
        if pairs:
            ax.legend(*zip(*pairs, strict=True), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                      ncol=2 if f1 else min(len(pairs), 3), frameon=False)
        names.append(_save(fig, out, f"kshot_{_safe(task)}.png"))
    if first:
        top = shots[-1]
        tasks = sorted(first)
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(tasks) + 2), 4))
        width = 0.8 / max(len(models), 1)
        for i, m in enumerate(models):
            cells = [table[(t, first[t])].get(m, {}).get(top) for t in tasks]
            bars = ax.bar([j + i * width for j in range(len(tasks))], [c[0] if c else 0 for c in cells], width,
                          yerr=[(c[1] or 0) if c else 0 for c in cells], capsize=2, label=m,
                          color=colors[i % len(colors)])
            # the value on every bar: a score of 0 is otherwise indistinguishable from a missing one ("n/a")
            ax.bar_label(bars, labels=[f"{c[0]:.2f}" if c else "n/a" for c in cells], fontsize=6, padding=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))],
                      [f"{t.removeprefix('kollm_')}\n({first[t]})" for t in tasks], fontsize=8)
        ax.set(title=f"models at {top}-shot (each task's headline metric)", ylabel="score")
        ax.margins(y=0.15)
        ax.legend(fontsize=8)
        names.append(_save(fig, out, "models.png"))
    return names


def _save(fig: Any, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(out / name) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # "tight": keeps a legend below the axes
    plt.close(fig)
    return name


def write_report(docs: list[dict], out: str | Path) -> Path:
    out = Path(out)
    plots = plot(docs, out)
    write_text(out / "report.md", markdown(docs, plots))
    return out / "report.md"


def compare(run_dirs: list[Path], out: Path | None) -> Path:
    """`kollm eval compare`: one report across several runs (their models and shot counts merged)."""
    if not run_dirs:
        raise KollmError("kollm eval compare needs one or more RUN_DIR (folders written by kollm eval --tasks)")
    docs = [read_results(d) for d in run_dirs]
    return write_report(docs, out or run_dirs[0])

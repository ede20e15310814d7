"""An app's training data: its few-shot examples, its test sets' items and the feedback people gave on outputs
(marked good, or corrected), optionally with synthesized typo pairs (query correction), split into what tuning may
use and what is held out for scoring the tuned version; exported in `kollm tune`'s jsonl shapes.

The split is by a hash of each test-set item's inputs (stable: adding rows never moves one), HELD_OUT of them held
out. Every other row trains, unless it would leak a held-out item: the same inputs, or the same answer (every typo
of one query lands on the held-out side with it). Held-out rows are never written to a training file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from kollm.data.normalize import nfc
from kollm.errors import KollmError
from kollm.split import unit_hash
from kollm.studio.apps import AppSpec
from kollm.studio.db import App, Feedback, TestSet
from kollm.studio.messages import msg

HELD_OUT = 0.5  # share of test-set items held out for scoring; changing it reshuffles every app's split
SOURCES = ("examples", "tests", "feedback", "typos")


@dataclass
class DataRow:
    source: str  # examples | tests | feedback | typos
    where: str  # where it came from, for people: "test set 'x' item 3", "feedback #4", ...
    inputs: dict[str, str]
    expected: str
    split: str = "train"  # train | held-out | excluded
    why: str = ""  # for held-out and excluded rows

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingData:
    rows: list[DataRow] = field(default_factory=list)

    def of(self, split: str) -> list[DataRow]:
        return [r for r in self.rows if r.split == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """{source: {split: rows}} for every source present."""
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            c = out.setdefault(r.source, {"train": 0, "held-out": 0, "excluded": 0})
            c[r.split] += 1
        return out


def _canon(inputs: dict) -> str:
    return json.dumps({str(k): nfc(str(v)).strip() for k, v in sorted(inputs.items())}, ensure_ascii=False)


def held_out(inputs: dict) -> bool:
    """Whether a test-set item with these inputs is held out (scored, never trained on)."""
    return unit_hash(f"kollm-studio:{_canon(inputs)}") < HELD_OUT


def _answer(text: str) -> str:
    return " ".join(nfc(text).split())


def typo_pairs(variable: str) -> list[DataRow]:
    """(typo -> correct) pairs from the clean queries kollm ships, as `kollm tune`'s query-correction recipe makes
    them (data/typos.py, the recipe's rates), on the app's one input variable."""
    from kollm.data.config import DataConfig
    from kollm.data.typos import clean_queries_from_corpus, make_pairs

    cfg = DataConfig(typo_pairs_per_query=3, typo_unchanged=0.2, typo_seed=0)
    return [DataRow("typos", "synthesized typo pair", {variable: p["typo"]}, p["correct"])
            for p in make_pairs(clean_queries_from_corpus(), cfg)]


def gather(s: Session, app: App, spec: AppSpec, sources: tuple[str, ...] = ("examples", "tests", "feedback"),
           ) -> TrainingData:
    """Every row of the chosen `sources`, each marked train, held-out or excluded (with why)."""
    unknown = [x for x in sources if x not in SOURCES]
    if unknown:
        raise KollmError(msg("training.source", source=unknown[0], choices=", ".join(SOURCES)))
    held: list[DataRow] = []
    rest: list[DataRow] = []
    # test sets first: they decide what is held out, whether or not their training half is used
    for ts in s.scalars(select(TestSet).where(TestSet.app_id == app.id).order_by(TestSet.id)):
        for item in ts.items:
            if item.get("expected") is None:
                continue  # nothing to learn from or score exactly: an item with only checks
            row = DataRow("tests", f"test set {ts.name!r} item {item['id']}", dict(item["inputs"]), item["expected"])
            if held_out(row.inputs):
                row.split, row.why = "held-out", "scores the tuned version"
                held.append(row)
            elif "tests" in sources:
                rest.append(row)
    if "examples" in sources:
        rest += [DataRow("examples", f"few-shot example {i}", dict(ex.get("inputs", {})), str(ex.get("output", "")))
                 for i, ex in enumerate(spec.examples, 1)]
    if "feedback" in sources:
        for f in s.scalars(select(Feedback).where(Feedback.app_id == app.id).order_by(Feedback.id)):
            answer = f.corrected if f.verdict == "corrected" else f.output
            rest.append(DataRow("feedback", f"feedback #{f.id} ({'corrected' if f.verdict == 'corrected' else 'good'}"
                                f", {'run' if f.source == 'run' else 'log'})", dict(f.inputs), answer))
    if "typos" in sources:
        names = spec.variables()
        if len(names) != 1:
            raise KollmError(msg("training.typos"))
        rest += typo_pairs(names[0])
    held_inputs = {_canon(r.inputs) for r in held}
    held_answers = {_answer(r.expected) for r in held}
    for r in rest:
        if not r.expected.strip():
            r.split, r.why = "excluded", "no expected output"
        elif _canon(r.inputs) in held_inputs:
            r.split, r.why = "excluded", "same input as a held-out test item"
        elif _answer(r.expected) in held_answers:
            r.split, r.why = "excluded", "same answer as a held-out test item"
    return TrainingData(held + rest)


def tune_template(spec: AppSpec) -> str:
    """The prompt template `kollm tune` fills for a completion app: the tuned version's prompt exactly (its
    instruction, then the template; no few-shot examples: the tuned model has learned them)."""
    return f"{spec.instruction.strip()}\n\n{spec.template}" if spec.instruction.strip() else spec.template


def tuned_spec(spec: AppSpec, model: str) -> AppSpec:
    """The tuned version: the base version without its few-shot examples, on the tuned model."""
    d = spec.to_dict()
    d.update(examples=[], model=model)
    return AppSpec.from_dict(d).check()


def export_rows(rows: list[DataRow], spec: AppSpec) -> list[dict]:
    """Rows in `kollm tune`'s shapes: {"inputs", "expected"} for a completion app (with `tune_template(spec)` as
    --template), chats ({"messages"}) for a chat app, rendered as the Studio renders the tuned version."""
    if spec.mode == "completion":
        return [{"inputs": r.inputs, "expected": r.expected} for r in rows]
    from kollm.studio.apps import render_chat

    bare = tuned_spec(spec, spec.model)
    return [{"messages": [*render_chat(bare, {**dict.fromkeys(spec.variables(), ""), **r.inputs}),
                          {"role": "assistant", "content": r.expected}]} for r in rows]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

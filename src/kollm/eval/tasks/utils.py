"""Data loading, prompts and scoring for kollm's lm-evaluation-harness tasks (the `kollm_*.yaml` next to this file).

lm-eval imports this file by path (`!function utils.x`), so it must work both under `kollm eval` and under a
plain `lm_eval --include_path <this folder>`. Each task's data comes from `custom_dataset`, not
`dataset_path: json`: `datasets` resolves relative `data_files` against the current directory, so a YAML-relative
path would break as soon as lm_eval runs elsewhere; here the shipped file is found next to this module.

Point a task at other data with `dataset_kwargs` (a YAML that `include`s ours, or `kollm eval --tasks
kollm_sentiment=FILE`): `data_files` = a local .jsonl/.json/.csv/.tsv/.txt/.parquet file (or a
{"test": ..., "fewshot": ...} mapping), or `hf_dataset` (+ `hf_name`) = a Hugging Face dataset id. The public
formats (NSMC, KLUE YNAT/STS, KorQuAD) are mapped onto the shipped fields by each task's `_norm_*`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import datasets

from kollm import metrics
from kollm.errors import KollmError

DATA = Path(__file__).resolve().parent / "data"
# With a single file, the first items are the few-shot pool and the rest the test set; 16 keeps up to 5 shots
# drawn from a varied pool while leaving ~90 scored items per smoke set.
FEWSHOT_POOL = 16
TOPICS = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]  # KLUE YNAT's label order
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet"}
# what each task's `_norm_*` reads from an item, for the error that names a missing or bad field
FIELDS = {
    "sentiment": "text (or document) and label (0/1)",
    "topic": f"title and label (one of {'/'.join(TOPICS)}, or its index)",
    "sts": "sentence1, sentence2 and label (0/1; or labels.binary-label, or a score 0-5)",
    "qa": "context, question and answers ({\"text\": [...]}); title optional",
    "query_correction": "query and target",
    "review_summary": "review and summary",
    "promo_copy": "product, event, keywords (a list), min_chars and max_chars; example optional",
}
_FORMATS = {"json": "one JSON object per line", "csv": "a header row, then one item per row",
            "parquet": "a Parquet table"}


def _cause(e: BaseException) -> str:
    """The parser's own message: datasets wraps it in a DatasetGenerationError (one level; below it lie the
    fallback parsers' errors, which say less)."""
    e = e.__cause__ or e.__context__ or e
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


# --- loading ------------------------------------------------------------------------------------------------
def _local(files: str | list | dict) -> datasets.DatasetDict:
    first = next(iter(files.values())) if isinstance(files, dict) else files
    first = first[0] if isinstance(first, list) else first
    suffix = Path(str(first)).suffix.lower()
    if suffix not in _BUILDERS:
        raise KollmError(f"task data {first}: unknown format {suffix!r}; use .jsonl, .json, .csv, .tsv/.txt "
                         "(tab-separated, like NSMC) or .parquet")
    kw = {"delimiter": "\t"} if suffix in (".tsv", ".txt") else {}
    for f in files.values() if isinstance(files, dict) else [files]:
        for p in f if isinstance(f, list) else [f]:
            if not Path(p).is_file():
                raise KollmError(f"task data file {p} not found; pass an existing file in data_files")
            if Path(p).stat().st_size == 0:
                raise KollmError(f"task data file {p} is empty; give a file with at least one item")
    try:
        dd = datasets.load_dataset(_BUILDERS[suffix], data_files=files, **kw)
    except (datasets.exceptions.DatasetsError, ValueError, TypeError) as e:  # bad JSON, a ragged CSV row, ...
        raise KollmError(f"task data {first}: cannot read it as {suffix} ({_cause(e)}); fix the file: "
                         f"{_FORMATS[_BUILDERS[suffix]]}") from None
    return dd


def hub_unreachable_message(dataset_id: str) -> str:
    return (f"dataset {dataset_id!r} must come from the Hugging Face hub, which is unreachable or offline "
            "(HF_HUB_OFFLINE); download it elsewhere and point the task at local files: dataset_kwargs "
            "data_files=FILE in a task YAML, or `kollm eval --tasks TASK=FILE`")


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is on or huggingface.co does not answer within `timeout` (so nothing hangs)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hub(dataset_id: str, name: str | None) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(dataset_id, name)
    except (ConnectionError, OSError) as e:  # offline or not cached: one line, with the way out
        if not hub_reachable():
            raise KollmError(hub_unreachable_message(dataset_id)) from e
        raise KollmError(f"cannot load dataset {dataset_id!r} from the hub ({str(e).splitlines()[0]})") from e


def _splits(dd: datasets.DatasetDict, pool: int, source: str) -> datasets.DatasetDict:
    """{"fewshot", "test"}: named splits when the data has them, else the first `pool` items as shots."""
    if not dd or not any(len(split) for split in dd.values()):
        raise KollmError(f"task data {source}: no items; give a file with at least one item")
    test = next((dd[s] for s in ("test", "validation") if s in dd), None)
    shots = next((dd[s] for s in ("fewshot", "train", "dev") if s in dd), None)
    if test is None or shots is None:
        one = test if test is not None else dd[next(iter(dd))]
        n = min(pool, len(one) // 2)
        return datasets.DatasetDict(fewshot=one.select(range(n)), test=one.select(range(n, len(one))))
    return datasets.DatasetDict(fewshot=shots, test=test)


def _load(task: str, norm: Callable[[dict], dict], data_files: str | list | dict | None = None,
          hf_dataset: str | None = None, hf_name: str | None = None, fewshot_pool: int = FEWSHOT_POOL,
          **_ignored: Any) -> datasets.DatasetDict:
    # `_ignored`: lm-eval passes the task's metadata (version, config_source, model args) as keywords too
    if data_files:
        dd, source = _local(data_files), str(data_files)
    elif hf_dataset:
        dd, source = _hub(hf_dataset, hf_name), f"hub dataset {hf_dataset!r}"
    else:
        source = str(DATA / f"{task}.jsonl")
        dd = _local(source)
    dd = _splits(dd, int(fewshot_pool), source)
    return dd.map(_checked(task, norm, source), remove_columns=[c for c in dd["test"].column_names if c not in ("id",)])


def _checked(task: str, norm: Callable[[dict], dict], source: str) -> Callable[[dict], dict]:
    """`norm`, with a missing field or a bad value as a one-line KollmError naming the item and the fields."""

    def run(d: dict) -> dict:
        try:
            return norm(d)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            what = (f"has no field {e.args[0]!r}" if isinstance(e, KeyError) and e.args
                    else f"has a bad value ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            item = f"item with id {d['id']!r}" if d.get("id") is not None else "an item"
            raise KollmError(f"task data {source}: {item} {what}; kollm_{task} items need {FIELDS[task]}") from None

    return run


# --- public formats onto the shipped fields ----------------------------------------------------------------------
def _norm_sentiment(d: dict) -> dict:  # shipped: text/label; NSMC: document/label
    return {"text": d.get("text") if d.get("text") is not None else d.get("document") or "", "label": int(d["label"])}


def _norm_topic(d: dict) -> dict:  # shipped: label name; KLUE YNAT: label index
    label = d["label"]
    return {"title": d["title"], "label": TOPICS.index(label) if isinstance(label, str) else int(label)}


def _norm_sts(d: dict) -> dict:  # shipped: label 0/1; KLUE STS: labels.binary-label (and real-label)
    if "label" in d and d["label"] is not None:
        label = int(d["label"])
    elif isinstance(d.get("labels"), dict):
        label = int(d["labels"]["binary-label"])
    else:
        label = int(float(d["score"]) >= 3.0)
    return {"sentence1": d["sentence1"], "sentence2": d["sentence2"], "label": label}


def _norm_qa(d: dict) -> dict:  # shipped and KorQuAD 1.0 (HF squad_kor_v1) share the squad layout
    return {"title": d.get("title") or "", "context": d["context"], "question": d["question"],
            "answers": list(d["answers"]["text"])}


def _norm_query(d: dict) -> dict:
    return {"query": d["query"], "target": d["target"]}


def _norm_review(d: dict) -> dict:
    return {"review": d["review"], "summary": d["summary"]}


def _norm_promo(d: dict) -> dict:
    return {"product": d["product"], "event": d["event"], "keywords": list(d["keywords"]),
            "min_chars": int(d["min_chars"]), "max_chars": int(d["max_chars"]), "example": d.get("example") or ""}


load_sentiment = partial(_load, "sentiment", _norm_sentiment)
load_topic = partial(_load, "topic", _norm_topic)
load_sts = partial(_load, "sts", _norm_sts)
load_qa = partial(_load, "qa", _norm_qa)
load_query_correction = partial(_load, "query_correction", _norm_query)
load_review_summary = partial(_load, "review_summary", _norm_review)
load_promo_copy = partial(_load, "promo_copy", _norm_promo)


# --- prompts -------------------------------------------------------------------------------------------------
def qa_doc_to_text(doc: dict) -> str:
    return f"제목: {doc['title']}\n본문: {doc['context']}\n질문: {doc['question']}\n답:"


def qa_doc_to_target(doc: dict) -> str:
    return doc["answers"][0]


def promo_doc_to_text(doc: dict) -> str:
    return (f"상품: {doc['product']}\n기획전: {doc['event']}\n필수 키워드: {', '.join(doc['keywords'])}\n"
            f"길이: {doc['min_chars']}~{doc['max_chars']}자\n홍보 문구:")


# --- scoring (generate_until tasks): one dict of per-item values, lm-eval averages them -------------------------
def _first_line(results: list[str]) -> str:
    return results[0].strip().split("\n")[0].strip() if results else ""


def qa_process_results(doc: dict, results: list[str]) -> dict:
    pred = _first_line(results)
    return {"exact_match": metrics.qa_exact_match(pred, doc["answers"]), "f1": metrics.qa_f1(pred, doc["answers"])}


def query_process_results(doc: dict, results: list[str]) -> dict:
    pred = _first_line(results)
    return {"exact_match": metrics.exact_match(pred, doc["target"]),
            "char_edit_distance": float(metrics.char_edit_distance(pred, doc["target"]))}


def review_process_results(doc: dict, results: list[str]) -> dict:
    pred = _first_line(results)
    return {"rouge_l": metrics.rouge_l(pred, doc["summary"]), "chrf": metrics.chrf(pred, doc["summary"])}


def promo_process_results(doc: dict, results: list[str]) -> dict:
    pred = _first_line(results)
    length = metrics.length_ok(pred, doc["min_chars"], doc["max_chars"])
    keywords = metrics.keywords_present(pred, doc["keywords"])
    no_pii = not metrics.has_pii(pred)
    return {"pass": float(length and keywords and no_pii), "length_ok": float(length),
            "keywords_ok": float(keywords), "no_pii": float(no_pii)}


# --- aggregation (multiple_choice tasks) ---------------------------------------------------------------------
def macro_f1_score(items: list[tuple[int, int]]) -> float:
    """lm-eval aggregation for `metric: f1`: its multiple_choice scoring hands each item over as (gold index,
    argmax index); macro-F1 over the classes seen, as lm-eval's own kobest_* tasks report it. lm-eval computes no
    stderr for a custom aggregation (results.json says "N/A"), so the report shows f1 without ±."""
    return metrics.macro_f1([int(g) for g, _ in items], [int(p) for _, p in items])  # numpy ints -> int

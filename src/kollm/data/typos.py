"""Korean typo synthesis: (typo -> correct) pairs for query correction, made from clean queries and product names.

Each error type models one way people really mistype Korean on a 2-beolsik (두벌식) keyboard or spell it:

    keyboard          a key next to the right one on the QWERTY grid (추천 -> 추쳔: ㅓ(j) -> ㅕ(u))
    jamo_drop_double  a final's key missed (추천 -> 추처), Shift held into the next key (했다 -> 했따), a final typed
                      again as the next syllable's ㅇ initial (할인 -> 할린)
    english_mode      Korean typed with the keyboard in English mode (아이폰 -> dkdlvhs), one word or the whole query
    korean_mode       a Latin word typed in Korean mode, composed as the IME does (nike -> ㅜㅑㅏㄷ, galaxy -> ㅎ밈툐)
    vowel             vowels that sound alike: ㅐ/ㅔ, ㅒ/ㅖ, ㅚ/ㅙ/ㅞ, ㅓ/ㅕ after ㅈㅉㅊ (where they sound the same)
    batchim           finals that sound alike: ㅆ->ㅅ, ㅈ/ㅊ/ㅌ->ㅅ, ㅍ->ㅂ, ㄺ->ㄱ, ...; ㅂ->ㅁ and ㄱ->ㅇ before ㄴ/ㅁ
    misspelling       the well-known spelling mistakes (되/돼, 안/않, 며칠 -> 몇일, 베개 -> 배게, ...)
    spacing_drop      spaces dropped between words
    spacing_insert    a space inside a word (헬멧 -> 헬 멧)
    loanword          loanwords in a common non-standard spelling (케첩 -> 케찹, 스테인리스 -> 스뎅)

plus `unchanged`: the correct query on both sides (a corrector must leave correct input alone).

Keyboard-level errors are made on keystrokes, not on characters: the text is turned into the keys a person presses
(`to_keys`), the slip is made there, and the keys are composed back the way an IME composes them (`from_keys`), so
the typo is exactly what would appear on screen. The Hangul and keyboard arithmetic lives in kollm/hangul.py.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from kollm.data.config import DataConfig
from kollm.data.normalize import nfc
from kollm.errors import KollmError
from kollm.hangul import SPLIT, compose, decompose, from_keys, is_syllable, neighbours, to_keys
from kollm.spelling import BATCHIM_SWAPS, LOANWORDS, MISSPELLINGS, NASAL_SWAPS, VOWEL_SWAPS, YEO_SWAPS

ERROR_TYPES = ("keyboard", "jamo_drop_double", "english_mode", "korean_mode", "vowel", "batchim", "misspelling",
               "spacing_drop", "spacing_insert", "loanword")
UNCHANGED = "unchanged"
# The order two errors of one pair are made in: spelling before keystrokes, and a keyboard-mode slip last, since
# after it the word is no longer Hangul (or no longer Latin).
APPLY_ORDER = ("misspelling", "loanword", "vowel", "batchim", "jamo_drop_double", "keyboard", "spacing_insert",
               "spacing_drop", "english_mode", "korean_mode")

# ---- tables ------------------------------------------------------------------------------------------------------
TENSE = {"ㄱ": "ㄲ", "ㄷ": "ㄸ", "ㅂ": "ㅃ", "ㅅ": "ㅆ", "ㅈ": "ㅉ"}
_SHIFTED = set("ㄲㄸㅃㅆㅉㅒㅖ")


# ---- the error types ---------------------------------------------------------------------------------------------
def _swap_syllable(text: str, i: int, cho: str, jung: str, jong: str) -> str:
    return text[:i] + compose(cho, jung, jong) + text[i + 1:]


def _syllables(text: str) -> list[tuple[int, str, str, str]]:
    return [(i, *p) for i, ch in enumerate(text) if (p := decompose(ch))]


def _keyboard(text: str, rng: random.Random) -> str | None:
    runs = list(re.finditer(r"[가-힣ㄱ-ㅣ]+", text))
    if not runs:
        return None
    run = rng.choice(runs)
    keys = to_keys(run.group())
    i = rng.randrange(len(keys))
    near = neighbours(keys[i])
    if not near:
        return None
    new = from_keys(keys[:i] + rng.choice(near) + keys[i + 1:])
    return text[:run.start()] + new + text[run.end():]


def _jamo_drop_double(text: str, rng: random.Random) -> str | None:
    edits = []
    for i, cho, jung, jong in _syllables(text):
        if jong:  # the final's (last) key missed: 추천 -> 추처, 닭 -> 달
            edits.append(_swap_syllable(text, i, cho, jung, SPLIT[jong][0] if jong in SPLIT else ""))
        prev = decompose(text[i - 1]) if i else None
        if prev and cho in TENSE and (prev[2] or prev[1]) in _SHIFTED:  # Shift held one key too long: 했다 -> 했따
            edits.append(_swap_syllable(text, i, TENSE[cho], jung, jong))
        nxt = decompose(text[i + 1]) if i + 1 < len(text) else None
        if nxt and nxt[0] == "ㅇ" and jong and jong in "ㄱㄴㄷㄹㅁㅂㅅㅈ":  # final typed again: 할인 -> 할린
            edits.append(text[:i + 1] + compose(jong, nxt[1], nxt[2]) + text[i + 2:])
    return rng.choice(edits) if edits else None


def _english_mode(text: str, rng: random.Random) -> str | None:
    words = [m for m in re.finditer(r"\S+", text) if re.search(r"[가-힣ㄱ-ㅣ]", m.group())]
    if not words:
        return None
    if rng.random() < 0.5:  # the whole query typed before noticing the mode
        return to_keys(text)
    w = rng.choice(words)
    return text[:w.start()] + to_keys(w.group()) + text[w.end():]


def _korean_mode(text: str, rng: random.Random) -> str | None:
    # A word holding Latin letters, typed in Korean mode: its Hangul part was typed right, so the IME composes the
    # whole word's keys together (갤럭시s23 -> 갤럭신23).
    words = [m for m in re.finditer(r"\S+", text) if re.search(r"[A-Za-z]", m.group())]
    if not words:
        return None
    chosen = words if rng.random() < 0.5 else [rng.choice(words)]
    for w in reversed(chosen):
        text = text[:w.start()] + from_keys(to_keys(w.group())) + text[w.end():]
    return text


def _vowel(text: str, rng: random.Random) -> str | None:
    edits = []
    for i, cho, jung, jong in _syllables(text):
        options = VOWEL_SWAPS.get(jung, "") + (YEO_SWAPS.get(jung, "") if cho in "ㅈㅉㅊ" else "")
        edits += [_swap_syllable(text, i, cho, v, jong) for v in options]
    return rng.choice(edits) if edits else None


def _batchim(text: str, rng: random.Random) -> str | None:
    edits = []
    for i, cho, jung, jong in _syllables(text):
        nxt = decompose(text[i + 1]) if i + 1 < len(text) else None
        if jong == "ㅆ" or (jong in BATCHIM_SWAPS and (nxt is None or nxt[0] != "ㅇ")):
            edits.append(_swap_syllable(text, i, cho, jung, "ㅅ" if jong == "ㅆ" else BATCHIM_SWAPS[jong]))
        if jong in NASAL_SWAPS and nxt and nxt[0] in "ㄴㅁ":
            edits.append(_swap_syllable(text, i, cho, jung, NASAL_SWAPS[jong]))
    return rng.choice(edits) if edits else None


def _table_edits(text: str, table: Iterable[tuple[str, tuple[str, ...]]]) -> list[str]:
    edits = []
    for correct, wrongs in table:
        pattern = r"(?<!\S)" + re.escape(correct[1:]) if correct.startswith("^") else re.escape(correct)
        for m in re.finditer(pattern, text):
            edits += [text[:m.start()] + w + text[m.end():] for w in wrongs]
    return edits


def _misspelling(text: str, rng: random.Random) -> str | None:
    edits = _table_edits(text, ((c, (w,)) for c, w in MISSPELLINGS))
    return rng.choice(edits) if edits else None


def _loanword(text: str, rng: random.Random) -> str | None:
    edits = _table_edits(text, LOANWORDS)
    return rng.choice(edits) if edits else None


def _spacing_drop(text: str, rng: random.Random) -> str | None:
    spaces = [m.start() for m in re.finditer(" ", text)]
    if not spaces:
        return None
    if rng.random() < 0.3:  # typed as one run
        return text.replace(" ", "")
    i = rng.choice(spaces)
    return text[:i] + text[i + 1:]


def _spacing_insert(text: str, rng: random.Random) -> str | None:
    # only between two syllables: a space inside 300ml or iphone is not how people mis-space
    cuts = [i for i in range(1, len(text)) if is_syllable(text[i - 1]) and is_syllable(text[i])]
    if not cuts:
        return None
    i = rng.choice(cuts)
    return text[:i] + " " + text[i:]


_ERRORS = {"keyboard": _keyboard, "jamo_drop_double": _jamo_drop_double, "english_mode": _english_mode,
           "korean_mode": _korean_mode, "vowel": _vowel, "batchim": _batchim, "misspelling": _misspelling,
           "spacing_drop": _spacing_drop, "spacing_insert": _spacing_insert, "loanword": _loanword}


def apply_error(text: str, kind: str, rng: random.Random) -> str | None:
    """`text` with one error of type `kind`, or None where that type cannot apply (no loanword in it, ...)."""
    out = _ERRORS[kind](text, rng)
    return out if out is not None and out != text else None


# ---- pairs -------------------------------------------------------------------------------------------------------
def check_typo_config(cfg: DataConfig) -> dict[str, float]:
    """The recipe's rates, checked: known types, probabilities in [0, 1], at least one above 0."""
    rates = cfg.typo_rates
    if not isinstance(rates, dict):
        raise KollmError(f"[data].typo_rates must be a table like {{keyboard = 0.15, vowel = 0.1}}, got {rates!r}")
    for kind, rate in rates.items():
        if kind == UNCHANGED:
            raise KollmError("[data].typo_rates has `unchanged`; set its share with [data].typo_unchanged instead")
        if kind not in ERROR_TYPES:
            raise KollmError(f"unknown error type {kind!r} in [data].typo_rates; use: {', '.join(ERROR_TYPES)}")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise KollmError(f"[data].typo_rates.{kind} = {rate!r} is not a probability; give a number from 0 to 1")
    if not any(rates.values()):
        raise KollmError("every rate in [data].typo_rates is 0 (or none is given); give one error type a rate > 0")
    u = cfg.typo_unchanged
    if isinstance(u, bool) or not isinstance(u, int | float) or not 0 <= u <= 1:
        raise KollmError(f"[data].typo_unchanged = {u!r} is not a share; give a number from 0 to 1")
    if cfg.typo_pairs_per_query < 1:
        raise KollmError(f"pairs per query is {cfg.typo_pairs_per_query}; give 1 or more")
    return {k: float(rates[k]) for k in ERROR_TYPES if rates.get(k)}  # fixed order: draws do not depend on TOML order


def _draw(rates: dict[str, float], rng: random.Random) -> list[str]:
    """One or two error types, type t with probability rates[t] when the rates sum to 1..2 (else scaled to that
    range: every pair has one error at least and two at most). Systematic sampling: the rates are laid end to end in
    a random order and the points u and u+1 pick the types they fall on, so no type is picked twice."""
    kinds = list(rates)
    rng.shuffle(kinds)
    total = sum(rates.values())
    scale = 1 / total if total < 1 else 2 / total if total > 2 else 1.0
    u, edge, picked = rng.random(), 0.0, []
    for kind in kinds:
        lo, edge = edge, edge + rates[kind] * scale
        if lo <= u < edge or lo <= u + 1 < edge:
            picked.append(kind)
    return picked or kinds[-1:]  # u past the last edge by a rounding error


def _one_typo(text: str, rates: dict[str, float], rng: random.Random) -> tuple[str, list[str]] | None:
    """One typo of `text` and its types, drawn from `rates` (the types that apply to `text`). Two errors are made
    one after the other; where the first leaves no room for the second, another type is tried."""
    kinds = sorted(_draw(rates, rng), key=APPLY_ORDER.index)
    tried, applied, out = set(kinds), [], text
    modes = {"english_mode", "korean_mode"}  # one keyboard-mode slip per pair, not both
    while kinds:
        kind = kinds.pop(0)
        new = None if kind in modes and modes & set(applied) else apply_error(out, kind, rng)
        if new is None or new == text:
            left = [k for k in rates if k not in tried]
            if left:
                other = rng.choices(left, weights=[rates[k] for k in left])[0]
                tried.add(other)
                kinds = sorted([*kinds, other], key=APPLY_ORDER.index)
            continue
        out = new
        applied.append(kind)
    return (out, applied) if applied else None


def _rng(seed: int, text: str) -> random.Random:
    """A query's own generator, from the seed and the text: its pairs do not depend on the other queries or their
    order (the string hash is salted per process, so sha256 it is)."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pairs_for_query(text: str, cfg: DataConfig, rates: dict[str, float] | None = None) -> list[dict]:
    """Up to `typo_pairs_per_query` distinct pairs for one clean query. A query gets one `unchanged` pair with
    probability min(1, pairs * typo_unchanged), so that share of all pairs is `typo_unchanged` with no duplicates."""
    rates = rates if rates is not None else check_typo_config(cfg)
    correct = nfc(text).strip()
    if not correct:
        return []
    n = cfg.typo_pairs_per_query
    rng = _rng(cfg.typo_seed, correct)
    # a type that cannot apply to this query (no loanword in it) is left out, and the others' rates scaled up
    rates = {k: r for k, r in rates.items() if apply_error(correct, k, random.Random(0)) is not None}
    rows: list[dict] = []
    if rng.random() < min(1.0, n * cfg.typo_unchanged):
        rows.append({"typo": correct, "correct": correct, "errors": [UNCHANGED]})
    seen = {correct}
    for _ in range(4 * n):  # short queries have few distinct typos; stop trying after a while
        if len(rows) >= n or not rates:
            break
        got = _one_typo(correct, rates, rng)
        if got and got[0] not in seen:
            seen.add(got[0])
            rows.append({"typo": got[0], "correct": correct, "errors": got[1]})
    return rows


def make_pairs(queries: Iterable[str], cfg: DataConfig) -> list[dict]:
    """(typo -> correct) pairs for every query, deterministic for `cfg.typo_seed`."""
    rates = check_typo_config(cfg)
    return [row for q in queries for row in pairs_for_query(q, cfg, rates)]


def typo_stats(rows: list[dict]) -> dict:
    """Pairs written and pairs per error type (a pair with two errors counts under both)."""
    counts = Counter(e for r in rows for e in r["errors"])
    return {"pairs": len(rows), "queries": len({r["correct"] for r in rows}),
            "errors": {k: counts.get(k, 0) for k in (*ERROR_TYPES, UNCHANGED)}}


# ---- input -------------------------------------------------------------------------------------------------------
def _query_lines(path: Path) -> list[str]:
    """The queries in one file: jsonl rows give their `correction` (a correction set's clean side) or `product`
    (a review's product name), else each line of `text`; other formats give each line of each document."""
    from kollm.data import sources

    if not path.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz")):
        return [line for d in sources.iter_documents(path, sources.strict) for line in d["text"].splitlines()]
    # sources.py's jsonl reader yields `text` only; its line reader (opening, decompression, binary and truncation
    # checks) is reused so that only the choice of field is made here.
    import json

    found = []
    for n, raw in sources.lines(path, sources.strict):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            sources.strict("invalid_utf8", f"{path}:{n} is not valid UTF-8")
            continue
        except json.JSONDecodeError as e:
            sources.strict("malformed_json", f"{path}:{n} is not valid JSON ({e.msg})")
            continue
        field = next((k for k in ("correction", "product", "text") if isinstance(row, dict)
                      and isinstance(row.get(k), str)), None)
        if field is None:
            raise KollmError(f'{path}:{n} has no string "correction", "product" or "text" field; '
                             'write lines like {"text": "무선 이어폰 추천"}')
        found += row[field].splitlines() if field == "text" else [row[field]]
    return found


def read_queries(paths: list[str] | list[Path]) -> list[str]:
    """Clean queries from files or folders (one per line; see `_query_lines`), NFC, stripped, deduplicated."""
    from kollm.data.sources import list_input_files

    queries: dict[str, None] = {}
    for path in list_input_files(paths):
        for line in _query_lines(path):
            if q := nfc(line).strip():
                queries.setdefault(q)
    if not queries:
        raise KollmError(f"no query text in {', '.join(map(str, paths))}; give one query per line (.txt) or jsonl "
                         'rows with "text", "correction" or "product"')
    return list(queries)


def clean_queries_from_corpus() -> list[str]:
    """The shipped clean queries (the `correction` side of queries.jsonl) and product names (reviews.jsonl)."""
    from kollm.data.sources import sample_corpus_files

    return read_queries([p for p in sample_corpus_files() if p.name in ("queries.jsonl", "reviews.jsonl")])

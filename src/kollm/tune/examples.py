"""Tuning examples: the rows a user gives, read once, rendered into token ids with the loss on the output only.

Four row shapes, told apart by their keys (a file may mix them):
- `{"messages": [...]}`: a chat, rendered with the model's chat template (the one `kollm serve` applies); the loss
  covers every assistant turn, its end-of-turn marker included, so the tuned model stops where the turn ends;
- `{"prompt": ..., "completion": ...}`: the loss covers the completion (and EOS);
- `{"text": ...}`: continued pretraining on the user's documents; the loss covers all of it;
- `{"inputs": {...}, "expected": ...}` (a Studio test set) or a flat row like `{"typo": ..., "correct": ...}` with a
  prompt template (`{{name}}`, kollm.prompts): the template filled is the prompt, the expected output the completion.

Prompt and completion are tokenized apart, because that is how a served model meets them: `kollm serve` tokenizes
the prompt alone and the model writes the completion's tokens after it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from kollm.data.normalize import nfc
from kollm.data.sources import lines, strict
from kollm.errors import KollmError
from kollm.model.loss import IGNORE
from kollm.prompts import fill, output_prefix
from kollm.special_tokens import CHAT_TEMPLATE, encode_with_bos
from kollm.split import unit_hash

SHAPES = ('{"messages": [...]}, {"prompt": ..., "completion": ...}, {"text": ...}, '
          'or {"inputs": {...}, "expected": ...} with a prompt template (--template)')


@dataclass
class Row:
    """One row as read: where it came from, and its text parts (NFC)."""
    where: str  # file:line, for errors
    kind: str  # chat | completion | text
    messages: list[dict] | None = None
    prompt: str = ""
    completion: str = ""  # the expected output, without the space that joins it to the prompt
    text: str = ""

    @property
    def key(self) -> str:
        """What the held-out split hashes: the answer, so no answer is both trained on and scored."""
        if self.kind == "chat":
            return next(m["content"] for m in reversed(self.messages or []) if m["role"] == "assistant")
        return self.completion if self.kind == "completion" else self.text


@dataclass
class Example:
    ids: list[int]
    labels: list[int]  # the token each position must produce (HF convention: shifted at loss time); IGNORE: none
    target_bytes: int  # UTF-8 bytes of the supervised text: the denominator of bits-per-byte
    prompt_ids: list[int] | None = None  # for scoring the task metric: the prompt as served
    reference: str = ""  # the expected output (completion or last assistant turn)

    @property
    def supervised(self) -> int:
        return sum(t != IGNORE for t in self.labels[1:])


def _fail(where: str, problem: str) -> KollmError:
    return KollmError(f"{where}: {problem}; each line must be one of {SHAPES}")


def _string(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f'"{name}" must be a string, not {type(value).__name__}')
    return nfc(value)


def parse_row(obj: Any, where: str, template: str = "", target: str = "expected") -> Row:
    """One JSON value as a Row, or a KollmError naming `where` (file:line) and the shapes that work."""
    if not isinstance(obj, dict):
        raise _fail(where, f"a JSON {type(obj).__name__}, not an object")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise _fail(where, '"messages" must be a non-empty list of {"role", "content"}')
        out = []
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                raise _fail(where, 'each message needs "role" (system, user or assistant) and "content"')
            out.append({"role": m["role"], "content": _string(m.get("content"), where, "content")})
        if not any(m["role"] == "assistant" for m in out):
            raise _fail(where, "a chat with no assistant message has nothing to learn")
        return Row(where, "chat", messages=out)
    if "prompt" in obj or "completion" in obj:
        row = Row(where, "completion", prompt=_string(obj.get("prompt"), where, "prompt"),
                  completion=_string(obj.get("completion"), where, "completion"))
    elif "text" in obj:
        return Row(where, "text", text=_string(obj["text"], where, "text"))
    elif template:
        inputs = obj.get("inputs", obj)
        if not isinstance(inputs, dict):
            raise _fail(where, '"inputs" must be an object of template variables')
        answer = obj.get("expected", obj.get(target)) if "inputs" in obj else obj.get(target)
        if answer is None:
            raise _fail(where, f'no "{target if "inputs" not in obj else "expected"}" field (the wanted output)')
        try:
            prompt = fill(template, {k: nfc(str(v)) for k, v in inputs.items()})
        except KollmError as e:
            raise KollmError(f"{where}: {e}; the template is {template!r}") from None
        # the output joins the prompt as the Studio joins its few-shot examples ("교정:" + " " + answer)
        row = Row(where, "completion", prompt=prompt, completion=output_prefix(prompt) + _string(answer, where, target))
    elif "inputs" in obj:
        raise KollmError(f"{where}: a Studio test-set row needs the app's prompt template; pass --template "
                         "'검색어: {{query}}\\n교정:' (or [tune].template in the recipe)")
    else:
        raise _fail(where, f"unknown row (keys: {', '.join(sorted(obj)) or 'none'})")
    if not row.completion.strip():
        raise _fail(where, "an empty completion has nothing to learn")
    return row


def read_rows(paths: list[str] | list[Path], template: str = "", target: str = "expected") -> Iterator[Row]:
    """Every row of the jsonl files, strictly: the first bad line stops with its file:line and the fix."""
    if not paths:
        raise KollmError("no tuning data; pass --data FILE (jsonl) or set [tune].data (or typos = true) in the recipe")
    for path in map(Path, paths):
        if not path.is_file():
            raise KollmError(f"tuning data {path} does not exist; check --data")
        for n, raw in lines(path, strict):  # the data stage's line reader: .gz/.zst, binary and cut-short files
            where = f"{path}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise KollmError(f"{where}: not UTF-8; convert the file, e.g. iconv -f CP949 -t UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise _fail(where, f"not JSON ({e.msg} at column {e.colno})") from None
            yield parse_row(obj, where, template, target)


def split(rows: list[Row], fraction: float, seed: int = 0) -> tuple[list[Row], list[Row]]:
    """(train, held out) by a hash of each row's answer: stable when rows are added, and every typo of one correct
    query lands on the same side. At least one row is held out when there are two or more. The held-out rows come
    one row of each answer (its rows in hash order), then a second of each, ...: a capped validation set (`val_max`)
    covers as many answers as it can (typo pairs come five to an answer; the first 64 in file order were 13
    answers, so one checkpoint beat another by a few queries' luck)."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []

    scored = [(unit_hash(f"{seed}:{r.key}"), r) for r in rows]
    held = [r for v, r in scored if v < fraction]
    if not held:  # tiny sets: the lowest hash (and every row sharing its answer)
        low = min(scored, key=lambda x: x[0])[1].key
        held = [r for r in rows if r.key == low]
    by_answer: dict[str, list[Row]] = {}
    # each answer's rows in hash order, not file order: a typo set starts every answer with its unchanged pair
    for r in sorted(held, key=lambda r: unit_hash(f"{seed}:{r.prompt}:{r.text}:{r.messages}")):
        by_answer.setdefault(r.key, []).append(r)
    spread = [r for nth in zip_longest(*by_answer.values()) for r in nth if r is not None]
    return [r for r in rows if r.key not in by_answer], spread


def chat_template(tokenizer: Any) -> tuple[str, bool]:
    """(template, is_kollm's): the model's own, or kollm's ChatML for a model without one (`kollm serve` then needs
    `--chat-template`, or the merged folder, which carries it)."""
    own = getattr(tokenizer, "chat_template", None)
    return (own, False) if own else (CHAT_TEMPLATE, True)


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def encode(row: Row, tokenizer: Any, seq_len: int, eos: bool = True, template: str | None = None) -> list[Example]:
    """A row as training examples (a long text becomes several), each at most `seq_len` tokens."""
    eos_id = tokenizer.eos_token_id if eos else None
    if row.kind == "text":
        ids = encode_with_bos(tokenizer, row.text) + ([eos_id] if eos_id is not None else [])
        out = []
        for s in range(0, len(ids) - 1, seq_len - 1):  # chunks overlap by one token: every token is a target once
            chunk = ids[s:s + seq_len]
            labels = [IGNORE] + chunk[1:]
            nbytes = _utf8(tokenizer.decode(chunk[1:], skip_special_tokens=True))
            out.append(Example(chunk, labels, max(nbytes, 1)))
        return out
    if row.kind == "completion":
        p = encode_with_bos(tokenizer, row.prompt)
        c = tokenizer.encode(row.completion, add_special_tokens=False) + ([eos_id] if eos_id is not None else [])
        return [_cut(p, c, seq_len, _utf8(row.completion), row.completion.strip())]
    return [_chat(row, tokenizer, seq_len, template or chat_template(tokenizer)[0])]


def _cut(prompt: list[int], completion: list[int], seq_len: int, nbytes: int, reference: str) -> Example:
    # too long: the prompt loses tokens from its start (after BOS); the completion is what is learned
    over = len(prompt) + len(completion) - seq_len
    if over > 0:
        keep = max(1, len(prompt) - over)
        prompt = prompt[:1] + prompt[len(prompt) - keep + 1:] if keep > 1 else prompt[:1]
        completion = completion[: seq_len - len(prompt)]
    return Example(prompt + completion, [IGNORE] * len(prompt) + completion, max(nbytes, 1), prompt, reference)


def _chat(row: Row, tokenizer: Any, seq_len: int, template: str) -> Example:
    msgs = row.messages or []

    def render(m: list[dict], gen: bool) -> str:
        return tokenizer.apply_chat_template(m, chat_template=template, tokenize=False, add_generation_prompt=gen)

    full = render(msgs, False)
    spans = []  # character spans of the assistant turns (with their end-of-turn markers)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start, upto = render(msgs[:i], True), render(msgs[: i + 1], False)
        if not (full.startswith(upto) and upto.startswith(start)):
            raise KollmError(f"{row.where}: the chat template does not render turns as prefixes of the whole chat, "
                             "so the assistant's tokens cannot be found; use a prompt/completion row instead")
        spans.append((len(start), len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [t if any(a <= s < b for a, b in spans) else IGNORE for t, (s, _) in zip(ids, offsets, strict=True)]
    labels[0] = IGNORE
    last = msgs[: max(i for i, m in enumerate(msgs) if m["role"] == "assistant")]
    prompt = tokenizer.encode(render(last, True), add_special_tokens=False)
    nbytes = sum(_utf8(full[a:b]) for a, b in spans)
    reference = next(m["content"] for m in reversed(msgs) if m["role"] == "assistant")
    if len(ids) > seq_len:  # drop whole leading tokens; the last assistant turn is what matters most
        ids, labels = ids[-seq_len:], [IGNORE] + labels[-seq_len + 1:]
    return Example(ids, labels, max(nbytes, 1), prompt, reference.strip())


def bits_per_byte(nats: float, nbytes: int) -> float:
    return nats / math.log(2) / max(nbytes, 1)

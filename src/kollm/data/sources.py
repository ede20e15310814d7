"""The one reader of user text: every format, every document out as {id, source, text}.

Each problem (a broken line, a non-UTF-8 document, a truncated archive) goes to a callback with a reason
and a one-line message, and reading goes on with the next document. The pipeline counts them (at web
scale one broken line must not stop a run); `strict` raises them as a KollmError naming the file and the
fix (a hand-picked corpus should be clean: the quickstart, `kollm train`, `kollm tokenizer train`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zlib
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import IO

import zstandard

from kollm.data.mediawiki import iter_wiki_pages
from kollm.data.normalize import nfc
from kollm.errors import KollmError

Problem = Callable[[str, str], None]  # (reason, message)

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".txt", ".txt.gz", ".parquet", ".xml", ".xml.bz2")
_TRUNCATED = (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError, lzma.LZMAError, OSError)


# Problems that stop a strict read, with the fix to print. The others (an empty document, a wiki redirect)
# are skipped in both modes.
_FIXES = {
    "binary_file": "pass text files (.jsonl, .txt, .parquet, .xml.bz2, optionally .gz/.zst)",
    "truncated_file": "the file is cut short or corrupt; copy it again",
    "invalid_utf8": "convert it to UTF-8, e.g. `iconv -f CP949 -t UTF-8 IN > OUT`",
    "malformed_json": "each line must be one JSON object",
    "no_text_field": 'write lines like {"text": "..."}',
    "unreadable_file": "check the path and the format",
    "empty_file": "give a file with Korean text (one JSON object per line, or plain text)",
}


def strict(reason: str, message: str) -> None:
    """A problem callback that stops at the first unreadable input, naming it and the fix."""
    if reason in _FIXES:
        raise KollmError(f"{message}; {_FIXES[reason]}")


def sample_corpus_files() -> list[Path]:
    """The Korean sample corpus shipped inside the package (news, encyclopedia, reviews, ...)."""
    root = resources.files("kollm") / "resources" / "corpus"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".jsonl"))


def list_input_files(sources: list[str] | list[Path]) -> list[Path]:
    """Files named directly, plus every readable file under the folders named, in a stable order."""
    files: list[Path] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES))
            if not found:
                raise KollmError(f"folder {p} has no readable files ({', '.join(SUFFIXES)}); point --data at your text")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise KollmError(f"data path {p} does not exist; check the path passed to --data")
    return files


def read_texts(sources: list[str] | list[Path]) -> list[str]:
    """Every document's text from files or folders, strictly read, NFC (the corpus boundary), empty ones out."""
    texts: list[str] = []
    for path in list_input_files(sources):
        got = [t for d in iter_documents(path, strict) if (t := nfc(d["text"]).strip())]
        if not got:
            raise KollmError(f"{path} is empty (no document with text); {_FIXES['empty_file']}")
        texts += got
    return texts


def _cut(path: Path, e: Exception) -> str:
    return f"{path}: cannot read past this point ({type(e).__name__}: {e})"


def _open(path: Path) -> IO[bytes]:
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        # the zstd reader has no readline; buffering gives line iteration
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def lines(path: Path, problem: Problem) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a text file, compressed or not; a binary, empty or cut-short file goes to
    `problem`. The jsonl and txt readers use it, and so do readers of other fields than text (data/typos.py)."""
    try:
        with _open(path) as raw:
            if b"\x00" in raw.peek(8192)[:8192]:  # text never holds NUL bytes; the start tells
                problem("binary_file", f"{path} looks like a binary file (NUL bytes), not text")
                return
            n = 0
            for n, line in enumerate(raw, 1):
                yield n, line
            if n == 0:
                problem("empty_file", f"{path} is empty")
    except _TRUNCATED as e:
        problem("truncated_file", _cut(path, e))


def _jsonl(path: Path, problem: Problem) -> Iterator[dict]:
    for n, line in lines(path, problem):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            problem("invalid_utf8", f"{path}:{n} is not valid UTF-8 (byte {e.start} of the line)")
            continue
        except json.JSONDecodeError as e:
            problem("malformed_json", f"{path}:{n} is not valid JSON ({e.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            problem("no_text_field", f'{path}:{n} has no string "text" field')
            continue
        yield {"id": str(row.get("id") or f"{path.name}:{n}"), "source": str(path), "text": row["text"]}


def _txt(path: Path, problem: Problem, one_doc_per_file: bool) -> Iterator[dict]:
    block: list[bytes] = []
    start = n = 0

    def flush() -> Iterator[dict]:
        raw = b"".join(block)
        try:
            text = raw.decode("utf-8-sig" if start <= 1 else "utf-8")
        except UnicodeDecodeError as e:
            problem("invalid_utf8", f"{path}:{start} is not valid UTF-8 (byte {e.start} of the document)")
            return
        if text.strip():
            yield {"id": f"{path.name}:{start}", "source": str(path), "text": text}

    for n, line in lines(path, problem):
        if not block:
            start = n
        if not one_doc_per_file and not line.strip():
            if block:
                yield from flush()
                block = []
            continue
        block.append(line)
    if block:
        yield from flush()


def _parquet(path: Path, problem: Problem) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        if "text" not in names:
            problem("no_text_field", f"{path}: parquet has no `text` column (columns: {', '.join(names)})")
            return
        cols = ["text"] + (["id"] if "id" in names else [])
        row = 0
        for batch in pf.iter_batches(columns=cols, batch_size=1024):
            ids = batch.column("id").to_pylist() if "id" in cols else [None] * batch.num_rows
            for text, doc_id in zip(batch.column("text").to_pylist(), ids, strict=True):
                row += 1
                if not isinstance(text, str):
                    problem("no_text_field", f"{path}: row {row} has no text")
                    continue
                yield {"id": str(doc_id or f"{path.name}:{row}"), "source": str(path), "text": text}
    except Exception as e:  # pyarrow raises many types for broken files; none may stop the run
        problem("unreadable_file", f"{path}: not a readable parquet file ({type(e).__name__}: {e})")


def _wiki(path: Path, problem: Problem) -> Iterator[dict]:
    try:
        with _open(path) as f:
            yield from iter_wiki_pages(f, str(path), problem)
    except _TRUNCATED as e:
        problem("truncated_file", _cut(path, e))


def iter_documents(path: Path, problem: Problem, txt_doc_per_file: bool = False) -> Iterator[dict]:
    """{id, source, text} for every readable document in `path`; problems go to `problem`."""
    name = path.name
    if not path.is_file():
        problem("unreadable_file", f"{path}: does not exist")
    elif name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz")):
        yield from _jsonl(path, problem)
    elif name.endswith(".parquet"):
        yield from _parquet(path, problem)
    elif name.endswith((".xml", ".xml.bz2")):
        yield from _wiki(path, problem)
    elif name.endswith((".txt", ".txt.gz")):
        yield from _txt(path, problem, txt_doc_per_file)
    else:
        problem("unreadable_file", f"{path}: unknown format; use {', '.join(SUFFIXES)}")

"""Read documents from the user's files: every document comes out as {id, source, text}.

Readers are strict: a file that cannot be read as text raises `KollmError` naming the file
and the fix, rather than yielding garbage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from kollm.errors import KollmError

TEXT_SUFFIXES = (".jsonl", ".txt")


def sample_corpus_files() -> list[Path]:
    """The Korean sample corpus shipped inside the package (news, encyclopedia, reviews, ...)."""
    root = resources.files("kollm") / "resources" / "corpus"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".jsonl"))


def expand_sources(sources: list[str]) -> list[Path]:
    """Files named directly, plus every .jsonl/.txt file under the folders named."""
    files: list[Path] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES)
            if not found:
                raise KollmError(f"folder {p} has no .jsonl or .txt files; point --data at your text files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise KollmError(f"data path {p} does not exist; check the path passed to --data")
    return files


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise KollmError(f"{path} is empty; give a file with Korean text (one json object per line or plain text)")
    if b"\x00" in raw[:8192]:
        raise KollmError(f"{path} looks like a binary file, not text; pass .jsonl or .txt files")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KollmError(
            f"{path} is not valid UTF-8 (bad byte at offset {e.start}); convert it, e.g. "
            f"`iconv -f CP949 -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}`"
        ) from None


def read_documents(path: Path) -> Iterator[dict]:
    """Yield {id, source, text} for each document of one .jsonl or .txt file."""
    text = _read_text(path)
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise KollmError(f"{path}:{n} is not valid JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise KollmError(f'{path}:{n} has no string "text" field; write lines like {{"text": "..."}}')
            yield {"id": str(row.get("id", f"{path.stem}-{n}")), "source": str(path), "text": row["text"]}
    else:
        for n, block in enumerate(text.replace("\r\n", "\n").split("\n\n"), 1):
            if block.strip():
                yield {"id": f"{path.stem}-{n}", "source": str(path), "text": block.strip()}

"""Small file helpers shared by every stage: atomic writes and jsonl."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: changing the umask is process-wide and not thread-safe


def _as_new(path: Path) -> None:
    """Give `path` the mode any newly created file or folder gets (0666 or 0777, less the umask).

    Temp files are private: mkstemp/mkdtemp make 0600/0700, and so do libraries that write through their own temp
    file and rename it (safetensors' save_file), so a model folder would be unreadable to a server or container
    running as another user. Set after the writer is done, since the writer may have replaced the file.
    """
    executable = path.is_dir() or path.stat().st_mode & 0o100
    os.chmod(path, (0o777 if executable else 0o666) & ~_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is renamed over `path` in one step.

    An interrupted writer (Ctrl-C, SIGKILL, a crash) therefore never leaves a half-written file
    where readers look: they see the old version or the new one. The file gets the usual mode (umask applies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _as_new(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp folder; on success it replaces `path` (the old folder is removed after). The folder and
    everything written in it get the usual modes (umask applies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:
            if not p.is_symlink():  # chmod would follow it out of the folder
                _as_new(p)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one metrics row; a line is small enough that a crash loses at most that line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")

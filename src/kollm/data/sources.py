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

from kollm.data.config import DataConfig
from kollm.data.mediawiki import iter_wiki_pages
from kollm.data.normalize import nfc
from kollm.data.speech import AUDIO_SUFFIXES, AudioOptions
from kollm.errors import KollmError

Problem = Callable[[str, str], None]  # (reason, message)

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".txt", ".txt.gz", ".parquet", ".xml", ".xml.bz2")
SUFFIXES += AUDIO_SUFFIXES  # speech, transcribed by data/speech.py (needs a whisper folder: [data] whisper)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
OCR_SUFFIXES = IMAGE_SUFFIXES + (".pdf",)  # documents: OCR (data/ocr.py), or a PDF page's text layer if it has one
SUFFIXES += OCR_SUFFIXES
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
    "no_whisper": "pass --whisper DIR (a CTranslate2 whisper folder: `kollm import whisper --out DIR`) or set "
                  "[data].whisper",
    "bad_audio": "re-encode it (e.g. `ffmpeg -i IN OUT.wav`) or leave it out",
    "bad_image": "re-save it as PNG or JPEG, or leave it out",
    "bad_pdf": "re-save it unencrypted (e.g. `qpdf --decrypt IN OUT.pdf`), or leave it out",
    "low_ocr_confidence": "scan it again straight, in focus, at 300 dpi, or lower [data] ocr_min_confidence",
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
            found = sorted(f for f in p.rglob("*") if f.is_file() and (  # cameras and recorders name IMG_01.JPG
                f.name.endswith(SUFFIXES) or f.name.lower().endswith(AUDIO_SUFFIXES + OCR_SUFFIXES)))
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
        docs = list(iter_documents(path, strict))
        for d in docs:  # a page OCR could barely read would teach garbage: the floor holds here too
            if (why := below_ocr_floor(d, DataConfig.ocr_min_confidence)) is not None:
                strict("low_ocr_confidence", why)
        got = [t for d in docs if (t := nfc(d["text"]).strip())]
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


def _audio(path: Path, problem: Problem, audio: AudioOptions | None) -> Iterator[dict]:
    """One document per audio file: the transcript, with its segments' timestamps in `metadata`. A file with no
    speech in it (VAD finds none) is skipped as `no_speech` in both modes, like an empty document."""
    if audio is None or not audio.whisper:
        problem("no_whisper", f"{path}: audio needs a whisper model to transcribe it")
        return
    from kollm.data import speech

    model = speech.load_whisper(audio.whisper, threads=audio.threads)  # a bad folder stops the run: not the file's
    try:
        samples = speech.decode(path)
    except speech.AudioError as e:
        problem("bad_audio", f"{path}: {e.why}")
        return
    t = model.transcribe(samples, language=audio.language or None)
    if not t.text:
        problem("no_speech", f"{path}: no speech found in {t.duration:.1f} s of audio")
        return
    yield {"id": path.name, "source": str(path), "text": t.text, "metadata": {
        "language": t.language, "duration": t.duration,
        "segments": [{"start": s.start, "end": s.end, "text": s.text.strip()} for s in t.segments]}}


def below_ocr_floor(doc: dict, floor: float) -> str | None:
    """Why an OCR'd page is under the confidence floor (None when it is not, or was not OCR'd)."""
    conf = (doc.get("metadata") or {}).get("ocr_confidence")
    if conf is None or conf >= floor:
        return None
    page = doc["metadata"]["page"]
    return f"{doc['source']}: page {page} reads at OCR confidence {conf:.0f}, under the floor {floor:g}"


def _page(path: Path, page: int, text: str, method: str, conf: float | None) -> dict:
    return {"id": f"{path.name}:{page}", "source": str(path), "text": text,
            "metadata": {"page": page, "method": method, "ocr_confidence": None if conf is None else round(conf, 1)}}


def _image(path: Path, problem: Problem) -> Iterator[dict]:
    """One document per page (a TIFF can hold several), OCR'd; a missing tesseract stops the run (not the
    file's fault)."""
    from kollm.data import ocr

    ocr.check_available()
    if path.stat().st_size == 0:
        problem("empty_file", f"{path} is empty")
        return
    try:
        for n, img in enumerate(ocr.image_pages(path.read_bytes()), 1):
            res = ocr.ocr_image(img)
            yield _page(path, n, res.text, "ocr", res.confidence)
    except ValueError as e:
        problem("bad_image", f"{path}: {e}")


def _pdf(path: Path, problem: Problem) -> Iterator[dict]:
    """One document per page: its text layer, or OCR of the rendered page when it has none."""
    from kollm.data import ocr

    if path.stat().st_size == 0:
        problem("empty_file", f"{path} is empty")
        return
    n = 0
    try:
        for page in ocr.pdf_pages(path):
            n += 1
            yield _page(path, page.page, page.text, page.method, page.confidence)
    except ValueError as e:
        problem("bad_pdf", f"{path}: {e}")
        return
    if n == 0:
        problem("empty_file", f"{path} has no pages")


def iter_documents(path: Path, problem: Problem, txt_doc_per_file: bool = False,
                   audio: AudioOptions | None = None) -> Iterator[dict]:
    """{id, source, text} for every readable document in `path` (and `metadata`, a dict, for some formats: the
    segments of a transcript); problems go to `problem`."""
    name = path.name
    if not path.is_file():
        problem("unreadable_file", f"{path}: does not exist")
    elif name.lower().endswith(AUDIO_SUFFIXES):
        yield from _audio(path, problem, audio)
    elif name.lower().endswith(IMAGE_SUFFIXES):
        yield from _image(path, problem)
    elif name.lower().endswith(".pdf"):
        yield from _pdf(path, problem)
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

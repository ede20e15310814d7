"""Korean OCR for the whole project: images and PDFs in, text with its confidence out.

One engine: Debian's tesseract 5 (`tesseract-ocr-kor` + `-eng`: Latin product names sit inside Korean text),
called as a binary with TSV output. pytesseract would be the same subprocess behind a wrapper that writes
temporary files; piping PNG bytes through stdin needs neither. Choices measured in bench/ocr.py on
project-made images (docs/data.md has the table):

- page mode 6 (one uniform block of text): CER 0.04 on rendered Korean pages, where tesseract's default 3
  (automatic layout analysis) splits Hangul lines into fragments;
- OMP_THREAD_LIMIT=1: tesseract's OpenMP threads make one page several times slower on 2 cores, and the
  pipeline and the server already run pages side by side;
- pre-processing only where a cheap check says it helps (`prepare`): deskew by projection profile when the
  lines lean, upscale when lines are short, ruling lines of tables removed, and grey or blurred pages
  flattened to ink on white (so tesseract's own binarisation holds).

A PDF page is read from its text layer when it has one (pypdfium2), else rendered and OCR'd (pypdfium2 renders
it in-process, faster than poppler's pdftoppm per page: bench/ocr.py).
"""

from __future__ import annotations

import csv
import functools
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from kollm.data.normalize import nfc
from kollm.errors import KollmError

LANGS = "kor+eng"
PSM = 6  # bench/ocr.py: CER per page mode
APT = "tesseract-ocr tesseract-ocr-kor tesseract-ocr-eng"
PDF_DPI = 300  # pages rendered for OCR at the resolution tesseract is trained for
MAX_PIXELS = 50_000_000  # a decompression bomb (a tiny file that decodes to gigapixels) is refused, not read
TIMEOUT_S = 120.0  # one page; tesseract stuck past this is a broken input, not a slow one
# Pre-processing thresholds (bench/ocr.py measured each step on the hard kinds and on the easy ones)
MIN_SKEW_DEG = 1.0  # lines leaning less than this read as well unrotated
MAX_SKEW_DEG = 10.0
TARGET_LINE_PX = 40  # text lines shorter than ~20 px are upscaled to about this height
SMALL_LINE_PX = 22
GREY_CONTRAST = 120  # background-to-ink difference under this: a grey or blurred page, flattened


class OcrUnavailable(KollmError):
    """tesseract or one of its language packs is not installed."""


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float  # 0-100, the line's words' mean, weighted by characters
    box: tuple[int, int, int, int]  # left, top, width, height in the (pre-processed) image's pixels


@dataclass(frozen=True)
class OcrResult:
    text: str  # lines joined by newlines, NFC
    confidence: float  # 0-100: tesseract's word confidences, mean weighted by characters; 0 when nothing read
    lines: list[OcrLine] = field(default_factory=list)
    steps: tuple[str, ...] = ()  # pre-processing applied: flatten, deskew(+3.5), unrule, upscale(x2.0)


@dataclass(frozen=True)
class PdfPage:
    page: int  # 1-based
    text: str
    method: str  # text-layer | ocr
    confidence: float | None  # OCR confidence (0-100); None for a text layer


@functools.cache
def _tesseract() -> str:
    """The binary, once its languages are checked; a missing piece is one line naming the apt packages."""
    exe = shutil.which("tesseract")
    if exe is None:
        raise OcrUnavailable(f"tesseract is not installed; install it: sudo apt-get install {APT}")
    out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30)
    have = set(out.stdout.split())
    missing = [lang for lang in LANGS.split("+") if lang not in have]
    if missing:
        pkgs = " ".join(f"tesseract-ocr-{m}" for m in missing)
        raise OcrUnavailable(f"tesseract has no {'+'.join(missing)} language data; install it: "
                             f"sudo apt-get install {pkgs}")
    return exe


def check_available() -> None:
    """Raise OcrUnavailable (a KollmError) unless tesseract and its kor+eng data are installed."""
    _tesseract()


def load_image(data: bytes | Image.Image) -> Image.Image:
    """An image from file bytes (png, jpeg, tiff, webp, ...) as 8-bit grey, EXIF rotation applied.
    Raises ValueError for bytes that are not an image Pillow can decode, or one over MAX_PIXELS."""
    try:
        img = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"the image is {img.width}x{img.height} pixels, over the {MAX_PIXELS:,}-pixel limit")
        img.load()  # a truncated file fails only here, when its pixels are decoded
        img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise ValueError(f"not a readable image ({type(e).__name__}: {e})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))  # transparent screenshots: ink on white
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return img.convert("L")


def image_pages(data: bytes) -> Iterator[Image.Image]:
    """The pages of an image file: every frame of a (multi-page) TIFF, the one picture of anything else (an
    animated WebP's frames are one picture, not pages). Raises ValueError for bytes that are not an image."""
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise ValueError(f"not a readable image ({type(e).__name__}: {e})") from None
    if img.format != "TIFF":
        yield load_image(img)
        return
    for i in range(getattr(img, "n_frames", 1)):
        try:
            img.seek(i)
        except EOFError as e:
            raise ValueError(f"page {i + 1} cannot be read ({e})") from None
        yield load_image(img)


# --- pre-processing --------------------------------------------------------------------------------------

def _ink(grey: np.ndarray) -> np.ndarray:
    """A rough ink mask (Otsu's threshold) for the cheap checks; not what tesseract sees."""
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    total, levels = hist.sum(), np.arange(256)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / total - m0) ** 2 / (w0 * w1)
    between = between[:-1]
    if not np.isfinite(between).any():  # one grey level: a blank page has no ink
        return np.zeros(grey.shape, dtype=bool)
    t = int(np.nanargmax(between))
    return grey <= t


def _small(img: Image.Image, side: int = 800) -> Image.Image:
    scale = side / max(img.size)
    if scale >= 1:
        return img
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)


def skew_angle(img: Image.Image) -> float:
    """Degrees the text lines lean (counter-clockwise positive): the rotation whose horizontal ink profile is
    sharpest, searched coarse (1 deg) then fine (0.2 deg) on a copy at most 800 px wide."""
    small = _small(img)
    ink = Image.fromarray((_ink(np.asarray(small)) * 255).astype(np.uint8))

    def sharpness(angle: float) -> float:
        rows = np.asarray(ink.rotate(angle, resample=Image.NEAREST, expand=True)).sum(axis=1, dtype=np.float64)
        return float(np.sum(np.diff(rows) ** 2))

    coarse = max(np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 0.5, 1.0), key=sharpness)
    fine = max(np.arange(coarse - 0.8, coarse + 0.81, 0.2), key=sharpness)
    return -float(fine)


def line_height(img: Image.Image) -> float:
    """Median height in pixels of the runs of rows holding ink (text lines); 0 when there is no ink."""
    ink = _ink(np.asarray(img))
    rows = ink.mean(axis=1) > 0.002
    edges = np.flatnonzero(np.diff(np.concatenate(([0], rows.astype(np.int8), [0]))))
    heights = edges[1::2] - edges[0::2]
    heights = heights[heights >= 3]  # specks and ruling lines are not text
    return float(np.median(heights)) if heights.size else 0.0


def contrast(img: Image.Image) -> float:
    """Background minus ink level (the 95th and 2nd grey percentiles): ~255 for black on white."""
    lo, hi = np.percentile(np.asarray(img), (2, 95))
    return float(hi - lo)


def flatten(img: Image.Image) -> Image.Image:
    """A grey, unevenly lit or blurred page made ink on white: the page divided by its background (the local
    maximum, taken on a quarter-size copy), then the levels stretched, so that tesseract's own global (Otsu)
    threshold holds over the whole page."""
    small = img.resize((max(1, img.width // 4), max(1, img.height // 4)), Image.BILINEAR)
    bg = small.filter(ImageFilter.MaxFilter(9)).filter(ImageFilter.BoxBlur(4)).resize(img.size, Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / np.maximum(np.asarray(bg, dtype=np.float32), 1) * 255
    return ImageOps.autocontrast(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), cutoff=(1, 0))


def _runs(ink: np.ndarray, length: int) -> np.ndarray:
    """Pixels inside a horizontal run of ink at least `length` long (windowed sums along each row)."""
    h, w = ink.shape
    if length > w:
        return np.zeros_like(ink)
    c = np.concatenate((np.zeros((h, 1), np.int32), ink.cumsum(axis=1, dtype=np.int32)), axis=1)
    full = (c[:, length:] - c[:, :-length]) == length  # window [j, j+length) is all ink
    starts = np.concatenate((np.zeros((h, 1), np.int32), full.cumsum(axis=1, dtype=np.int32)), axis=1)
    idx = np.arange(w)  # pixel x is covered when some full window starts in (x-length, x]
    covered = (starts[:, np.minimum(idx + 1, full.shape[1])] - starts[:, np.maximum(idx + 1 - length, 0)]) > 0
    return covered & ink


def unrule(img: Image.Image) -> tuple[Image.Image, bool]:
    """The page without the ruling lines of a table or a form (ink runs longer than a quarter of the page and
    60 px: no stroke of a letter is): tesseract reads a ruled table as one picture (nothing, in page mode 6)
    or the rules as | characters."""
    ink = _ink(np.asarray(img))
    rules = _runs(ink, max(60, img.width // 4)) | _runs(ink.T, max(60, img.height // 4)).T
    if not rules.any():
        return img, False
    a = np.asarray(img).copy()
    a[np.pad(rules, 1)[2:, 1:-1] | np.pad(rules, 1)[:-2, 1:-1] | rules] = 255  # and the rule's anti-aliased edge
    return Image.fromarray(a), True


def prepare(img: Image.Image, flat: bool = True, deskew: bool = True, rules: bool = True, upscale: bool = True,
            ) -> tuple[Image.Image, tuple[str, ...]]:
    """The page as tesseract reads it best, and the steps taken. Each step runs only where its cheap check
    says the page needs it, so a clean page passes through unchanged (bench/ocr.py measures both)."""
    steps: list[str] = []
    if flat and contrast(img) < GREY_CONTRAST:  # first: the other checks find ink by one global threshold
        img = flatten(img)
        steps.append("flatten")
    if deskew:  # before measuring lines: on a leaning page their rows overlap
        angle = skew_angle(img)
        if abs(angle) >= MIN_SKEW_DEG:
            img = img.rotate(-angle, resample=Image.BICUBIC, expand=True, fillcolor=255)
            steps.append(f"deskew({angle:+.1f})")
    if rules:
        img, found = unrule(img)
        if found:
            steps.append("unrule")
    if upscale:
        h = line_height(img)
        if 0 < h < SMALL_LINE_PX:
            f = min(4.0, TARGET_LINE_PX / h)
            img = img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS)
            steps.append(f"upscale(x{f:.1f})")
    return img, tuple(steps)


# --- recognition -----------------------------------------------------------------------------------------

def _run(img: Image.Image, psm: int) -> tuple[str, str]:
    """tesseract's plain text and its TSV from one run. The text is where tesseract decides the spaces: its
    TSV splits Korean into one "word" per few syllables whether or not a space was there."""
    exe = _tesseract()
    buf = io.BytesIO()
    img.save(buf, "PNG")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    with tempfile.TemporaryDirectory(prefix="kollm-ocr-") as tmp:
        base = str(Path(tmp) / "out")
        try:
            out = subprocess.run([exe, "stdin", base, "-l", LANGS, "--psm", str(psm), "--dpi", "300", "txt", "tsv"],
                                 input=buf.getvalue(), capture_output=True, env=env, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ValueError(f"tesseract took over {TIMEOUT_S:.0f} s on one page") from None
        if out.returncode != 0:
            why = out.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ValueError(f"tesseract failed ({why[-1] if why else f'exit {out.returncode}'})")
        return (Path(base + ".txt").read_text("utf-8", "replace"), Path(base + ".tsv").read_text("utf-8", "replace"))


def _parse(text: str, tsv: str) -> list[OcrLine]:
    """Lines in reading order: the text from tesseract's text output, confidence and box from its TSV rows
    (level 5 = word) of the same line. Both come from one iterator over one result, so the non-empty lines
    pair up in order; where they do not (never seen), the TSV words are joined with spaces instead."""
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") == "5" and (row.get("text") or "").strip() and float(row["conf"]) >= 0:
            groups.setdefault((row["page_num"], row["block_num"], row["par_num"], row["line_num"]), []).append(row)
    texts = [t for t in (" ".join(ln.split()) for ln in nfc(text).splitlines()) if t]
    if len(texts) != len(groups):
        texts = [" ".join(w["text"].strip() for w in words) for words in groups.values()]
    lines = []
    for line, words in zip(texts, groups.values(), strict=True):
        chars = [len(w["text"].strip()) for w in words]
        conf = sum(float(w["conf"]) * c for w, c in zip(words, chars, strict=True)) / sum(chars)
        x0 = min(int(w["left"]) for w in words)
        y0 = min(int(w["top"]) for w in words)
        x1 = max(int(w["left"]) + int(w["width"]) for w in words)
        y1 = max(int(w["top"]) + int(w["height"]) for w in words)
        lines.append(OcrLine(nfc(line), conf, (x0, y0, x1 - x0, y1 - y0)))
    return lines


def _result(lines: list[OcrLine], steps: tuple[str, ...]) -> OcrResult:
    chars = sum(len(ln.text) for ln in lines)
    conf = sum(ln.confidence * len(ln.text) for ln in lines) / chars if chars else 0.0
    return OcrResult("\n".join(ln.text for ln in lines), conf, lines, steps)


def ocr_image(image: bytes | Image.Image, preprocess: bool = True, psm: int = PSM) -> OcrResult:
    """Text, confidence and lines of one image (file bytes or a PIL image). Raises ValueError for bytes that
    are not an image, OcrUnavailable (a KollmError) when tesseract or its Korean data is missing."""
    _tesseract()
    img = load_image(image)
    steps: tuple[str, ...] = ()
    if preprocess:
        img, steps = prepare(img)
    return _result(_parse(*_run(img, psm)), steps)


# --- PDF -------------------------------------------------------------------------------------------------

def pdf_pages(pdf: Path | bytes, preprocess: bool = True) -> Iterator[PdfPage]:
    """Each page's text: its text layer when it has any text, else OCR of the page rendered at PDF_DPI.
    Raises ValueError for a file pypdfium2 cannot open (not a PDF, cut short, encrypted)."""
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(pdf if isinstance(pdf, bytes) else str(pdf))
    except pdfium.PdfiumError as e:
        raise ValueError(f"not a readable PDF ({e})") from None
    try:
        for i in range(len(doc)):
            page = doc[i]
            try:
                textpage = page.get_textpage()
                text = textpage.get_text_bounded()
                textpage.close()
                # pdfium writes a space as NBSP and ends lines with CRLF: plain spaces and newlines
                text = "\n".join(" ".join(ln.split()) for ln in nfc(text).splitlines()).strip()
                if text:
                    yield PdfPage(i + 1, text, "text-layer", None)
                    continue
                img = page.render(scale=PDF_DPI / 72, grayscale=True).to_pil()
            finally:
                page.close()
            res = ocr_image(img, preprocess)
            yield PdfPage(i + 1, res.text, "ocr", res.confidence)
    finally:
        doc.close()

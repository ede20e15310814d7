"""Benchmark of kollm's Korean OCR (data/ocr.py) on project-made images (tests/data/ocr_images.py).

    python bench/ocr.py             # 8 kinds x 5 images, ~2 minutes on 2 cores
    python bench/ocr.py --per-kind 2

1. CER per kind and overall (character edits / reference characters, over all images of a kind), tesseract
   page mode 3 (its default: automatic layout) vs 6 (one block of text), each without and with kollm's
   pre-processing (flatten, deskew, unrule, upscale, each where its check fires), and the steps that fired.
2. Images/s, one page at a time and two side by side (the pipeline's workers, the server's threads).
3. OCR confidence of every text page vs pages with no text (noise, shapes, scribbles): where the
   `[data] ocr_min_confidence` floor sits.
4. PDF page rendering for OCR at 300 dpi: pypdfium2 in-process vs poppler's pdftoppm, ms/page.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))

from ocr_images import KINDS, image_pdf, junk, make, samples  # noqa: E402

from kollm.data import ocr  # noqa: E402
from kollm.data.config import DataConfig  # noqa: E402
from kollm.metrics import char_edit_distance, normalize  # noqa: E402

CONFIGS = [("psm 3", 3, False), ("psm 3 + prep", 3, True), ("psm 6", 6, False), ("psm 6 + prep", 6, True)]


def run_config(items: list, psm: int, prep: bool, workers: int = 1) -> tuple[list, float]:
    def one(s):
        return ocr.ocr_image(s.data, preprocess=prep, psm=psm)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, items))
    return results, len(items) / (time.perf_counter() - t0)


def cer_table(items: list) -> dict:
    rows: dict = {}
    speed: dict = {}
    steps: dict = defaultdict(set)
    confs: list[float] = []
    for label, psm, prep in CONFIGS:
        results, speed[label] = run_config(items, psm, prep)
        edits: dict = defaultdict(int)
        chars: dict = defaultdict(int)
        for s, r in zip(items, results, strict=True):
            edits[s.kind] += char_edit_distance(r.text, s.truth)
            chars[s.kind] += len(normalize(s.truth))
            if (psm, prep) == (ocr.PSM, True):
                steps[s.kind] |= {x.split("(")[0] for x in r.steps}
                confs.append(r.confidence)
        rows[label] = {k: edits[k] / chars[k] for k in edits} | {"overall": sum(edits.values()) / sum(chars.values())}
    print(f"\n## CER by kind ({len(items)} images, {len(items) // len(KINDS)} per kind; lower is better)\n")
    print("| kind | " + " | ".join(label for label, _, _ in CONFIGS) + " | pre-processing that fired (psm 6) |")
    print("|---|" + "---:|" * len(CONFIGS) + "---|")
    for k in [*KINDS, "overall"]:
        cells = " | ".join(f"{rows[label][k]:.3f}" for label, _, _ in CONFIGS)
        print(f"| {k} | {cells} | {', '.join(sorted(steps.get(k, ()))) or '-'} |")
    print("\n## Speed, one image at a time\n")
    print("| config | images/s |\n|---|---:|")
    for label, _, _ in CONFIGS:
        print(f"| {label} | {speed[label]:.2f} |")
    return {"confs": confs}


def throughput(items: list) -> None:
    print(f"\n## Speed of the shipped setting (psm {ocr.PSM} + pre-processing), {os.cpu_count()} cores\n")
    print("| pages side by side | images/s |\n|---:|---:|")
    for workers in (1, 2):
        _, ips = run_config(items, ocr.PSM, True, workers)
        print(f"| {workers} | {ips:.2f} |")


def floor(confs: list[float]) -> None:
    junk_confs = [ocr.ocr_image(junk(i)).confidence for i in range(9)]
    cut = DataConfig().ocr_min_confidence
    print("\n## OCR confidence (0-100): text pages vs pages without text\n")
    print("| pages | n | min | median | max | under the floor |\n|---|---:|---:|---:|---:|---:|")
    for name, c in (("text (all kinds)", confs), ("no text (noise, shapes, scribbles)", junk_confs)):
        c = sorted(c)
        print(f"| {name} | {len(c)} | {c[0]:.1f} | {c[len(c) // 2]:.1f} | {c[-1]:.1f} | "
              f"{sum(x < cut for x in c)} |")
    print(f"\nfloor: [data] ocr_min_confidence = {cut:g}")


def pdf_render() -> None:
    import pypdfium2 as pdfium
    from PIL import Image

    pages = [make("paragraph", i).data for i in range(6)]
    data = image_pdf(pages)
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        doc = pdfium.PdfDocument(data)
        for i in range(len(doc)):
            doc[i].render(scale=ocr.PDF_DPI / 72, grayscale=True).to_pil()
        doc.close()
    pdfium_ms = (time.perf_counter() - t0) / (reps * len(pages)) * 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.pdf"
        path.write_bytes(data)
        t0 = time.perf_counter()
        for _ in range(reps):
            for i in range(1, len(pages) + 1):
                subprocess.run(["pdftoppm", "-r", str(ocr.PDF_DPI), "-gray", "-f", str(i), "-l", str(i),
                                "-singlefile", str(path), f"{tmp}/p"], check=True)
                Image.open(f"{tmp}/p.pgm").load()
        poppler_ms = (time.perf_counter() - t0) / (reps * len(pages)) * 1000
    print(f"\n## PDF page rendering at {ocr.PDF_DPI} dpi (scan-like PDF, {len(pages)} pages x {reps})\n")
    print("| renderer | ms/page | ratio |\n|---|---:|---:|")
    print(f"| pypdfium2 (in-process) | {pdfium_ms:.1f} | 1.00 |")
    print(f"| pdftoppm (poppler, a process per page) | {poppler_ms:.1f} | {poppler_ms / pdfium_ms:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=5)
    args = ap.parse_args()
    ocr.check_available()
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"# kollm OCR bench: {version}, languages {ocr.LANGS}, {os.cpu_count()} cores, float32 CPU")
    items = samples(args.per_kind)
    res = cer_table(items)
    throughput(items)
    floor(res["confs"])
    pdf_render()


if __name__ == "__main__":
    main()

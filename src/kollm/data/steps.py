"""The pipeline's datatrove blocks. Each counts documents and bytes in/out and why it removed any.

Every block records the same stat names (docs_in, bytes_in, docs_out, bytes_out, removed/<reason>)
so report.py can draw one funnel from all of them; removed documents go, with their reason, to
removed/<block>/<rank>.jsonl.gz for `kollm data inspect`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.logging import logger

from kollm.data import sources
from kollm.data.dedup import load_removals
from kollm.data.executors import count_doc
from kollm.data.normalize import normalize_text
from kollm.data.pii import mask_pii
from kollm.data.quality import QualityRules, build_checks
from kollm.data.repair import repair_lines
from kollm.data.sources import iter_documents


def to_row(doc: Document) -> dict:
    """A document as a flat row; metadata keys starting with _ are kollm's own bookkeeping, never written."""
    return {"id": doc.id, "text": doc.text, **{k: v for k, v in doc.metadata.items() if not k.startswith("_")}}


def adapter(_writer: object, doc: Document) -> dict:
    """How datatrove writers lay out a document: kollm's flat {id, source, text, ...}."""
    return to_row(doc)


class KollmStep(PipelineStep):
    type = "🇰🇷 kollm"
    name = "step"

    def __init__(self, removed_dir: str | None = None) -> None:
        super().__init__()
        self.removed_dir = removed_dir

    def process(self, doc: Document) -> Document | str:
        """The document to pass on, or the reason for removing it."""
        raise NotImplementedError

    def count(self, kind: str, doc: Document) -> None:
        self.stat_update(f"docs_{kind}")
        self.stat_update(f"bytes_{kind}", value=len(doc.text.encode("utf-8")))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        writer = None
        if self.removed_dir:
            writer = JsonlWriter(f"{self.removed_dir}/{self.name}", output_filename="${rank}.jsonl.gz", adapter=adapter)
        try:
            for doc in data:
                self.count("in", doc)
                with self.track_time():
                    res = self.process(doc)
                if isinstance(res, str):
                    self.stat_update(f"removed/{res}")
                    if writer is not None:
                        doc.metadata["removed"] = f"{self.name}/{res}"
                        writer.write(doc, rank)
                    continue
                self.count("out", res)
                yield res
        finally:
            if writer is not None:
                writer.close()


class ReadSources(KollmStep):
    """Reads this task's share of the input: whole files when there are enough, else every Nth doc."""

    name = "read"

    def __init__(self, files: list[str], txt_doc_per_file: bool = False, strict: bool = False,
                 audio: sources.AudioOptions | None = None) -> None:
        super().__init__()
        self.files = files
        self.txt_doc_per_file = txt_doc_per_file
        self.strict = strict
        self.audio = audio  # how audio files are transcribed (data/speech.py)

    def problem(self, reason: str, message: str) -> None:
        if self.strict:
            sources.strict(reason, message)
        self.stat_update(f"removed/{reason}")
        if message:
            logger.warning(f"skipped ({reason}): {message}")

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        by_file = len(self.files) >= world_size
        mine = self.files[rank::world_size] if by_file else self.files
        n = 0
        for path in mine:
            p = Path(path)
            self.stat_update("bytes_read", value=p.stat().st_size if p.is_file() else 0)
            for row in iter_documents(p, self.problem, self.txt_doc_per_file, self.audio):
                n += 1
                if not by_file and (n - 1) % world_size != rank:
                    continue
                if not row["text"].strip():
                    self.problem("empty_document", f"{row['source']}: document {row['id']} is empty")
                    continue
                # a reader's own metadata (a transcript's segments) rides along and is written with the document
                doc = Document(text=row["text"], id=row["id"],
                               metadata={"source": row["source"], **row.get("metadata", {})})
                self.count("out", doc)
                count_doc()
                yield doc


class OcrFloor(KollmStep):
    """OCR'd pages read under the confidence floor leave here, to removed/ocr_floor/ with their text for
    `kollm data inspect` (a reader's problems have no document to keep); strict: the run stops at the first."""

    name = "ocr_floor"

    def __init__(self, floor: float, strict: bool = False, removed_dir: str | None = None) -> None:
        super().__init__(removed_dir)
        self.floor, self.strict = floor, strict

    def process(self, doc: Document) -> Document | str:
        why = sources.below_ocr_floor({"source": doc.metadata.get("source"), "metadata": doc.metadata}, self.floor)
        if why is None:
            return doc
        if self.strict:
            sources.strict("low_ocr_confidence", why)
        return "low_ocr_confidence"


class Normalize(KollmStep):
    name = "normalize"

    def __init__(self, html: bool = True, removed_dir: str | None = None) -> None:
        super().__init__(removed_dir)
        self.html = html

    def process(self, doc: Document) -> Document | str:
        doc.text = normalize_text(doc.text, self.html)
        return doc if doc.text else "empty_after_normalize"


class RepairLines(KollmStep):
    name = "repair"

    def __init__(self, method: str = "rules") -> None:
        super().__init__()
        self.method = method

    def process(self, doc: Document) -> Document | str:
        doc.text = repair_lines(doc.text, self.method)
        return doc


class QualityFilter(KollmStep):
    name = "quality"

    def __init__(self, rules: QualityRules, removed_dir: str | None = None) -> None:
        super().__init__(removed_dir)
        self.rules = rules
        self._checks = None

    def process(self, doc: Document) -> Document | str:
        if self._checks is None:  # built in the worker: Kiwi is loaded there, not pickled to it
            self._checks = build_checks(self.rules)
        for name, check in self._checks:
            res = check(doc)
            if res is not True and not (isinstance(res, tuple) and res[0]):
                reason = res[1] if isinstance(res, tuple) else "rejected"
                return f"{name}:{reason}"
        return doc


class MaskPII(KollmStep):
    name = "pii"

    def process(self, doc: Document) -> Document | str:
        counts: Counter = Counter()
        doc.text = mask_pii(doc.text, counts)
        for seg in doc.metadata.get("segments") or ():  # a transcript's segments repeat its text: masked too
            seg["text"] = mask_pii(seg["text"], Counter())
        for placeholder, n in counts.items():
            self.stat_update(f"masked/{placeholder}", value=n)
        return doc


class WriteStage(PipelineStep):
    """Hands documents to the next executor: one plain jsonl per task, passing documents through."""

    type = "🇰🇷 kollm"
    name = "hand-off"

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        df = get_datafolder(self.folder)
        with df.open(f"{rank:05d}.jsonl", "wt") as f:
            for doc in data:
                f.write(json.dumps(to_row(doc), ensure_ascii=False) + "\n")
                yield doc


def read_stage(folder: str, rank: int) -> Iterator[Document]:
    df = get_datafolder(folder)
    if not df.isfile(f"{rank:05d}.jsonl"):
        return
    with df.open(f"{rank:05d}.jsonl", "rt") as f:
        for pos, line in enumerate(f):
            row = json.loads(line)
            yield Document(text=row.pop("text"), id=row.pop("id"), metadata={**row, "_pos": pos})


class ReadStage(PipelineStep):
    """Reads back a task's hand-off file (the documents that passed the per-document stages)."""

    type = "🇰🇷 kollm"
    name = "hand-off read"

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is not None:  # the step before passes documents on: drain it so its files are complete
            for _ in data:
                pass
        yield from read_stage(self.folder, rank)


class Dedup(KollmStep):
    """Drops the documents the cluster step marked for this task; keeps the others' cluster sizes.

    Both passes cluster every document (exact and near signatures are made in the same step), and the
    cluster step keeps each cluster's first document, so an exact copy's kept original is also the one
    the near pass keeps (identical texts have identical MinHash). A near cluster is only counted when it
    holds more than the document's exact copies.
    """

    def __init__(self, cluster_folder: str, name: str, removed_dir: str | None = None) -> None:
        self.name = name  # before super().__init__, which names the stats after it
        super().__init__(removed_dir)
        self.cluster_folder = cluster_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._remove, self._sizes = load_removals(self.cluster_folder, rank)
        return super().run(data, rank, world_size)

    def process(self, doc: Document) -> Document | str:
        if doc.metadata["_pos"] in self._remove:
            return "duplicate"
        size = self._sizes.get(doc.metadata["_pos"])
        if size and size > doc.metadata.get("exact_dedup_cluster_size", 1):
            doc.metadata[f"{self.name}_cluster_size"] = size
            self.stat_update("clusters")
            self.stat_update("cluster_size", value=size, unit="cluster")
        return doc

"""`kollm data run`: the corpus pipeline as a chain of datatrove executors.

    clean (N tasks): read -> normalize -> repair -> quality -> pii -> hand-off file
                     -> exact-duplicate hashes -> MinHash signatures
    exact buckets (1) -> exact clusters (1) -> near buckets (B) -> near clusters (1)
    dedup (N): hand-off file -> drop exact copies -> drop near copies -> clean shards [-> token shards]
    report (1): stats.json, funnel.png

All per-document work is one step, so N workers split nearly all of the time; the bucket and cluster
steps need every task's signatures, so they are separate steps (and quick). Only the executor class
differs between a laptop (local processes), Slurm and Ray (executors.py); datatrove's per-task
completion markers (logs/<step>/completions/) make a re-run do only the unfinished tasks. A task that
was killed rewrites its own output files from the start, so nothing is duplicated.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
from datatrove.utils.hashing import HashConfig

from kollm.data.config import DataConfig
from kollm.data.dedup import ExactSignature, FirstCopyCluster, KoreanMinhashSignature
from kollm.data.executors import make_executor
from kollm.data.quality import QualityRules
from kollm.data.report import Report
from kollm.data.shards import TokenShardWriter
from kollm.data.sources import OCR_SUFFIXES, list_input_files
from kollm.data.speech import AudioOptions, check_folder, cores
from kollm.data.steps import (
    Dedup,
    MaskPII,
    Normalize,
    OcrFloor,
    QualityFilter,
    ReadSources,
    ReadStage,
    RepairLines,
    WriteStage,
    adapter,
)
from kollm.errors import KollmError
from kollm.files import write_json


def _plan_tasks(cfg: DataConfig, files: list[Path]) -> int:
    """Tasks are fixed for the life of an output folder: resume needs the same split of the work."""
    out = Path(cfg.out)
    names = [str(f) for f in files]
    plan = out / "run.json"
    if plan.is_file():
        saved = json.loads(plan.read_text())
        if saved["files"] != names:
            raise KollmError(f"{out} holds a run over other input files; pass a new --out (or delete {out})")
        return int(saved["tasks"])
    tasks = cfg.tasks or max(cfg.workers, min(len(files), 1024))
    write_json(plan, {"files": names, "tasks": tasks})
    return tasks


def build_executors(cfg: DataConfig, verbose: bool = False) -> list[Any]:
    """The executors in order; each depends on the one before (running the last runs them all)."""
    files = list_input_files(cfg.inputs)
    if not files:
        raise KollmError(f"no input files found in {cfg.inputs}; pass --data with jsonl/txt/parquet/xml.bz2 files"
                         " (or set [data].inputs in the recipe)")
    tasks = _plan_tasks(cfg, files)
    out, work = cfg.out, f"{cfg.out}/work"
    removed = f"{out}/removed" if cfg.keep_removed else None
    audio = None
    if cfg.whisper:  # checked here, before any worker starts; each worker loads it on its first audio file
        audio = AudioOptions(str(check_folder(cfg.whisper)), cfg.whisper_language,
                             threads=max(1, cores() // max(1, min(cfg.workers, tasks))))
    clean: list = [ReadSources([str(f) for f in files], cfg.txt_doc_per_file, cfg.strict, audio)]
    if any(f.name.lower().endswith(OCR_SUFFIXES) for f in files):  # pages OCR could barely read leave here
        clean.append(OcrFloor(cfg.ocr_min_confidence, cfg.strict, removed))
    if cfg.normalize:
        clean.append(Normalize(cfg.html_to_text, removed))
    if cfg.repair_lines != "off":
        clean.append(RepairLines(cfg.repair_lines))
    if cfg.quality:
        rules = QualityRules(
            min_chars=cfg.min_chars, max_chars=cfg.max_chars, min_hangul_share=cfg.min_hangul_share,
            spam_min_hits=cfg.spam_min_hits, fineweb2=cfg.fineweb2_filters,
        )
        clean.append(QualityFilter(rules, removed))
    if cfg.mask_pii:
        clean.append(MaskPII())

    passes: list[tuple[str, Any]] = []
    if cfg.exact_dedup:
        passes.append(("exact", ExactSignature(f"{work}/exact/sigs")))
    if cfg.near_dedup:
        mh = MinhashConfig(
            n_grams=cfg.shingle_size, num_buckets=cfg.minhash_buckets, hashes_per_bucket=cfg.minhash_hashes_per_bucket,
            hash_config=HashConfig(64, "xxhash"),
        )
        passes.append(("near", KoreanMinhashSignature(f"{work}/near/sigs", mh, cfg.shingle)))
    final: list = []
    if passes:
        # each signature step consumes the documents, so the next one re-reads the task's hand-off file
        clean.append(WriteStage(f"{work}/docs"))
        for i, (_, sig) in enumerate(passes):
            clean += [ReadStage(f"{work}/docs")] if i else []
            clean.append(sig)
        final.append(ReadStage(f"{work}/docs"))
    plan: list[tuple[str, list, int]] = [("clean", clean, tasks)]
    for kind, sig in passes:
        d = f"{work}/{kind}"
        plan += [
            (f"{kind}-buckets", [MinhashDedupBuckets(f"{d}/sigs", f"{d}/buckets", config=sig.config)],
             sig.config.num_buckets),
            (f"{kind}-clusters", [FirstCopyCluster(f"{d}/buckets", f"{d}/clusters", config=sig.config)], 1),
        ]
        final.append(Dedup(f"{d}/clusters", f"{kind}_dedup", removed))

    if cfg.output_format == "parquet":
        final.append(ParquetWriter(f"{out}/clean", output_filename="${rank}.parquet", adapter=adapter))
    elif cfg.output_format == "jsonl":
        final.append(JsonlWriter(f"{out}/clean", output_filename="${rank}.jsonl.gz", adapter=adapter))
    else:
        raise KollmError(f"output_format must be jsonl or parquet, not {cfg.output_format!r}")
    if cfg.tokenizer:
        final.append(TokenShardWriter(cfg.tokenizer, f"{out}/tokens"))
    if passes:
        plan.append(("dedup", final, tasks))
    else:
        clean += final  # nothing to cluster: the documents go straight to the writers
    plan.append(("report", [Report(out)], 1))

    executors: list[Any] = []
    for name, pipeline, n in plan:
        executors.append(make_executor(cfg, pipeline, n, name, executors[-1] if executors else None, verbose))
    return executors


@contextmanager
def _output_lock(out: Path):
    """One run per output folder. The lock is an flock on OUT/.lock: forked workers inherit it, so it
    is held until the last process of a run is gone (a worker orphaned by a killed parent included),
    and the kernel drops it by itself, so a crash never leaves a stale lock."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise KollmError(f"{out} is in use by another `kollm data run` (pid {holder}); wait for it to end, "
                             f"or stop it, before running again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def run_pipeline(cfg: DataConfig, verbose: bool = False) -> Path:
    """Run (or finish) the pipeline; returns the output folder. `verbose` shows datatrove's task logs."""
    if cfg.workers < 1:
        raise KollmError(f"--workers must be at least 1, got {cfg.workers}")
    out = Path(cfg.out)
    with _output_lock(out), _console(verbose):
        executors = build_executors(cfg, verbose)
        executors[-1].run()  # runs the chain it depends on first (or submits it, on Slurm)
    return out


@contextmanager
def _console(verbose: bool):
    """datatrove logs every step at INFO on the driver too (Ray, Slurm submission): warnings only, unless
    verbose; afterwards its default console logger is back."""
    from datatrove.utils.logging import logger, setup_default_logger

    if not verbose:
        logger.remove()
        logger.add(sys.stderr, level="WARNING", format="{level}: {message}")
    try:
        yield
    finally:
        setup_default_logger()

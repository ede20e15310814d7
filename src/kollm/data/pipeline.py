"""`kollm data run`: the corpus pipeline as a chain of datatrove executors.

    clean (N tasks): read -> normalize -> repair -> quality -> pii -> [hand-off + exact hashes]
    exact buckets (1) -> exact clusters (1)
    exact filter (N): hand-off -> drop exact copies -> [hand-off + MinHash signatures]
    minhash buckets (B) -> minhash clusters (1)
    final (N): hand-off -> drop near copies -> clean jsonl/parquet shards [-> token shards]
    report (1): stats.json, funnel.png

Only the executor class differs between a laptop (local processes), Slurm and Ray; datatrove's
per-task completion markers (logs/<step>/completions/) make a re-run do only the unfinished tasks.
A task that was killed rewrites its own output files from the start, so nothing is duplicated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
from datatrove.utils.hashing import HashConfig

from kollm.data.dedup import ExactSignature, KoreanMinhashSignature
from kollm.data.pipeline_config import PipelineConfig
from kollm.data.quality import QualityRules
from kollm.data.report import Report
from kollm.data.shards import TokenShardWriter
from kollm.data.sources import list_input_files
from kollm.data.steps import Dedup, MaskPII, Normalize, QualityFilter, ReadSources, RepairLines, WriteStage, adapter
from kollm.errors import KollmError
from kollm.files import write_json


def _plan_tasks(cfg: PipelineConfig, files: list[Path]) -> int:
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


def _executor(cfg: PipelineConfig, pipeline: list, tasks: int, name: str, depends: Any) -> Any:
    logs = f"{cfg.out}/logs/{name}"
    if cfg.executor == "local":
        return LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=min(cfg.workers, tasks), logging_dir=logs, depends=depends
        )
    if cfg.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        if not cfg.slurm_partition:
            raise KollmError("executor = slurm needs slurm_partition (the queue to submit to)")
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, time=cfg.slurm_time, partition=cfg.slurm_partition, logging_dir=logs,
            job_name=f"kollm-{name}", depends=depends, workers=cfg.workers if cfg.workers > 0 else -1,
        )
    if cfg.executor == "ray":
        try:
            from datatrove.executor.ray import RayPipelineExecutor
        except ImportError:
            raise KollmError("executor = ray needs Ray: pip install 'ray[default]'") from None
        return RayPipelineExecutor(pipeline, tasks=tasks, workers=cfg.workers, logging_dir=logs, depends=depends)
    raise KollmError(f"executor must be local, slurm or ray, not {cfg.executor!r}")


def build_executors(cfg: PipelineConfig) -> list[Any]:
    """The executors in order; each depends on the one before (running the last runs them all)."""
    files = list_input_files(cfg.inputs)
    if not files:
        raise KollmError(f"no input files found in {cfg.inputs}; pass --input with jsonl/txt/parquet/xml.bz2 files")
    tasks = _plan_tasks(cfg, files)
    out, work = cfg.out, f"{cfg.out}/work"
    removed = f"{out}/removed" if cfg.keep_removed else None
    steps: list = [ReadSources([str(f) for f in files], cfg.txt_doc_per_file)]
    if cfg.normalize:
        steps.append(Normalize(cfg.html_to_text, removed))
    if cfg.repair_lines != "off":
        steps.append(RepairLines(cfg.repair_lines))
    if cfg.quality:
        rules = QualityRules(
            min_chars=cfg.min_chars, max_chars=cfg.max_chars, min_hangul_share=cfg.min_hangul_share,
            spam_min_hits=cfg.spam_min_hits, fineweb2=cfg.fineweb2_filters,
        )
        steps.append(QualityFilter(rules, removed))
    if cfg.mask_pii:
        steps.append(MaskPII())

    executors: list[Any] = []
    stage = "clean"
    passes = []
    if cfg.exact_dedup:
        passes.append(("exact", None))
    if cfg.near_dedup:
        mh = MinhashConfig(
            n_grams=cfg.shingle_size, num_buckets=cfg.minhash_buckets, hashes_per_bucket=cfg.minhash_hashes_per_bucket,
            hash_config=HashConfig(64, "xxhash"),
        )
        passes.append(("near", mh))
    for kind, mh in passes:
        hand_off, d = f"{work}/{stage}", f"{work}/{kind}"
        sig = ExactSignature(f"{d}/sigs") if mh is None else KoreanMinhashSignature(f"{d}/sigs", mh, cfg.shingle)
        config = sig.config
        steps += [WriteStage(hand_off), sig]
        for name, pipeline, n in (
            (stage, steps, tasks),
            (f"{kind}-buckets", [MinhashDedupBuckets(f"{d}/sigs", f"{d}/buckets", config=config)], config.num_buckets),
            (f"{kind}-clusters", [MinhashDedupCluster(f"{d}/buckets", f"{d}/clusters", config=config,
                                                      save_cluster_size=True)], 1),
        ):
            executors.append(_executor(cfg, pipeline, n, name, executors[-1] if executors else None))
        stage = f"{kind}-dedup"
        steps = [Dedup(hand_off, f"{d}/clusters", f"{kind}_dedup", removed)]

    if cfg.output_format == "parquet":
        steps.append(ParquetWriter(f"{out}/clean", output_filename="${rank}.parquet", adapter=adapter))
    elif cfg.output_format == "jsonl":
        steps.append(JsonlWriter(f"{out}/clean", output_filename="${rank}.jsonl.gz", adapter=adapter))
    else:
        raise KollmError(f"output_format must be jsonl or parquet, not {cfg.output_format!r}")
    if cfg.tokenizer:
        steps.append(TokenShardWriter(cfg.tokenizer, f"{out}/tokens"))
    executors.append(_executor(cfg, steps, tasks, stage, executors[-1] if executors else None))
    executors.append(_executor(cfg, [Report(out)], 1, "report", executors[-1]))
    return executors


def run_pipeline(cfg: PipelineConfig) -> Path:
    """Run (or finish) the pipeline; returns the output folder."""
    if cfg.workers < 1:
        raise KollmError(f"--workers must be at least 1, got {cfg.workers}")
    executors = build_executors(cfg)
    executors[-1].run()  # runs the chain it depends on first (or submits it, on Slurm)
    return Path(cfg.out)

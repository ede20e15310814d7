"""Export any checkpoint of a run (default: the latest complete one) as a Hugging Face folder with the
run's tokenizer. Works on checkpoints saved by any number of processes: DCP gathers the shards."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch.distributed.checkpoint as dcp

from kollm.errors import KollmError
from kollm.model import KollmLM, ModelConfig, export_hf
from kollm.train import checkpoint as ckpt


def export_checkpoint(run_dir: str | Path, step: int | None = None, out: str | Path | None = None) -> Path:
    """Write OUT (default RUN/export-step-XXXXXXXX) from checkpoint `step` of RUN; returns OUT."""
    from kollm.tokenizer import load_tokenizer

    run_dir = Path(run_dir)
    if step is None:
        path = ckpt.latest_valid(run_dir)
        if path is None:
            raise KollmError(f"{run_dir} holds no complete checkpoint to export")
    else:
        path = ckpt.ckpt_root(run_dir) / f"{ckpt.PREFIX}{step:08d}"
        why = ckpt.problem(path) if (path / "manifest.json").is_file() else "no such complete checkpoint"
        if why:
            have = ", ".join(p.name for p in ckpt.complete_checkpoints(run_dir)) or "none"
            raise KollmError(f"cannot export {path.name}: {why}; complete checkpoints: {have}")
    if not (run_dir / "tokenizer" / "tokenizer.json").is_file():
        raise KollmError(f"{run_dir}/tokenizer is missing; it is saved there when training starts")
    state = ckpt.read_trainer_state(path)
    model = KollmLM(ModelConfig(**state["model_cfg"]))
    sd = {"model": model.state_dict()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        dcp.load(sd, checkpoint_id=str(path))
    model.load_state_dict(sd["model"])
    out = Path(out) if out else run_dir / f"export-{path.name}"
    return export_hf(model, load_tokenizer(run_dir / "tokenizer"), out,
                     extra={"step": state["step"], "tokens": state["tokens"], "checkpoint": str(path)})

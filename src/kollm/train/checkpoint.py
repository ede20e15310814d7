"""Sharded, resumable checkpoints with torch.distributed.checkpoint (DCP).

    OUT/checkpoint/step-00000040/
        .metadata, __0_0.distcp ...   model + optimiser state (DCP: each rank writes its shards; loads reshard,
                                      so a checkpoint saved by 2 processes resumes in 1 and vice versa)
        trainer.json                   step, tokens, seconds, losses, LR-schedule inputs, data-sampler state,
                                      model config
        rng-<rank>.pt                  torch RNG state of each rank
        manifest.json                  written last: size and CRC32 of every file above

Everything is written into `.step-XXXXXXXX.tmp/` and renamed when complete, so a kill -9 mid-save leaves a
.tmp folder (ignored, removed later), never a half checkpoint under a real name. A checkpoint whose files
disagree with its manifest (truncated, edited, bit-rotted) is skipped with a message and the previous one
is used.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from kollm.files import write_json
from kollm.train.distributed import DistInfo, barrier

PREFIX = "step-"


def ckpt_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoint"


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints with a manifest, oldest first."""
    root = ckpt_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "manifest.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def problem(path: Path) -> str | None:
    """None if every file matches the manifest, else what is wrong (one line)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        return f"unreadable manifest ({e})"
    for name, (size, crc) in manifest["files"].items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, the manifest says {size} (partial write?)"
        if _crc(f) != crc:
            return f"{name} fails its CRC32 check (corrupted)"
    return None


def latest_valid(run_dir: str | Path, warn: Callable[[str], None] = print) -> Path | None:
    for path in reversed(complete_checkpoints(run_dir)):
        why = problem(path)
        if why is None:
            return path
        warn(f"kollm: skipping checkpoint {path.name}: {why}")
    return None


def read_trainer_state(path: Path) -> dict:
    return json.loads((path / "trainer.json").read_text())


def save(run_dir: str | Path, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], trainer: dict,
         info: DistInfo, keep: int) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint folder."""
    root = ckpt_root(run_dir)
    name = f"{PREFIX}{trainer['step']:08d}"
    final, tmp = root / name, root / f".{name}.tmp"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(info)
    model_sd, optim_sd = get_state_dict(model, list(optimizers))
    with warnings.catch_warnings():  # single process: DCP warns that it assumes no process group, which is right
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(torch.get_rng_state(), tmp / f"rng-{info.rank}.pt")
    barrier(info)
    if info.is_main:
        write_json(tmp / "trainer.json", trainer)
        files = sorted(p for p in tmp.iterdir() if p.is_file() and not p.name.startswith(".tmp"))
        manifest = {"files": {p.name: [p.stat().st_size, _crc(p)] for p in files}, "world": info.world}
        write_json(tmp / "manifest.json", manifest)
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)  # a re-save of the same step (e.g. after resume)
        os.replace(tmp, final)
        _fsync_dir(root)
        _prune(run_dir, keep)
    barrier(info)
    return final


def load(path: Path, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], info: DistInfo) -> dict:
    """Collective. Loads model + optimiser (resharded to this world size) and this rank's RNG; returns trainer.json."""
    model_sd, optim_sd = get_state_dict(model, list(optimizers))  # also creates empty optimiser state to fill
    state = {"model": model_sd, "optim": optim_sd}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, list(optimizers), model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = path / f"rng-{info.rank}.pt"
    torch.set_rng_state(torch.load(rng if rng.exists() else path / "rng-0.pt", weights_only=True))
    return read_trainer_state(path)


def clean_partial(run_dir: str | Path, warn: Callable[[str], None] = print) -> None:
    """Remove .tmp folders left by a save that was killed."""
    root = ckpt_root(run_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(f".{PREFIX}") and p.name.endswith(".tmp"):
                warn(f"kollm: removing partial checkpoint {p.name} (its save was interrupted)")
                shutil.rmtree(p, ignore_errors=True)


def _prune(run_dir: str | Path, keep: int) -> None:
    for old in complete_checkpoints(run_dir)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

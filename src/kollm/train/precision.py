"""Pick device and dtype from the hardware, never by assumption.

On CPUs without AMX, bf16 matmuls are emulated: measured ~0.3 GFLOP/s in bf16 vs ~140 GFLOP/s in fp32
on the 2-core AVX2 machines kollm is developed on, so CPU training runs in float32.
"""

from __future__ import annotations

import torch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype for matmuls: bf16 on GPUs that support it, float32 everywhere else."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def configure(device: torch.device, threads: int = 0) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":  # TF32 for the float32 parts (optimizer math stays float32)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def check_compiler(device: torch.device) -> None:
    """torch.compile on CPU generates C++ and needs a compiler; say so before training starts, not mid-step."""
    import os
    import shutil

    from kollm.errors import KollmError

    if device.type == "cpu" and not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        raise KollmError("compile = true needs a C++ compiler for torch.compile on CPU (none found: no g++, "
                         "clang++ or $CXX); install one (apt install g++) or set compile = false")

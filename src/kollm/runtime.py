"""The one place that picks device and dtype, for every stage (train, eval, serve, interop).

Never by assumption: on CPUs without AMX, bf16 matmuls are emulated (measured ~0.3 GFLOP/s in bf16 vs
~140 GFLOP/s in fp32 on the 2-core AVX2 machines kollm is developed on), so CPUs run float32 and bf16 is
used only on GPUs that support it natively.
"""

from __future__ import annotations

import os
import shutil

import torch

from kollm.errors import KollmError


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device | None = None) -> torch.dtype:
    """bf16 on GPUs with native bf16, float32 everywhere else.

    Training uses it as the autocast dtype (master weights stay float32); inference (eval, serve) loads
    weights in it.
    """
    device = device or pick_device()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def configure(device: torch.device, threads: int = 0) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":  # TF32 for the float32 parts (optimizer math stays float32)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def configure_varying_shapes(device: torch.device) -> None:
    """For work that meets a new attention shape at nearly every step: serving and evaluation (rows x KV length)
    and tuning (packed rows of changing length). cuDNN's attention, which torch 2.11 picks first on Hopper GPUs,
    builds a plan for each new shape: on an H200, 59 ms at first sight against 0.1 ms for the flash and
    memory-efficient kernels, and the engine's first round of 16 streams ran at 97 tok/s instead of 400, a fresh
    single stream at 17 tok/s instead of 204 (bench/results/gpu_check.md). Training's fixed shapes
    keep torch's choice."""
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)


def check_compiler(device: torch.device) -> None:
    """torch.compile on CPU generates C++ and needs a compiler; say so before training starts, not mid-step."""
    if device.type == "cpu" and not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        raise KollmError("compile = true needs a C++ compiler for torch.compile on CPU (none found: no g++, "
                         "clang++ or $CXX); install one (apt install g++) or set compile = false")


def release_memory() -> None:
    """Hand memory the process freed back to the OS (glibc's malloc_trim; elsewhere nothing). glibc keeps freed
    heap pages, and a server's peak (a batch of long prompts, a big request body) would otherwise stay in its RSS:
    measured on Gemma-3-270M, ~640 MB of the growth after a load test. Call it when idle: it takes milliseconds."""
    global _trim
    if _trim is None:
        try:
            import ctypes
            import ctypes.util

            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: object = None


def drop_file_pages(tensors: list[torch.Tensor]) -> int:
    """Drop from memory the pages of tensors read from a memory-mapped weights file (safetensors) that nothing will
    read again (Linux; elsewhere nothing). Pages of any other memory are left alone. Serving fuses q/k/v and gate/up
    into new tensors: the originals' pages, read once to copy them, stayed in the RSS (~0.3 GB of Gemma-3-270M's).
    Clean file pages come back from the file if touched after all. Returns the bytes dropped."""
    if not tensors or not os.path.exists("/proc/self/maps"):
        return 0
    import ctypes
    import mmap

    files = []  # (start, end) of private mappings of .safetensors files
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].endswith(".safetensors") and parts[1].startswith("r") and \
                    parts[1][3] == "p":
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                files.append((lo, hi))
    libc = ctypes.CDLL(None, use_errno=True)
    page, dropped = mmap.PAGESIZE, 0
    for t in tensors:
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        if not any(lo <= start and end <= hi for lo, hi in files):
            continue
        first, last = -(-start // page) * page, end // page * page  # whole pages inside the tensor only
        if last > first and libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4) == 0:
            dropped += last - first  # 4: MADV_DONTNEED
    return dropped

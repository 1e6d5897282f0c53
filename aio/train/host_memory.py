"""How the process's C heap hands out the big host buffers of a CPU step: ``cpu_malloc`` = auto | cache | system.

torch's CPU tensors come from glibc's ``malloc``. By default glibc serves every block over its mmap threshold
(128 KiB, rising to at most 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` on free, so each
activation of a training step is a new mapping whose pages the kernel faults in and zeroes again, every step.
Measured on this project's 2-core box (batch 2 x 128^2, fp32, ``benchmarks/results/train_step.txt``): the
official Restormer takes 1.5 M minor page faults per training step (~6 GB mapped and zeroed) and 12.1 s on
glibc's defaults, 0 faults and 8.3 s with ``cache``.

``cache`` keeps freed memory in the heap for the next step instead (``mallopt(M_MMAP_MAX, 0)``: no mmap'd
blocks; ``M_TRIM_THRESHOLD`` at its maximum: the heap is not shrunk), the same idea as CUDA's caching
allocator or PyTorch's CPU launcher preloading jemalloc/tcmalloc. The process's resident memory then stays at
its peak (a training step reaches that peak anyway). Values are untouched: only where the bytes live changes.
``system`` leaves (or puts back) glibc's defaults; ``auto`` = ``cache`` on a CPU device where glibc is the C
library, else ``system``. The setting is process-wide: the trainer, ``aio-eval`` and ``aio-restore`` apply
it at start, DataLoader workers inherit it by fork.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

import torch

MALLOC_CHOICES = ("auto", "cache", "system")

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_INT_MAX = 2**31 - 1

_applied: str = "system"  # what this process's heap runs under now


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """glibc, or None where the C library is another (musl, macOS, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def malloc_cache_supported() -> bool:
    """True where ``cpu_malloc=cache`` can be applied (glibc's ``mallopt``)."""
    return _glibc() is not None


def resolve_cpu_malloc(name: str | None, device: torch.device | str, key: str = "trainer.cpu_malloc") -> str:
    """``cache`` or ``system`` for ``name`` on ``device``; a bad value is a one-line ``ValueError`` naming
    ``key`` and the fix."""
    name = "auto" if name in (None, "", "null") else str(name)
    if name not in MALLOC_CHOICES:
        raise ValueError(f"{key}={name} is not one of {', '.join(MALLOC_CHOICES)}")
    if name == "cache" and not malloc_cache_supported():
        raise ValueError(f"{key}=cache needs glibc's mallopt (Linux with glibc); use {key}=auto or system")
    if name == "auto":
        return "cache" if torch.device(device).type == "cpu" and malloc_cache_supported() else "system"
    return name


def apply_cpu_malloc(name: str | None, device: torch.device | str, key: str = "trainer.cpu_malloc") -> str:
    """Resolve ``name`` (see :func:`resolve_cpu_malloc`) and set this process's heap to it; returns the mode.

    ``system`` after ``cache`` in the same process puts glibc's default limits back (blocks already cached
    stay in the heap until they are reused or the heap top is trimmed).
    """
    global _applied
    mode = resolve_cpu_malloc(name, device, key)
    libc = _glibc()
    if libc is None or mode == _applied:
        return mode
    if mode == "cache":
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    else:
        ok = libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    if not ok:
        raise RuntimeError(f"{key}={mode}: glibc's mallopt refused the setting; use {key}=system")
    _applied = mode
    return mode


def current_cpu_malloc() -> str:
    """The mode this process's heap runs under (``system`` until :func:`apply_cpu_malloc` sets ``cache``)."""
    return _applied


__all__ = ["MALLOC_CHOICES", "malloc_cache_supported", "resolve_cpu_malloc", "apply_cpu_malloc",
           "current_cpu_malloc"]

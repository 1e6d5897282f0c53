"""Numerics and speed switches of a run: ``amp`` (none | bf16 | fp16 | auto), ``torch.compile``.

``auto`` picks bf16 autocast where the hardware runs it natively (CUDA devices with bf16 support; CPUs
with AMX or AVX512-BF16, where oneDNN's bf16 convs and matmuls are ~2x fp32) and fp32 elsewhere (bf16
emulated on AVX2 CPUs is slower than fp32). Used by the trainer, ``aio-eval`` and ``aio-restore`` alike.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import torch
from torch import nn

AMP_CHOICES = ("none", "bf16", "fp16", "auto")
_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 CPU features present (``amx_bf16``, ``avx512_bf16``), from /proc/cpuinfo (Linux).

    ``torch.backends.cpu.get_cpu_capability()`` reports only ``AVX512`` on such CPUs (it names the
    vector ISA torch's own kernels use, not bf16 support), so the kernel's flags decide.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


def device_has_fast_bf16(device: torch.device | str) -> bool:
    """True where bf16 autocast is native and fast: CUDA with bf16 support, CPUs with AMX/AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_amp(name: str | None, device: torch.device | str) -> str:
    """The concrete ``amp`` mode (``none`` | ``bf16`` | ``fp16``) for ``name`` on ``device``.

    ``auto`` -> ``bf16`` where :func:`device_has_fast_bf16`, else ``none``. A bad name or fp16 off CUDA is
    a one-line ``ValueError`` naming ``trainer.amp`` and the fix.
    """
    device = torch.device(device)
    name = "none" if name in (None, "", "null", "fp32") else str(name)
    if name not in AMP_CHOICES:
        raise ValueError(f"trainer.amp={name} is not one of {', '.join(AMP_CHOICES)}")
    if name == "auto":
        return "bf16" if device_has_fast_bf16(device) else "none"
    if name == "fp16" and device.type != "cuda":
        raise ValueError("trainer.amp=fp16 needs a CUDA device; use trainer.amp=bf16 (or auto) on CPU")
    return name


def amp_dtype(name: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``name`` on ``device`` (None = fp32), after :func:`resolve_amp`."""
    return _DTYPES[resolve_amp(name, device)]


def compile_unsupported_reason(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` (inductor) cannot run on ``device`` here, or None when it can."""
    from torch._dynamo import is_dynamo_supported

    device = torch.device(device)
    if not is_dynamo_supported():
        return "torch.compile (dynamo) does not support this Python/platform"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "inductor needs the triton package for CUDA (pip install triton)"
        return None
    if device.type == "cpu":
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx
        names = [c for c in (cxx if isinstance(cxx, (list, tuple)) else [cxx]) if c] + ["g++", "c++", "clang++"]
        if not any(shutil.which(c) for c in names):
            return "inductor's CPU backend needs a C++ compiler (g++ or clang++) on PATH"
        return None
    return f"device type {device.type!r} is not supported by inductor"


def maybe_compile(model: nn.Module, enabled: bool, device: torch.device | str) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (the module's parameters stay shared with ``model``), else
    ``model``; a platform that cannot compile raises a one-line ``RuntimeError`` before any work starts."""
    if not enabled:
        return model
    reason = compile_unsupported_reason(device)
    if reason is not None:
        raise RuntimeError(f"trainer.compile=true but {reason}; set trainer.compile=false")
    return torch.compile(model)


__all__ = [
    "AMP_CHOICES",
    "cpu_bf16_flags",
    "device_has_fast_bf16",
    "resolve_amp",
    "amp_dtype",
    "compile_unsupported_reason",
    "maybe_compile",
]

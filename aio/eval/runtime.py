"""Helpers shared by ``aio-eval`` and ``aio-restore``: device and AMP choice, loading a checkpoint's model."""

from __future__ import annotations

import torch


def show_progress(flag) -> bool:
    """Progress bars only on a terminal: in a log file (a pipe, CI, SLURM) tqdm's redraws become repeated
    lines such as ``eval derain: 0/3``."""
    import sys

    return bool(flag) and sys.stderr.isatty()


def pick_device(name: str | None) -> torch.device:
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return dev


def amp_dtype(name: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (None = fp32); ``auto`` = bf16 where the device runs it natively (see
    aio/train/precision.py). Metrics are unaffected in kind: they stay float64 on 8-bit-rounded outputs."""
    if name in (None, "", "none", "null", "fp32", False):
        return None
    if name == "auto":
        from aio.train.precision import amp_dtype as resolved

        return resolved("auto", device)
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"amp={name!r} unknown; choose from [null, bf16, fp16, auto]")
    if table[name] is torch.float16 and device.type == "cpu":
        raise ValueError("amp=fp16 needs a GPU; use amp=bf16 or amp=null on CPU")
    return table[name]


def load_model_and_state(checkpoint: str, use_ema: bool, device: torch.device):
    """(model on ``device`` in eval mode, its config, the checkpoint's ``mlflow_run_id`` and ``step``)."""
    from aio.train.checkpoint import load_checkpoint, load_model

    model, cfg = load_model(checkpoint, use_ema=use_ema)
    ckpt = load_checkpoint(checkpoint)
    meta = {"mlflow_run_id": ckpt.get("mlflow_run_id"), "step": int(ckpt.get("step") or 0),
            "has_ema": ckpt.get("ema") is not None}
    del ckpt
    return model.to(device).eval(), cfg, meta

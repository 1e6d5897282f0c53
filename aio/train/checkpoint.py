"""Checkpoints: atomic writes, safe loads, and rebuilding a model from what a checkpoint carries.

A checkpoint (``last.pt``) is a plain dict that holds everything needed to continue or reuse a run:
``model``, ``ema`` (or None), ``optimizer``, ``scheduler``, ``scaler``, ``step``, ``rng``, ``config``
(the resolved config as plain containers), ``mlflow_run_id`` and ``aio_version``. It is written to a
temporary file in the same folder and renamed over the old one, so an interrupted write never destroys
the previous checkpoint. Reads use ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_NAME = "last.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model it is loaded into."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files a kill during a save left behind (the renamed file is never one)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(f".{CHECKPOINT_NAME}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def resolve_checkpoint_path(path_or_dir: str | os.PathLike) -> Path:
    """Accept a checkpoint file or a run folder (``<dir>/last.pt`` or ``<dir>/checkpoints/last.pt``)."""
    p = Path(path_or_dir).expanduser()
    if p.is_dir():
        for cand in (p / CHECKPOINT_NAME, p / "checkpoints" / CHECKPOINT_NAME):
            if cand.is_file():
                return cand
        raise CheckpointError(f"no {CHECKPOINT_NAME} in run folder {p}; pass the checkpoint file itself")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}; pass an existing file or run folder")
    return p


def load_checkpoint(path_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict with ``weights_only=True``; errors name the file."""
    path = resolve_checkpoint_path(path_or_dir)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated or not a torch file
        raise CheckpointError(f"cannot read checkpoint {path}: {err.__class__.__name__}: {err}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not an aio checkpoint dict")
    return ckpt


def load_state_dict_checked(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "") -> None:
    """``load_state_dict(strict=True)`` with a readable error listing the mismatched keys and shapes."""
    from aio.models.registry import state_dict_mismatch

    problem = state_dict_mismatch(module, state_dict)
    if problem:
        where = f" from {source}" if source else ""
        raise CheckpointError(
            f"checkpoint{where} does not fit this architecture ({problem}); "
            "check that backbone/gate/lora_ratio/model.size match the run that wrote it"
        )
    module.load_state_dict(state_dict, strict=True)


def load_model(path_or_dir: str | os.PathLike, use_ema: bool = True, map_location: str = "cpu"):
    """Rebuild the network stored in an aio checkpoint; returns ``(model, cfg)`` with ``cfg`` a DictConfig.

    The EMA weights are used when present and ``use_ema`` is true (they are what validation used).
    """
    from omegaconf import OmegaConf

    from aio.models import model_from_config

    ckpt = load_checkpoint(path_or_dir, map_location=map_location)
    if "config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path_or_dir} is not an aio training checkpoint (no 'config'/'model' entries)")
    cfg = OmegaConf.create(ckpt["config"])
    model = model_from_config(cfg.model)
    weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    load_state_dict_checked(model, weights, source=str(path_or_dir))
    model.eval()
    return model, cfg


def load_weights_only(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Model weights from an aio checkpoint (EMA when present) or an official release.

    Official files wrap the state dict in ``params`` (Restormer, NAFNet) or ``state_dict`` (PromptIR's
    Lightning checkpoints, whose keys carry a ``net.`` prefix); see ``aio.models.extract_state_dict``.
    """
    from aio.models.registry import extract_state_dict

    state = load_checkpoint(path)
    if "config" in state and "model" in state:
        return state["ema"] if state.get("ema") is not None else state["model"]
    return {k: v for k, v in extract_state_dict(state).items() if torch.is_tensor(v)}

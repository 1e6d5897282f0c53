"""torch.distributed set-up from torchrun's or SLURM's environment; a single process needs nothing.

Launchers and what they set:

* ``torchrun --nproc_per_node=N -m aio.cli.train ...``: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT.
* SLURM through submitit (``launcher=slurm`` with ``tasks_per_node`` > 1): one task per GPU; the rendezvous
  (MASTER_ADDR = first node, a port derived from the job id) comes from submitit's
  ``TorchDistributedEnvironment``.

NCCL on GPUs, gloo on CPU. The helpers below are no-ops in a single process, so the trainer calls them
unconditionally.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Collectives wait this long for the slowest rank (rank 0 validates and writes checkpoints while the others
# wait at the next collective): generous, so a long validation on the paper-scale sets does not time out.
DEFAULT_TIMEOUT_MIN = 60


@dataclass
class DistInfo:
    """Where this process stands: its rank, how many there are, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``trainer.device``: auto (CUDA when available) | cpu | cuda | cuda:N.

    ``auto``/``cuda`` pick the local rank's GPU. When the job shows each task only its own GPU (SLURM's GPU
    binding, or ``CUDA_VISIBLE_DEVICES`` per task) there is one visible device and that is the one.
    """
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={spec} but no CUDA device is visible; use trainer.device=cpu")
    if spec == "cuda":
        return torch.device(f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}")
    if spec == "cpu" or spec.startswith("cuda:"):
        return torch.device(spec)
    raise ValueError(f"trainer.device={spec} is not one of auto, cpu, cuda, cuda:N")


def _export_slurm_rendezvous() -> None:
    """Under a submitit SLURM job with several tasks: export MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK."""
    try:
        import submitit

        # Keep CUDA_VISIBLE_DEVICES as SLURM set it: resolve_device picks the local rank's GPU itself (submitit's
        # default would hide all but GPU <local_rank>, after which cuda:<local_rank> no longer exists).
        # overwrite=True: a MASTER_PORT set by the site or the user is kept (submitit reads it) instead of
        # making export() refuse to run.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    except (ImportError, RuntimeError) as err:
        raise RuntimeError(
            f"SLURM_NTASKS={os.environ.get('SLURM_NTASKS')} but no MASTER_ADDR and no submitit job environment "
            f"({err}); launch with launcher=slurm, or torchrun inside the allocation"
        ) from err


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE) or SLURM with several tasks."""
    if _env_int("SLURM_NTASKS", default=1) > 1 and "MASTER_ADDR" not in os.environ:
        _export_slurm_rendezvous()
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    device = resolve_device(device_spec, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=float(os.environ.get("AIO_DIST_TIMEOUT_MIN", DEFAULT_TIMEOUT_MIN)))
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def _active(info: DistInfo) -> bool:
    return info.enabled and dist.is_available() and dist.is_initialized()


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if _active(info):
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """The mean of each value over all ranks (every rank must pass the same keys in the same order)."""
    if not _active(info) or not values:
        return dict(values)
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the run folder, so all ranks read and write the same one)."""
    if not _active(info):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

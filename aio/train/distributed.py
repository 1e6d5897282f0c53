"""torch.distributed set-up from torchrun's or SLURM's environment; a single process needs nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
    """``trainer.device``: auto (CUDA when available) | cpu | cuda | cuda:N."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={spec} but no CUDA device is visible; use trainer.device=cpu")
    if spec == "cuda":
        return torch.device(f"cuda:{local_rank}")
    if spec == "cpu" or spec.startswith("cuda:"):
        return torch.device(spec)
    raise ValueError(f"trainer.device={spec} is not one of auto, cpu, cuda, cuda:N")


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE) or SLURM with several tasks.

    NCCL on GPUs, gloo on CPU. torchrun sets MASTER_ADDR/MASTER_PORT; under SLURM with submitit they are
    derived from the job environment.
    """
    if _env_int("SLURM_NTASKS", default=1) > 1 and "MASTER_ADDR" not in os.environ:
        try:  # under submitit: derive MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK from the SLURM job
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export()
        except (ImportError, RuntimeError) as err:
            raise RuntimeError(f"several SLURM tasks but no MASTER_ADDR and no submitit job environment: {err}")
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    device = resolve_device(device_spec, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

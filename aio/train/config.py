"""The trainer's structured-config schema: Hydra rejects a misspelt key or a wrong type with its own message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class EmaConfig:
    """Exponential moving average of the weights (timm's ModelEmaV3); validation uses it when enabled."""

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True  # timm's decay warm-up: short runs are not dominated by the random init


@dataclass
class TestConfig:
    """Evaluation of the preset's test sets after the last phase (``test/...`` and ``test_<tta>/...``)."""

    enabled: bool = False
    tta: list[str] = field(default_factory=lambda: ["none", "x8"])  # none | x8 | flip, one pass each


@dataclass
class TrainerConfig:
    """Iteration-based training schedule and numerics."""

    max_steps: int = 300
    lr: float = 2.0e-3
    min_lr: float = 1.0e-6
    weight_decay: float = 1.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 20
    grad_accum: int = 1
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    ema: EmaConfig = field(default_factory=EmaConfig)
    amp: str = "none"  # none | bf16 | fp16 (CUDA, with a GradScaler) | auto (bf16 where native, else fp32)
    compile: bool = False  # torch.compile the training model (inductor; needs a C++ compiler on CPU)
    channels_last: bool = False
    cpu_malloc: str = "auto"  # auto (cache on CPU devices with glibc) | cache | system; see aio/train/host_memory.py
    adamw_kernel: str = "auto"  # auto (fused where torch has it: CPU, CUDA) | fused | default; see train/builders.adamw
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    val_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 100
    checkpoint_every_min: float = 0.0  # also save every N minutes (0 = off); for preemptible clusters
    num_val_samples: int = 4  # validation samples in the logged PNG grid
    resume: str = "auto"  # auto (continue from <run dir>/checkpoints/last.pt if present) | never | <file or dir>
    fine_tune_from: Optional[str] = None  # weights only, from an aio checkpoint or an official one
    progress: bool = True  # a tqdm bar on a terminal (in files and pipes: one logged line per log_every)
    test: TestConfig = field(default_factory=TestConfig)

"""Registers aio's structured-config schemas and OmegaConf resolvers with Hydra.

Call :func:`register_configs` before composing (the console scripts and tests do).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from aio.paths import REPO_ROOT, outputs_dir

_registered = False


def register_configs() -> None:
    """Store the `trainer` and `dataset` schemas in the ConfigStore and add aio's resolvers (idempotent)."""
    global _registered
    if _registered:
        return
    from aio.data.config import DatasetConfig
    from aio.train.config import TrainerConfig
    from aio.train.phases import StrategyConfig

    cs = ConfigStore.instance()
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="strategy", name="base_strategy", node=StrategyConfig)
    OmegaConf.register_new_resolver("aio_repo_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("aio_outputs_dir", lambda: str(outputs_dir()), replace=True)
    _registered = True

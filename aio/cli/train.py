"""``aio-train``: train one model (or, with ``-m``, a sweep of them) from the composed Hydra config.

Examples::

    aio-train                                    # the embedded default: small Restormer on synthetic data
    aio-train debug=tiny                         # a few steps, to check the wiring
    aio-train experiment=baseline dataset=aio3 dataset.root=/data/aio scale=paper
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from aio.config import check_command_line, register_configs
from aio.paths import CONF_DIR
from aio.tracking.mlflow_tracker import record_failed_run
from aio.tracking.sweep import job_tags

register_configs()

# Errors that are the user's to fix: printed as one line in a single run instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


def user_error_types() -> tuple[type[BaseException], ...]:
    from aio.tracking.mlflow_tracker import TrackingError
    from aio.train.checkpoint import CheckpointError
    from aio.train.trainer import DatasetLayoutError, NonFiniteLossError

    return USER_ERRORS + (TrackingError, CheckpointError, DatasetLayoutError, NonFiniteLossError)


def run_training(cfg: DictConfig) -> float | None:
    """The Hydra task: train into Hydra's output dir; returns the final average validation PSNR."""
    from aio.train.trainer import Trainer

    hc = HydraConfig.get()
    tags = {"aio.overrides": " ".join(hc.overrides.task) or "(defaults)"}
    if hc.mode == RunMode.MULTIRUN:
        tags.update(job_tags(cfg, hc.sweep.dir, dict(hc.runtime.choices)))
        if "aio.row_label" in tags:
            with open_dict(cfg):
                cfg.run_name = tags["aio.row_label"]
    try:
        trainer = Trainer(cfg, hc.runtime.output_dir, tracker_tags=tags)
    except Exception as err:
        if hc.mode == RunMode.MULTIRUN and cfg.logger.name == "mlflow":
            record_failed_run(cfg, tags, err)  # the sweep's table shows this row as missing, not absent
        raise
    metrics = trainer.fit()
    print(f"[aio] run folder: {hc.runtime.output_dir}")
    return metrics.get("val/avg/psnr")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    try:
        return run_training(cfg)
    except user_error_types() as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and carries on with the others
        print(f"aio-train: error: {err}", file=sys.stderr)
        sys.exit(1)


def main() -> float | None:
    """Console entry point: command-line mistakes Hydra lets through are refused before composing."""
    check_command_line("aio-train", sys.argv[1:], config_name="train")
    return hydra_main()


if __name__ == "__main__":
    main()

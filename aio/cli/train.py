"""``aio-train``: train one model (or, with ``-m``, a sweep of them) from the composed Hydra config.

Examples::

    aio-train                                    # the embedded default: small Restormer on synthetic data
    aio-train debug=tiny                         # a few steps, to check the wiring
    aio-train experiment=baseline dataset=aio3 dataset.root=/data/aio scale=paper
"""

from __future__ import annotations

import sys
from pathlib import Path

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

    from aio.train.run_name import run_label

    hc = HydraConfig.get()
    tags = {"aio.overrides": " ".join(hc.overrides.task) or "(defaults)"}
    if hc.mode == RunMode.MULTIRUN:
        tags.update(job_tags(cfg, hc.sweep.dir, dict(hc.runtime.choices)))
        if "aio.row_label" in tags:
            with open_dict(cfg):
                cfg.run_name = tags["aio.row_label"]
    elif not any(o.startswith("run_name=") for o in hc.overrides.task):
        with open_dict(cfg):  # "baseline strategy=progressive loss=gfl", not just the backbone's name
            cfg.run_name = run_label(str(cfg.run_name), hc.overrides.task)
    try:
        trainer = Trainer(cfg, hc.runtime.output_dir, tracker_tags=tags)
    except Exception as err:
        if hc.mode == RunMode.MULTIRUN and cfg.logger.name == "mlflow":
            record_failed_run(cfg, tags, err)  # the sweep's table shows this row as missing, not absent
        raise
    metrics = trainer.fit()
    print(f"[aio] run folder: {hc.runtime.output_dir}")
    return metrics.get("val/avg/psnr")


def remove_stub_run_dir(run_dir: Path) -> bool:
    """Delete a failed run's folder when it holds nothing worth keeping (no checkpoint, no samples: only
    Hydra's ``.hydra``, logs, config.yaml, mlflow_run_id), and its date folder if that is left empty."""
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / "checkpoints").exists() or (run_dir / "samples").exists():
        return False
    keep = {".hydra", "config.yaml", "mlflow_run_id"}
    if any(p.name not in keep and p.suffix != ".log" for p in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # outputs/runs/<date>/ when this was its only run
    except OSError:
        pass
    return True


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return run_training(cfg)
    except user_error_types() as err:
        if multirun:
            raise  # the sweep records this job as failed and carries on with the others
        remove_stub_run_dir(Path(HydraConfig.get().runtime.output_dir))
        print(f"aio-train: error: {err}", file=sys.stderr)
        sys.exit(1)
    except BaseException:
        if not multirun:
            remove_stub_run_dir(Path(HydraConfig.get().runtime.output_dir))
        raise


def main() -> float | None:
    """Console entry point: command-line mistakes Hydra lets through are refused before composing."""
    check_command_line("aio-train", sys.argv[1:], config_name="train")
    return hydra_main()


if __name__ == "__main__":
    main()

"""``aio-train``: train one model (or, with ``-m``, a sweep of them) from the composed Hydra config.

Examples::

    aio-train                                    # the embedded default: small Restormer on synthetic data
    aio-train debug=tiny                         # a few steps, to check the wiring
    aio-train experiment=baseline dataset=aio3 dataset.root=/data/aio scale=paper
    aio-train -m sweep=ablation scale=demo seed=0,1,2     # a sweep: one MLflow child per (row, seed)
    aio-train -m sweep=ablation scale=demo sweep.resume=latest   # rerun only its missing/FAILED cells
    aio-train -m sweep=ablation scale=demo sweep.plan=true       # jobs, params, GFLOPs, time estimate
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
from aio.tracking import names
from aio.tracking.mlflow_tracker import record_failed_run
from aio.tracking.sweep import job_overrides, job_tags, print_resume_line, resume_action

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
    run_dir = hc.runtime.output_dir
    overrides = job_overrides(hc.overrides.task)
    tags = {names.TAG_OVERRIDES: " ".join(overrides) or "(defaults)"}
    if hc.mode == RunMode.MULTIRUN:
        tags.update(job_tags(cfg, hc.sweep.dir, dict(hc.runtime.choices)))
        if names.TAG_ROW_LABEL in tags:
            with open_dict(cfg):
                swept_seed = any(o.startswith("seed=") for o in overrides)
                cfg.run_name = tags[names.TAG_ROW_LABEL] + (f" (seed {cfg.seed})" if swept_seed else "")
        resume = (cfg.get("sweep") or {}).get("resume")
        if resume and names.TAG_PARENT in tags:
            action = resume_action(cfg, tags[names.TAG_PARENT], overrides)
            print_resume_line(action, overrides)
            if action.action == "skip":
                return action.metric
            if action.action == "rerun":
                run_dir = action.run_dir  # its last.pt and MLflow run id are there: the trainer continues it
    elif not any(o.startswith("run_name=") for o in hc.overrides.task):
        with open_dict(cfg):  # "baseline strategy=progressive loss=gfl", not just the backbone's name
            cfg.run_name = run_label(str(cfg.run_name), hc.overrides.task)
    try:
        trainer = Trainer(cfg, run_dir, tracker_tags=tags)
    except Exception as err:
        if hc.mode == RunMode.MULTIRUN and cfg.logger.name == "mlflow":
            record_failed_run(cfg, tags, err)  # the sweep's table shows this row as missing, not absent
        raise
    metrics = trainer.fit()
    print(f"[aio] run folder: {run_dir}")
    return metrics.get(names.val_metric(names.AVG, "psnr"))


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

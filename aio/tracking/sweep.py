"""MLflow structure of a sweep: one parent run per sweep, one child run per job.

:class:`MlflowSweepCallback` (a Hydra callback, configured in ``conf/train.yaml``) runs in the launching
process before any job starts: it creates the tracking store (concurrent schema creation races), creates the
parent run (tags ``aio.role=sweep``, ``aio.sweep``, ``aio.sweep_dir``; the table spec as an artifact) and
writes its id into the sweep folder. Each job then calls :func:`job_tags` to tag its own run as a child
(``mlflow.parentRunId``) with its row key and label from the table spec.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

PARENT_ID_FILE = "mlflow_parent_run_id"
SPEC_FILE = "table_spec.yaml"


def _sweep_spec(config: DictConfig, sweep_dir: Path) -> dict[str, Any]:
    if config.get("sweep") is not None:
        return OmegaConf.to_container(config.sweep, resolve=True)
    return {"name": f"multirun-{sweep_dir.parent.name}-{sweep_dir.name}", "row_key": None, "rows": []}


class MlflowSweepCallback(Callback):
    """Creates the sweep's parent run before the jobs start and closes it when they are done."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.client = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.logger.name != "mlflow":
            return
        from mlflow.tracking import MlflowClient

        from aio.tracking.mlflow_tracker import ensure_store, get_or_create_experiment, with_retry

        uri = config.logger.tracking_uri
        ensure_store(uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        spec = _sweep_spec(config, sweep_dir)
        client = MlflowClient(tracking_uri=uri)
        exp_id = get_or_create_experiment(client, config.logger.experiment, config.logger.get("artifact_location"))
        overrides = " ".join(config.hydra.overrides.task)
        tags = {"aio.role": "sweep", "aio.sweep": spec["name"], "aio.sweep_dir": str(sweep_dir),
                "aio.overrides": overrides or "(defaults)"}
        run = with_retry(lambda: client.create_run(exp_id, run_name=spec["name"], tags=tags))
        self.parent_run_id, self.client = run.info.run_id, client
        spec_path = sweep_dir / SPEC_FILE
        spec_path.write_text(OmegaConf.to_yaml(OmegaConf.create(spec)))
        with_retry(lambda: client.log_artifact(self.parent_run_id, str(spec_path)))
        (sweep_dir / PARENT_ID_FILE).write_text(self.parent_run_id)
        atexit.register(self._close, "FAILED")  # a sweep that raised never reaches on_multirun_end
        print(f"[aio] sweep '{spec['name']}': MLflow parent run {self.parent_run_id} in {uri}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close("FINISHED")
        if self.parent_run_id:
            name = _sweep_spec(config, Path(config.hydra.sweep.dir))["name"]
            print(f"[aio] sweep done; make its table with: aio-tables {name}")

    def _close(self, status: str) -> None:
        if self.client is None or self.parent_run_id is None:
            return
        from aio.tracking.mlflow_tracker import with_retry

        run = with_retry(lambda: self.client.get_run(self.parent_run_id))
        if run.info.status == "RUNNING":
            with_retry(lambda: self.client.set_terminated(self.parent_run_id, status=status))


def job_tags(cfg: DictConfig, sweep_dir: str | Path, choices: dict[str, str | None]) -> dict[str, str]:
    """Tags that make a job's run a child of its sweep's parent run and name its table row."""
    tags: dict[str, str] = {}
    parent_file = Path(sweep_dir) / PARENT_ID_FILE
    if parent_file.is_file():
        tags["mlflow.parentRunId"] = parent_file.read_text().strip()
    spec = cfg.get("sweep")
    if spec is not None:
        tags["aio.sweep"] = str(spec.name)
        key = _row_key(cfg, spec.get("row_key"), choices)
        if key is not None:
            tags["aio.row"] = str(key)
            labels = {str(r.key): str(r.label) for r in spec.get("rows", [])}
            tags["aio.row_label"] = labels.get(str(key), str(key))
    return tags


def _row_key(cfg: DictConfig, row_key, choices: dict[str, str | None]) -> str | None:
    """A job's row: the group choice named by ``row_key``, or, for a list of keys (group choices or config
    keys such as ``strategy.until``), their values joined with ","."""
    from omegaconf import ListConfig, OmegaConf

    if not row_key:
        return None
    if not isinstance(row_key, (list, tuple, ListConfig)):
        return choices.get(row_key)
    values = [choices.get(k) if k in choices else OmegaConf.select(cfg, str(k)) for k in row_key]
    return None if any(v is None for v in values) else ",".join(str(v) for v in values)

"""MLflow structure of a sweep: one parent run per sweep, one child run per job (per row and seed).

:class:`MlflowSweepCallback` (a Hydra callback, configured in ``conf/train.yaml``) runs in the launching
process before any job starts: it creates the tracking store (concurrent schema creation races), creates the
parent run (``aio.role=sweep``, ``aio.sweep``, ``aio.sweep_dir``; the table spec as an artifact) and writes its
id into the sweep folder; when the jobs are done it logs the table's cells as ``summary/<row>/<column>``
metrics on the parent. Each job calls :func:`job_tags` to tag its run as a child with its row and seed.

Options of a sweep file's ``sweep:`` node:

- ``sweep.plan=true``: print the plan (:mod:`aio.plan`) and exit without training;
- ``sweep.resume=<parent run id | latest>``: reopen that parent (``latest``: the most recent parent of this
  sweep) and, per job, :func:`resume_action` decides from the children already there, matched on the job's
  overrides (:func:`job_key`, not on its position): a FINISHED match is skipped with one line, an unfinished
  one (FAILED, KILLED, still RUNNING after a crash) is rerun in its own run folder, so the trainer resumes
  from its ``last.pt`` into the same MLflow run; a job without a match runs as new.

Seeds: add ``seed=0,1,2`` to the multirun; each (row, seed) is one child, tagged ``aio.row`` and ``aio.seed``.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from aio.tracking import names

PARENT_ID_FILE = "mlflow_parent_run_id"
SPEC_FILE = names.SPEC_ARTIFACT
# overrides that steer the sweep itself: not part of a job's identity
CONTROL_KEYS = ("sweep.resume", "sweep.plan", "hydra.")


def _sweep_spec(config: DictConfig, sweep_dir: Path) -> dict[str, Any]:
    if config.get("sweep") is not None:
        spec = OmegaConf.to_container(config.sweep, resolve=True)
        return {k: v for k, v in spec.items() if k not in ("resume", "plan")}
    return {"name": f"multirun-{sweep_dir.parent.name}-{sweep_dir.name}", "row_key": None, "rows": []}


def job_overrides(overrides: Sequence[str]) -> list[str]:
    """A job's overrides without the sweep-control ones (``sweep.resume``, ``sweep.plan``, ``hydra.*``)."""
    return [o for o in overrides if not o.lstrip("+~").startswith(CONTROL_KEYS)]


def job_key(overrides: Sequence[str] | str) -> tuple[str, ...]:
    """The identity of a job: its overrides (as in the ``aio.overrides`` tag), sorted, control ones left out."""
    items = overrides.split() if isinstance(overrides, str) else list(overrides)
    return tuple(sorted(job_overrides([o for o in items if o != "(defaults)"])))


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    from aio.tracking.mlflow_tracker import with_retry

    return with_retry(lambda: MlflowClient(tracking_uri=uri))


def resolve_parent(client, experiment: str, sweep_name: str, target: str):
    """The parent run to resume: ``target`` as a run id, or ``latest`` = the newest parent of ``sweep_name``."""
    from aio.tracking.mlflow_tracker import with_retry

    if target != "latest":
        try:
            run = with_retry(lambda: client.get_run(target))
        except Exception as err:
            raise ValueError(f"sweep.resume={target}: no such MLflow run ({err.__class__.__name__}); "
                             "give a parent run id or sweep.resume=latest") from err
        if run.data.tags.get(names.TAG_ROLE) != names.ROLE_SWEEP:
            raise ValueError(f"sweep.resume={target} is not a sweep's parent run (tag {names.TAG_ROLE}="
                             f"{run.data.tags.get(names.TAG_ROLE)!r})")
        return run
    exp = with_retry(lambda: client.get_experiment_by_name(experiment))
    runs = [] if exp is None else with_retry(lambda: client.search_runs(
        [exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_SWEEP}' and tags.`{names.TAG_SWEEP}` = "
        f"'{sweep_name}'", order_by=["attributes.start_time DESC"], max_results=1))
    if not runs:
        raise ValueError(f"sweep.resume=latest: sweep {sweep_name!r} has no parent run in experiment "
                         f"{experiment!r} yet; run it first without sweep.resume")
    return runs[0]


class MlflowSweepCallback(Callback):
    """Creates (or, with ``sweep.resume``, reopens) the parent run before the jobs start; closes it after."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.client = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        spec_node = config.get("sweep") or {}
        if spec_node.get("plan"):
            from aio.plan import print_plan_and_exit

            print_plan_and_exit(config)
        if config.logger.name != "mlflow":
            if spec_node.get("resume"):
                raise ValueError("sweep.resume needs logger=mlflow: the finished cells are found in MLflow")
            return
        from aio.tracking.mlflow_tracker import ensure_store, get_or_create_experiment, with_retry

        uri = config.logger.tracking_uri
        ensure_store(uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        spec = _sweep_spec(config, sweep_dir)
        client = _client(uri)
        if spec_node.get("resume"):
            run = resolve_parent(client, config.logger.experiment, spec["name"], str(spec_node.resume))
            self.parent_run_id = run.info.run_id
            with_retry(lambda: client.update_run(self.parent_run_id, status="RUNNING"))
            print(f"[aio] resuming sweep '{spec['name']}' in MLflow parent run {self.parent_run_id}: finished "
                  "cells are skipped, unfinished ones rerun")
        else:
            exp_id = get_or_create_experiment(client, config.logger.experiment, config.logger.get("artifact_location"))
            overrides = " ".join(job_overrides(config.hydra.overrides.task))
            tags = {names.TAG_ROLE: names.ROLE_SWEEP, names.TAG_SWEEP: spec["name"],
                    names.TAG_SWEEP_DIR: str(sweep_dir), names.TAG_OVERRIDES: overrides or "(defaults)"}
            run = with_retry(lambda: client.create_run(exp_id, run_name=spec["name"], tags=tags))
            self.parent_run_id = run.info.run_id
            spec_path = sweep_dir / SPEC_FILE
            spec_path.write_text(OmegaConf.to_yaml(OmegaConf.create(spec)))
            with_retry(lambda: client.log_artifact(self.parent_run_id, str(spec_path)))
            print(f"[aio] sweep '{spec['name']}': MLflow parent run {self.parent_run_id} in {uri}")
        self.client = client
        (sweep_dir / PARENT_ID_FILE).write_text(self.parent_run_id)
        atexit.register(self._close, "FAILED")  # a sweep that raised never reaches on_multirun_end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_run_id:
            self._log_summary()
        self._close("FINISHED")
        if self.parent_run_id:
            name = _sweep_spec(config, Path(config.hydra.sweep.dir))["name"]
            print(f"[aio] sweep done; make its table with: aio-tables {name}")

    def _log_summary(self) -> None:
        """The table's cells as ``summary/<row>/<column>`` metrics on the parent (best effort)."""
        try:
            from aio.tables.collect import collect_sweep, log_summary

            df, spec = collect_sweep(self.client, self.parent_run_id)
            log_summary(self.client, self.parent_run_id, df, spec)
        except Exception as err:  # the jobs' results are in MLflow either way
            print(f"[aio] could not log the sweep summary on the parent run: {err}")

    def _close(self, status: str) -> None:
        if self.client is None or self.parent_run_id is None:
            return
        from aio.tracking.mlflow_tracker import with_retry

        run = with_retry(lambda: self.client.get_run(self.parent_run_id))
        if run.info.status == "RUNNING":
            with_retry(lambda: self.client.set_terminated(self.parent_run_id, status=status))


def job_tags(cfg: DictConfig, sweep_dir: str | Path, choices: dict[str, str | None]) -> dict[str, str]:
    """Tags that make a job's run a child of its sweep's parent run and name its table row and seed."""
    tags: dict[str, str] = {names.TAG_SEED: str(cfg.get("seed", 0))}
    parent_file = Path(sweep_dir) / PARENT_ID_FILE
    if parent_file.is_file():
        tags[names.TAG_PARENT] = parent_file.read_text().strip()
    spec = cfg.get("sweep")
    if spec is not None:
        tags[names.TAG_SWEEP] = str(spec.name)
        key = _row_key(cfg, spec.get("row_key"), choices)
        if key is not None:
            tags[names.TAG_ROW] = str(key)
            labels = {str(r.key): str(r.label) for r in spec.get("rows", [])}
            tags[names.TAG_ROW_LABEL] = labels.get(str(key), str(key))
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


@dataclass(frozen=True)
class ResumeAction:
    """What a job of a resumed sweep does: ``skip`` (finished), ``rerun`` (in ``run_dir``) or ``new``."""

    action: str
    run_id: str | None = None
    run_dir: str | None = None
    status: str | None = None
    metric: float | None = None


def resume_action(cfg: DictConfig, parent_id: str, overrides: Sequence[str]) -> ResumeAction:
    """Decide, from the parent's children with the same :func:`job_key`, what this job of a resumed sweep does."""
    from aio.tracking.mlflow_tracker import with_retry

    client = _client(cfg.logger.tracking_uri)
    parent = with_retry(lambda: client.get_run(parent_id))
    children = with_retry(lambda: client.search_runs(
        [parent.info.experiment_id], f"tags.`{names.TAG_PARENT}` = '{parent_id}'", max_results=5000))
    key = job_key(overrides)
    same = [r for r in children if job_key(r.data.tags.get(names.TAG_OVERRIDES, "")) == key]
    finished = [r for r in same if r.info.status == "FINISHED"]
    if finished:
        run = max(finished, key=lambda r: r.info.start_time or 0)
        return ResumeAction("skip", run.info.run_id, run.data.tags.get(names.TAG_RUN_DIR), "FINISHED",
                            run.data.metrics.get(names.val_metric(names.AVG, "psnr")))
    with_dir = [r for r in same if r.data.tags.get(names.TAG_RUN_DIR)]
    if with_dir:
        run = max(with_dir, key=lambda r: r.info.start_time or 0)
        return ResumeAction("rerun", run.info.run_id, run.data.tags[names.TAG_RUN_DIR], run.info.status)
    if same:
        run = max(same, key=lambda r: r.info.start_time or 0)
        return ResumeAction("new", run.info.run_id, None, run.info.status)
    return ResumeAction("new")


def print_resume_line(action: ResumeAction, overrides: Sequence[str], file=sys.stdout) -> None:
    """One line per job of a resumed sweep saying what happens to it."""
    what = " ".join(job_overrides(overrides)) or "(defaults)"
    if action.action == "skip":
        print(f"[aio] resume: skip {what}: FINISHED in run {action.run_id}", file=file)
    elif action.action == "rerun":
        print(f"[aio] resume: rerun {what} ({action.status} run {action.run_id}) in {action.run_dir}", file=file)
    else:
        was = f" ({action.status} run {action.run_id} left no run folder)" if action.run_id else ""
        print(f"[aio] resume: run {what}{was}", file=file)

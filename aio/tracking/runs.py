"""Run creation outside the CLI layer: where ``aio-eval`` logs its results, and how.

:func:`log_evaluation` attaches to the checkpoint's training run when the store knows it (else creates a
run tagged ``aio.kind=eval``), logs ``test[_<tta>]/<set>/<metric>`` (``<set> = avg`` for the mean over
sets) and the per-image CSVs under ``per_image/test[_<tta>]/`` (see :mod:`aio.tracking.names`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aio.tracking import names
from aio.tracking.mlflow_tracker import check_tracking_uri, get_or_create_experiment, with_retry


def eval_metrics(result, tta: str | None = None) -> dict[str, float]:
    """``{test[_<tta>]/<set>/<metric>: value}`` of an :class:`aio.eval.EvalResult` (counts left out)."""
    out: dict[str, float] = {}
    sets = list(result.per_set.items()) + [(names.AVG, result.average)]
    for set_name, values in sets:
        for key, value in values.items():
            if key != "n":
                out[names.test_metric(set_name, key, tta)] = float(value)
    return out


def log_evaluation(uri: str, experiment: str, artifact_location: str | None, result, meta: dict[str, Any],
                   checkpoint: str, files: list[Path], work_dir: Path, tta: str | None = None,
                   extra_tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                   extra_metrics: dict[str, float] | None = None) -> str:
    """Log an evaluation into the checkpoint's run (``meta["mlflow_run_id"]``) or a new ``eval`` run.

    ``extra_tags`` are set on a newly created run (e.g. ``aio.abair_blend``, or a sweep's parent / row tags);
    ``params`` are logged on a newly created run (e.g. ``dataset.name`` for a table's caption);
    ``extra_metrics`` next to the test metrics (e.g. ``model/params_m``); ``files`` are logged under ``eval/``;
    the per-image CSVs are written into ``work_dir`` and logged under ``per_image/test[_<tta>]/``. Returns the
    run id.
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    check_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    run_id = meta.get("mlflow_run_id")
    if run_id:
        try:
            with_retry(lambda: client.get_run(run_id))
        except Exception:  # noqa: BLE001 - not in this store
            print(f"[aio] MLflow run {run_id} of the checkpoint is not in {uri}; logging to a new run 'eval'")
            run_id = None
    created = run_id is None
    if created:
        exp = get_or_create_experiment(client, experiment, artifact_location)
        tags = {names.TAG_KIND: names.KIND_EVAL, names.TAG_CHECKPOINT: str(checkpoint), **(extra_tags or {})}
        run_id = with_retry(lambda: client.create_run(exp, run_name=meta.get("run_name", "eval"),
                                                      tags=tags)).info.run_id
        if params:
            from mlflow.entities import Param

            items = [Param(str(k), str(v)) for k, v in params.items()]
            with_retry(lambda: client.log_batch(run_id, params=items))
    now, step = int(time.time() * 1000), int(meta.get("step", 0))
    values = {**eval_metrics(result, tta), **(extra_metrics or {})}
    metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
    for i in range(0, len(metrics), 500):
        with_retry(lambda chunk=metrics[i:i + 500]: client.log_batch(run_id, metrics=chunk))
    prefix = names.test_metric("", "", tta).split("/")[0]
    folder = names.per_image_dir(prefix)
    uploads = [(p, "eval") for p in files] + [(p, folder) for p in result.write_per_image(work_dir / folder)]
    for path, artifact_dir in uploads:
        try:
            with_retry(lambda: client.log_artifact(run_id, str(path), artifact_dir))
        except Exception as err:  # noqa: BLE001 - the metrics are what matters
            print(f"[aio] could not upload {Path(path).name} to MLflow: {err}")
    if created:
        with_retry(lambda: client.set_terminated(run_id, status="FINISHED"))
    return run_id

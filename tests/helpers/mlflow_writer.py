"""One job writing to a shared MLflow store through aio's MlflowTracker (for tests/test_mlflow_concurrency.py).

Usage: ``python tests/helpers/mlflow_writer.py URI NAME STEPS SYNC_DIR``. Writes ``SYNC_DIR/ready-NAME`` when
imported and waits for ``SYNC_DIR/go`` so all writers hit the store at once; then creates a run, logs params,
one metric call per step and tags, ends the run, and prints ``RESULT <run id> <lock retries>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import aio.tracking.mlflow_tracker as mt

RETRIES = 0
_with_retry = mt.with_retry


def counting_retry(fn, *args, **kwargs):
    def attempt():
        global RETRIES
        try:
            return fn()
        except Exception as err:
            if "locked" in str(err).lower() or "busy" in str(err).lower():
                RETRIES += 1
            raise

    return _with_retry(attempt, *args, **kwargs)


mt.with_retry = counting_retry  # the tracker looks it up at call time: count the retries it makes


def main(uri: str, name: str, steps: int, sync_dir: Path) -> None:
    # Imported before the start line, so the first store access comes right after it.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401

    (sync_dir / f"ready-{name}").touch()
    while not (sync_dir / "go").exists():
        time.sleep(0.01)
    tracker = mt.MlflowTracker(uri, experiment="concurrency", run_name=name, tags={"writer": name})
    tracker.log_params({f"p{i}": f"{name}-{i}" for i in range(40)})
    for step in range(1, steps + 1):
        tracker.log_metrics({"train/loss": 1.0 / step, "train/lr": step * 1e-4}, step=step)
    tracker.set_tags({"done": "yes"})
    tracker.end("FINISHED")
    print(f"RESULT {tracker.run_id} {RETRIES}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))

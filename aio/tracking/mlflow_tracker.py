"""A thin MLflow tracker for the trainer: one run, params, metrics, tags, artifacts.

It talks to MLflow through ``MlflowClient`` (no global "active run" state), so several runs can be open in
one process. Every call retries with backoff on sqlite's "database is locked", which happens when several
jobs share one local store. ``logger=none`` uses :class:`NullTracker`, which does nothing.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PARAM_VALUE_LIMIT = 6000  # MLflow's limit on one param value


class TrackingError(RuntimeError):
    """The tracking store cannot be used (bad URI, unreachable server)."""


def with_retry(fn: Callable[[], T], attempts: int = 8, base_delay: float = 0.2) -> T:
    """Call ``fn``; on a "database is locked"/"busy" error wait (exponential backoff with jitter) and retry."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:  # MLflow wraps sqlite errors in several exception types
            text = str(err).lower()
            transient = "database is locked" in text or "database is busy" in text or "disk i/o error" in text
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(base_delay * (2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``{"a.b.c": "value"}``; lists become their string form."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:PARAM_VALUE_LIMIT]
    return out


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other URIs."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


# Filesystem types (as /proc/mounts names them) on which sqlite's locking cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb", "smb3", "smbfs", "ceph", "glusterfs",
     "fuse.glusterfs", "fuse.sshfs"}
)


def _unescape_mount(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: str | os.PathLike, mounts: str | os.PathLike | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (the deepest mount point above it), or None if unknown.

    ``mounts``: the mount table as text (a ``str``), or a file to read it from (a ``Path``); default
    ``/proc/mounts``.
    """
    if mounts is None or isinstance(mounts, os.PathLike):
        try:
            mounts = Path(mounts or "/proc/mounts").read_text()
        except OSError:
            return None
    target = Path(os.path.realpath(path))  # a symlink into /lustre is on lustre
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(_unescape_mount(fields[1]))
        if (point == target or point in target.parents) and (best is None or len(point.parts) >= best[0]):
            best = (len(point.parts), fields[2])  # ">=": a later mount over the same point hides the earlier
    return best[1] if best else None


def warn_if_network_filesystem(db_path: str | os.PathLike, mounts: str | os.PathLike | None = None) -> str | None:
    """Print (and return) a one-line warning when the sqlite store lies on a network filesystem.

    sqlite's file locking is unreliable on NFS/Lustre/GPFS/BeeGFS/SMB: several jobs writing at once can
    corrupt the store or fail on locks. The fix is one ``mlflow server`` that alone owns the database.
    """
    fstype = filesystem_type(Path(db_path).parent, mounts)
    if fstype is None or fstype.lower() not in NETWORK_FILESYSTEMS:
        return None
    message = (
        f"[aio] warning: the MLflow sqlite store {db_path} is on {fstype}, a network filesystem where sqlite "
        "locking is unreliable (concurrent jobs can corrupt it); run `mlflow server --backend-store-uri "
        "sqlite:///<local disk>/mlflow.db --host 0.0.0.0 --port 5000` on one machine and set "
        "logger.tracking_uri=http://<that host>:5000"
    )
    print(message, file=sys.stderr)
    return message


def check_tracking_uri(uri: str) -> None:
    """Fail early, with a one-line message, when ``logger.tracking_uri`` cannot be used."""
    if not uri:
        raise TrackingError("logger.tracking_uri is empty; set it (e.g. sqlite:///outputs/mlflow.db) or use logger=none")
    if uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"logger.tracking_uri={uri} is a file store, which MLflow 3 refuses; "
            "use sqlite:///<path>/mlflow.db or a tracking server URL"
        )
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"logger.tracking_uri={uri}: cannot create {db.parent} ({err})") from err
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(f"logger.tracking_uri={uri}: {db.parent} is not writable")
        warn_if_network_filesystem(db)
        return
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=5)
        except requests.RequestException as err:
            raise TrackingError(
                f"logger.tracking_uri={uri} is unreachable ({err.__class__.__name__}); "
                "start the server (mlflow server ...) or use logger=none"
            ) from err


def ensure_store(uri: str) -> None:
    """Create the store's schema once (call before parallel jobs start: concurrent creation races)."""
    from mlflow.tracking import MlflowClient

    check_tracking_uri(uri)
    with_retry(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1))


class NullTracker:
    """The tracker for ``logger=none``: every call is accepted and nothing is recorded."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class MlflowTracker:
    """One MLflow run: created, or re-attached when ``run_id`` is given (resume, requeue)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_location: str | None = None,
        run_id: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.tracking import MlflowClient

        check_tracking_uri(tracking_uri)
        self.client = with_retry(lambda: MlflowClient(tracking_uri=tracking_uri))  # it reads the schema
        self.tracking_uri = tracking_uri
        if run_id is not None:
            with_retry(lambda: self.client.get_run(run_id))  # raises if the run is unknown to this store
            with_retry(lambda: self.client.update_run(run_id, status="RUNNING"))
            self.run_id = run_id
        else:
            exp_id = get_or_create_experiment(self.client, experiment, artifact_location)
            run = with_retry(lambda: self.client.create_run(exp_id, run_name=run_name, tags=dict(tags or {})))
            self.run_id = run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100 (MLflow's limit per call); already-logged equal values are fine."""
        from mlflow.entities import Param

        existing = with_retry(lambda: self.client.get_run(self.run_id)).data.params
        items = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), 100):
            chunk = items[i : i + 100]
            with_retry(lambda: self.client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            chunk = items[i : i + 1000]
            with_retry(lambda: self.client.log_batch(self.run_id, metrics=chunk))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        with_retry(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        with_retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        with_retry(lambda: self.client.set_terminated(self.run_id, status=status))


def get_or_create_experiment(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with its artifact folder) when missing; safe against races."""
    exp = with_retry(lambda: client.get_experiment_by_name(name))
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_location:
        Path(artifact_location).mkdir(parents=True, exist_ok=True)
        location = Path(artifact_location).resolve().as_uri()
    try:
        return with_retry(lambda: client.create_experiment(name, artifact_location=location))
    except Exception:  # another job created it first
        exp = with_retry(lambda: client.get_experiment_by_name(name))
        if exp is None:
            raise
        return exp.experiment_id


def make_tracker(cfg_logger, run_id: str | None, run_name: str | None, tags: Mapping[str, str]):
    """Build the tracker ``logger`` asks for: MlflowTracker for ``mlflow``, NullTracker for ``none``."""
    if cfg_logger.name == "none":
        return NullTracker()
    if cfg_logger.name != "mlflow":
        raise TrackingError(f"logger={cfg_logger.name} is unknown; use logger=mlflow or logger=none")
    return MlflowTracker(
        tracking_uri=cfg_logger.tracking_uri,
        experiment=cfg_logger.experiment,
        artifact_location=cfg_logger.get("artifact_location"),
        run_id=run_id,
        run_name=run_name,
        tags=tags,
    )


def error_tag(err: BaseException) -> dict[str, str]:
    """The ``aio.error`` tag recording why a run failed."""
    return {"aio.error": f"{type(err).__name__}: {err}"[:5000]}


def record_failed_run(cfg, tags: Mapping[str, str], err: BaseException) -> str | None:
    """Record a job that failed before its run was created as a FAILED run (params, tags and the error)."""
    from omegaconf import OmegaConf

    try:
        tracker = make_tracker(cfg.logger, None, cfg.get("run_name"), {**tags, **error_tag(err)})
        try:
            tracker.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        except Exception:  # an unresolvable config is itself often the error being recorded
            pass
        tracker.end("FAILED")
        return tracker.run_id
    except Exception as record_err:  # never hide the original error
        print(f"[aio] could not record the failed run in MLflow: {record_err}")
        return None

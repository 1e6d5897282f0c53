"""Several jobs on one sqlite MLflow store at once, and the warning for a store on a network filesystem."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aio.tracking.mlflow_tracker import check_tracking_uri, filesystem_type, warn_if_network_filesystem

REPO = Path(__file__).resolve().parents[1]
WRITER = REPO / "tests" / "helpers" / "mlflow_writer.py"
JOBS, STEPS = 4, 50
LOCK_HOLD_S = 10  # > sqlite's 5 s busy timeout, with room for a slow start


@pytest.mark.slow
def test_four_concurrent_jobs_record_everything(tmp_path, mlflow_store):
    """The store exists (ensure_store, as the sweep callback does); 4 processes then write at the same time."""
    from mlflow.tracking import MlflowClient

    sync = tmp_path / "sync"
    sync.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WRITER), mlflow_store, f"job{i}", str(STEPS), str(sync)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(JOBS)]
    try:
        deadline = time.monotonic() + 240
        while len(list(sync.glob("ready-*"))) < JOBS:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
            time.sleep(0.05)
        # Another writer holds the database for longer than sqlite's 5 s busy timeout just as the jobs start:
        # their first calls fail with "database is locked" and must get through on the tracker's retry.
        lock = sqlite3.connect(mlflow_store[len("sqlite:///"):], isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        (sync / "go").touch()
        time.sleep(LOCK_HOLD_S)
        lock.execute("COMMIT")
        lock.close()
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = {}
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
        _, run_id, retries = line.split()
        results[run_id] = int(retries)
    print(f"lock retries per job: {sorted(results.values())}")
    assert sum(results.values()) >= 1  # the retry path ran (at least the jobs that met the held lock)

    client = MlflowClient(tracking_uri=mlflow_store)
    exp = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.run_id for r in runs} == set(results) and len(runs) == JOBS
    for run in runs:
        name = run.data.tags["writer"]
        assert run.info.status == "FINISHED" and run.data.tags["done"] == "yes"
        assert run.data.params == {f"p{i}": f"{name}-{i}" for i in range(40)}
        for key in ("train/loss", "train/lr"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, STEPS + 1)), (name, key)
        assert run.data.metrics["train/loss"] == 1.0 / STEPS


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fileserver:/export/home /home nfs4 rw,vers=4.2 0 0
10.0.0.1@o2ib:/scratch /lustre lustre rw,flock 0 0
/dev/nvme0n1 /home/local\\040disk ext4 rw 0 0
gpfs0 /gpfs gpfs rw 0 0
beegfs_nodev /mnt/beegfs beegfs rw 0 0
//nas/share /mnt/smb cifs rw 0 0
"""


def test_filesystem_type_from_a_mount_table(tmp_path):
    assert filesystem_type("/home/me/aio/outputs", MOUNTS) == "nfs4"
    assert filesystem_type("/home/local disk/aio", MOUNTS) == "ext4"  # a deeper mount, with an escaped space
    assert filesystem_type("/lustre/proj/mlflow", MOUNTS) == "lustre"
    assert filesystem_type("/tmp/x", MOUNTS) == "tmpfs"
    assert filesystem_type("/homework", MOUNTS) == "ext4"  # a prefix of the name is not the mount point
    table = tmp_path / "mounts"
    table.write_text(MOUNTS)
    assert filesystem_type("/gpfs/a/b", table) == "gpfs"  # a Path is read as a mounts file
    assert filesystem_type("/x", tmp_path / "missing") is None


def test_sqlite_on_a_network_filesystem_warns_with_the_fix(capsys):
    for folder in ("/home/me/aio/outputs", "/lustre/p", "/gpfs/p", "/mnt/beegfs/p", "/mnt/smb/p"):
        message = warn_if_network_filesystem(f"{folder}/mlflow.db", MOUNTS)
        assert message is not None, folder
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.strip() == message  # one line on stderr
        assert "network filesystem" in message and "mlflow server" in message and "logger.tracking_uri=http" in message
    for folder in ("/home/local disk", "/tmp", "/data"):
        assert warn_if_network_filesystem(f"{folder}/mlflow.db", MOUNTS) is None
    assert capsys.readouterr().err == ""


def test_check_tracking_uri_runs_the_filesystem_check(tmp_path, monkeypatch, capsys):
    import aio.tracking.mlflow_tracker as mt

    seen = []
    monkeypatch.setattr(mt, "warn_if_network_filesystem", lambda db, mounts=None: seen.append(Path(db)))
    check_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    assert seen == [tmp_path / "mlflow.db"]
    monkeypatch.undo()
    check_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")  # the real check on this machine's /proc/mounts
    fstype = filesystem_type(tmp_path)
    assert ("warning" in capsys.readouterr().err) == (fstype in mt.NETWORK_FILESYSTEMS)

"""Launchers: what ``launcher=slurm`` hands to submitit (dry run, no cluster), and a real sweep through
submitit's local executor (one process per job) ending in MLflow and a table.

Every test composes from a private copy of ``conf/`` (without any developer's untracked
``conf/local/slurm.yaml``), so the result never depends on the machine, and nothing is written into the repo.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aio.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
DRY_RUN = REPO / "tests" / "helpers" / "slurm_dry_run.py"

LOCAL_SLURM_YAML = """\
# @package _global_
hydra:
  launcher:
    partition: gpu-long
    account: proj42
    qos: high
    gpus_per_node: 4
    cpus_per_task: 6
    mem_gb: 200
    timeout_min: 2880
    array_parallelism: 3
    setup:
      - "module load cuda/12.4"
      - "source /opt/aio/.venv/bin/activate"
trainer:
  checkpoint_every_min: 20
logger:
  tracking_uri: http://login-node:5000
"""


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    """A copy of conf/ without the untracked conf/local/slurm.yaml."""
    def ignore(folder, names):
        return ["slurm.yaml"] if Path(folder).name == "local" and "slurm.yaml" in names else []

    dst = tmp_path / "conf"
    shutil.copytree(CONF_DIR, dst, ignore=ignore)
    return dst


def _compose(conf_dir: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from aio.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_composes_with_the_local_override(conf_copy):
    cfg = _compose(conf_copy, ["launcher=slurm"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == (None, 1, 1)
    assert (launcher.max_num_timeout, launcher.signal_delay_s, cfg.trainer.checkpoint_every_min) == (20, 120, 30)

    (conf_copy / "local" / "slurm.yaml").write_text(LOCAL_SLURM_YAML)
    cfg = _compose(conf_copy, ["launcher=slurm", "hydra.launcher.mem_gb=100"])
    launcher = cfg.hydra.launcher
    assert (launcher.partition, launcher.account, launcher.qos) == ("gpu-long", "proj42", "high")
    assert launcher.tasks_per_node == 4  # one DDP rank per GPU follows gpus_per_node
    assert launcher.mem_gb == 100  # the command line still wins over the local file
    assert cfg.logger.tracking_uri == "http://login-node:5000"
    assert cfg.trainer.checkpoint_every_min == 20

    local = _compose(conf_copy, ["launcher=local"])  # the local file is merged only under launcher=slurm
    assert local.hydra.launcher._target_.endswith("BasicLauncher")
    assert local.trainer.checkpoint_every_min != 20


def _dry_run(tmp_path: Path, conf_dir: Path, overrides: list[str]) -> dict:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("srun", "sbatch", "scontrol"):  # submitit only checks srun exists; none may be called
        (fake_bin / tool).write_text(f"#!/bin/sh\necho 'fake {tool} called' >&2\nexit 97\n")
        (fake_bin / tool).chmod(0o755)
    out_json = tmp_path / "dry_run.json"
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "AIO_OUTPUTS": str(tmp_path),
           "AIO_DRY_RUN_OUT": str(out_json)}
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, str(DRY_RUN), f"--config-path={conf_dir}", "-m", "launcher=slurm", "logger=none",
           f"hydra.sweep.dir={sweep_dir}", *overrides]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out_json.read_text())
    assert record["folder"] == f"{sweep_dir}/.submitit/%j"  # logs: <sweep dir>/.submitit/<job id>/
    assert record["launcher"] == "SlurmLauncher"
    assert record["checkpoint_resubmits"] == "DelayedSubmission:True"  # a requeue resubmits this very job
    assert record["pickled_bytes"] > 0
    return record


def test_slurm_sweep_parameters_reach_submitit(tmp_path, conf_copy):
    record = _dry_run(tmp_path, conf_copy, ["sweep=ablation", "dataset=aio3", "dataset.root=/data/aio",
                                            "scale=paper"])
    kw = record["update_parameters"]
    assert kw["slurm_partition"] is None and kw["slurm_account"] is None and kw["slurm_qos"] is None
    assert (kw["gpus_per_node"], kw["tasks_per_node"], kw["cpus_per_task"], kw["mem_gb"]) == (1, 1, 8, 64)
    assert (kw["timeout_min"], kw["slurm_array_parallelism"], kw["slurm_setup"]) == (1440, 16, [])
    assert kw["slurm_signal_delay_s"] == 120
    assert record["cluster"] == "slurm" and record["max_num_timeout"] == 20
    sbatch = record["sbatch"]
    for line in ("--gpus-per-node=1", "--ntasks-per-node=1", "--cpus-per-task=8", "--mem=64GB", "--time=1440",
                 "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert "--partition" not in sbatch and "--account" not in sbatch
    rows = [j["overrides"][0] for j in record["jobs"]]
    assert rows == [f"experiment={e}" for e in ("baseline", "dfrg", "spatial_lora", "csff", "full")]
    assert all(j["checkpoint_every_min"] == 30 for j in record["jobs"])


def test_local_slurm_yaml_reaches_submitit(tmp_path, conf_copy):
    (conf_copy / "local" / "slurm.yaml").write_text(LOCAL_SLURM_YAML)
    record = _dry_run(tmp_path, conf_copy, ["sweep=ablation", "experiment=baseline,dfrg"])
    kw = record["update_parameters"]
    assert (kw["slurm_partition"], kw["slurm_account"], kw["slurm_qos"]) == ("gpu-long", "proj42", "high")
    assert (kw["gpus_per_node"], kw["tasks_per_node"], kw["cpus_per_task"], kw["mem_gb"]) == (4, 4, 6, 200)
    assert (kw["timeout_min"], kw["slurm_array_parallelism"]) == (2880, 3)
    assert kw["slurm_setup"] == ["module load cuda/12.4", "source /opt/aio/.venv/bin/activate"]
    assert record["max_num_timeout"] == 20
    sbatch = record["sbatch"]
    for line in ("--partition=gpu-long", "--account=proj42", "--qos=high", "--gpus-per-node=4",
                 "--ntasks-per-node=4", "--cpus-per-task=6", "--mem=200GB", "--time=2880"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert sbatch.index("module load cuda/12.4") < sbatch.index("srun ")
    assert [j["overrides"][0] for j in record["jobs"]] == ["experiment=baseline", "experiment=dfrg"]
    for job in record["jobs"]:
        assert job["checkpoint_every_min"] == 20
    # the local file's tracking URI reaches each job (logger=none only keeps this dry run from contacting it)
    assert record["jobs"][0]["tracking_uri"] == "http://login-node:5000"


@pytest.mark.slow
def test_submitit_local_sweep_lands_in_mlflow_and_makes_a_table(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "aio.cli.train", "-m", "launcher=submitit_local", "debug=tiny", "trainer.device=cpu",
           "sweep=ablation", "experiment=baseline,dfrg", f"hydra.sweep.dir={sweep_dir}",
           f"logger.tracking_uri={mlflow_store}", f"logger.artifact_location={tmp_path / 'art'}"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    logs = "\n".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*.err")) if sweep_dir.exists() else ""
    assert out.returncode == 0, out.stderr[-2000:] + logs[-3000:]
    assert len(list(sweep_dir.glob(".submitit/*/*_log.out"))) == 2  # one submitit folder per job

    client = MlflowClient(tracking_uri=mlflow_store)
    parent_id = (sweep_dir / "mlflow_parent_run_id").read_text().strip()
    exp = client.get_experiment_by_name("aio")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.data.tags["aio.row"] for r in children) == ["baseline", "dfrg"]
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags.get("aio.error")
        assert "val/avg/psnr" in run.data.metrics
    assert client.get_run(parent_id).info.status == "FINISHED"

    tables = subprocess.run([sys.executable, "-m", "aio.cli.tables", "ablation", "--tracking-uri", mlflow_store,
                             "--out", str(tmp_path / "tables"), "--no-log"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert tables.returncode == 0, tables.stderr[-3000:]
    csvs = list((tmp_path / "tables").rglob("*.csv"))
    assert csvs, list((tmp_path / "tables").rglob("*"))
    text = csvs[0].read_text()
    rows = {r["row"]: r for r in csv.DictReader(text.splitlines())}  # tidy CSV: key, label, status, numbers
    for key in ("baseline", "dfrg"):
        row = rows[key]
        assert row["run_id"] in {r.info.run_id for r in children}, text
        psnr = [k for k in row if k.endswith("psnr")]
        assert psnr and all(_is_number(row[k]) for k in psnr), text
        assert 0 < float(row[psnr[-1]]) < 100, text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


@pytest.mark.slow
def test_joblib_sweep_runs_two_jobs_side_by_side(tmp_path, mlflow_store):
    """``launcher=joblib`` (what ``make demo`` uses): the jobs run at the same time in two worker processes,
    each a child run of the sweep's parent, and the table reads them like any other sweep's."""
    from mlflow.tracking import MlflowClient

    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    cmd = [sys.executable, "-m", "aio.cli.train", "-m", "launcher=joblib", "debug=tiny", "trainer.device=cpu",
           "sweep=ablation", "experiment=dfrg,baseline", f"hydra.sweep.dir={sweep_dir}",
           f"logger.tracking_uri={mlflow_store}", f"logger.artifact_location={tmp_path / 'art'}"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr

    client = MlflowClient(tracking_uri=mlflow_store)
    parent_id = (sweep_dir / "mlflow_parent_run_id").read_text().strip()
    exp = client.get_experiment_by_name("aio")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.data.tags["aio.row"] for r in children) == ["baseline", "dfrg"]
    assert all(r.info.status == "FINISHED" and "val/avg/psnr" in r.data.metrics for r in children)
    a, b = (r.info for r in children)
    assert a.start_time < b.end_time and b.start_time < a.end_time  # side by side, not one after the other

    tables = subprocess.run([sys.executable, "-m", "aio.cli.tables", "ablation", "--tracking-uri", mlflow_store,
                             "--out", str(tmp_path / "tables"), "--no-log"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert tables.returncode == 0, tables.stderr[-3000:]
    rows = {r["row"]: r for r in csv.DictReader(next((tmp_path / "tables").rglob("*.csv")).read_text().splitlines())}
    assert {k: rows[k]["status"] for k in ("baseline", "dfrg")} == {"baseline": "FINISHED", "dfrg": "FINISHED"}

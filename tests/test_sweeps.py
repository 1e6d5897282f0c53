"""A sweep in which one job raises: the others finish, the failure is recorded, the table shows "–"."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aio.paths import SWEEPS_DIR

from conftest import compose_train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sweep", ["ablation", "lora_ratio", "backbones", "losses"])
def test_every_sweep_composes_with_rows_matching_its_grid(sweep):
    spec = compose_train([f"sweep={sweep}"]).sweep
    grid = OmegaConf.load(SWEEPS_DIR / f"{sweep}.yaml").hydra.sweeper.params
    keys = [str(row.key) for row in spec.rows]
    assert spec.name == sweep and len(keys) == len(set(keys)) >= 4
    assert str(grid[spec.row_key]).split(",") == keys


@pytest.mark.slow
def test_failed_job_is_recorded_and_its_row_shows_a_dash(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    env.pop("AIO_VGG19_WEIGHTS", None)  # the "+ Mixed loss" row then fails: no VGG weights given
    sweep = subprocess.run(
        [sys.executable, "-m", "aio.cli.train", "-m", "sweep=ablation", "debug=tiny", "trainer.device=cpu",
         "experiment=baseline,full", f"hydra.sweep.dir={tmp_path / 'sweep'}",
         f"logger.tracking_uri={mlflow_store}", f"logger.artifact_location={tmp_path / 'art'}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert sweep.returncode != 0  # Hydra reports the failed job after running all of them
    assert "loss.perceptual.weights" in sweep.stderr

    client = MlflowClient(tracking_uri=mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("aio").experiment_id])
    children = {r.data.tags.get("aio.row"): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert children["baseline"].info.status == "FINISHED"
    assert children["full"].info.status == "FAILED"
    assert "loss.perceptual.weights" in children["full"].data.tags["aio.error"]

    out = tmp_path / "tables"
    tables = subprocess.run(
        [sys.executable, "-m", "aio.cli.tables", "ablation", "--tracking-uri", mlflow_store, "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert tables.returncode == 0, tables.stderr
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    markdown = (out / "ablation.md").read_text()
    full_line = next(line for line in markdown.splitlines() if line.startswith("| + Mixed loss"))
    baseline_line = next(line for line in markdown.splitlines() if line.startswith("| Baseline"))
    assert set(c.strip() for c in full_line.split("|")[2:-1]) == {"–"}
    assert all(c.strip() != "–" for c in baseline_line.split("|")[2:-1])
    assert len(rows) == 5

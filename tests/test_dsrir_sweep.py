"""sweep=dsrir: the grid matches the table rows, and a real tiny multirun (DSRIR, PromptIR, the full model on the
embedded DSRIR data) lands in MLflow and renders its table with the published DSRIR/PromptIR rows. On the command
line ``strategy=dsrir_progressive_tiny`` applies to every row (the CPU-sized crops of DSRIR's schedule)."""

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


def test_sweep_composes_with_rows_matching_its_grid():
    cfg = compose_train(["sweep=dsrir", "experiment=dsrir", "dataset=dsrir_aio3"])
    grid = OmegaConf.load(SWEEPS_DIR / "dsrir.yaml").hydra.sweeper.params
    assert str(grid.experiment).split(",") == [str(r.key) for r in cfg.sweep.rows] == ["dsrir", "promptir", "full"]
    assert cfg.model.name == "dsrir" and cfg.loss.name == "dsrir" and cfg.trainer.lr == 2e-4
    assert cfg.dataset.metric_protocol == "dsrir" and list(cfg.dataset.noise_sigma_range) == [0.0, 55.0]


@pytest.mark.slow
def test_tiny_sweep_runs_and_renders_its_table(tmp_path, mlflow_store):
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    sweep = subprocess.run(
        [sys.executable, "-m", "aio.cli.train", "-m", "sweep=dsrir", "debug=tiny", "trainer.device=cpu",
         "dataset=synthetic_dsrir_aio3", "strategy=dsrir_progressive_tiny", "paths.vgg19_weights=random",
         "dataset.images=[chelsea]",
         "dataset.val.crops_per_task=1", "dataset.val.crop_size=48", "dataset.patch_size=32",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", f"logger.tracking_uri={mlflow_store}",
         f"logger.artifact_location={tmp_path / 'art'}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    out = tmp_path / "tables"
    tables = subprocess.run(
        [sys.executable, "-m", "aio.cli.tables", "dsrir", "--tracking-uri", mlflow_store, "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert tables.returncode == 0, tables.stderr
    markdown = (out / "dsrir.md").read_text()
    for label in ("DSRIR", "PromptIR", "Full model (LoRa-Gate-Restormer)", "33.27", "32.25"):
        assert label in markdown, label
    rows = list(csv.DictReader(open(out / "dsrir.csv")))
    text = "\n".join(",".join(r.values()) for r in rows)
    assert len(rows) == 6, text  # 3 runs + DSRIR, PromptIR (DSRIR paper) and PromptIR published
    for name in ("denoise_50", "derain", "dehaze"):  # the synthetic preset's sets, with real numbers
        assert any(name in key for key in rows[0]), list(rows[0])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("aio").experiment_id])
    children = {r.data.tags.get("aio.row"): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert {k: c.info.status for k, c in children.items()} == {k: "FINISHED" for k in ("dsrir", "promptir", "full")}
    dsrir = children["dsrir"].data
    assert dsrir.tags.get("perceptual_weights") == "random-init"
    assert 0.05 < dsrir.metrics["model/params_m"] < 0.1 and dsrir.metrics["val/derain/psnr"] > 0
    assert "train/l_contrast" in dsrir.metrics and "train/l_uncert" in dsrir.metrics

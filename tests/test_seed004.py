"""Seed 004's sweep end to end at tiny scale: {Charbonnier, GFL} x {no FT, FT1, FT2, FT again}, every row with
its val PSNR, test PSNR and test PSNR with TTA x8 (computed by evaluation) in MLflow; published rows in the CSV."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aio.paths import REPO_ROOT
from aio.tracking import names
from conftest import compose_train

SWEEP = REPO_ROOT / "sweeps" / "seed004.yaml"


def test_seed004_sweep_composes_rows_for_its_grid():
    spec = compose_train(["sweep=seed004"]).sweep
    grid = OmegaConf.load(SWEEP).hydra.sweeper.params
    keys = [f"{loss},{until}" for loss in str(grid["loss"]).split(",")
            for until in str(grid["strategy.until"]).split(",")]
    assert [str(r.key) for r in spec.rows] == keys and len(keys) == 8
    assert [c.key for c in spec.extra_columns] == [names.val_metric("avg", "psnr"), names.test_metric("avg", "psnr"),
                                                   names.test_metric("avg", "psnr", "x8")]


def test_published_seed004_rows_span_the_reported_range():
    from aio.tables.published import load_published

    df = load_published()
    rows = df[df.benchmark == "RainSnow"]
    assert len(rows) == 24 and set(rows.test_set) == {"val", "test", "test_x8"}
    assert rows.psnr.min() == pytest.approx(29.481) and rows.psnr.max() == pytest.approx(30.733)


@pytest.mark.slow
def test_seed004_sweep_runs_and_logs_all_three_psnr_columns(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    cmd = [sys.executable, "-m", "aio.cli.train", "-m", "sweep=seed004", "debug=tiny", "trainer.device=cpu",
           "trainer.max_steps=4", "dataset.val.crops_per_task=1", "dataset.val.crop_size=32",
           f"logger.tracking_uri={mlflow_store}", f"logger.artifact_location={tmp_path / 'art'}",
           "logger.log_images=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_store)
    exp = client.get_experiment_by_name("aio")
    jobs = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    rows = {r.data.tags.get("aio.row"): r for r in jobs}
    assert sorted(rows) == sorted(str(r.key) for r in compose_train(["sweep=seed004"]).sweep.rows)
    for key, run in rows.items():
        assert run.info.status == "FINISHED", key
        for metric in ("val/avg/psnr", "test/avg/psnr", "test_x8/avg/psnr"):
            assert metric in run.data.metrics, (key, metric)
        until = key.split(",")[1]
        assert f"val:{until}/avg/psnr" in run.data.metrics and run.data.tags["aio.phase"] == until
    assert rows["gfl,ft3"].data.params["loss.name"] == "gfl"

    from aio.tables.collect import make_tables

    table = make_tables("seed004", tracking_uri=mlflow_store, out_dir=tmp_path / "tables")
    header = next(line for line in table.paths["md"].read_text().splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.split("|")[1:-1]][-3:] == [
        "val PSNR", "test PSNR (w/o TTA)", "test PSNR (w/ TTA x8)"]
    df = table.df
    for key, run in rows.items():  # each cell is the run's metric
        for column in ("val/avg/psnr", "test/avg/psnr", "test_x8/avg/psnr"):
            assert df.at[key, column] == pytest.approx(run.data.metrics[column])
    published = df.loc["pub:PromptIR GFL + FT2 again"]  # the published rows under the same three columns
    assert [published[c] for c in ("val/avg/psnr", "test/avg/psnr", "test_x8/avg/psnr")] == [30.062, 30.140, 30.733]


def test_derain_desnow_folder_layout_is_read(tmp_path):
    import torch

    from aio.data import build_train_dataset, build_val_sets, check_dataset, write_image
    from aio.data.config import load_preset

    g = torch.Generator().manual_seed(0)
    for folder, names in (("Train/Derain/rainy", ["rain-1.png"]), ("Train/Derain/gt", ["norain-1.png"]),
                          ("Train/Desnow/snowy", ["a.png", "b.png"]), ("Train/Desnow/gt", ["a.png", "b.png"]),
                          ("test/derain/input", ["t.png"]), ("test/derain/target", ["t.png"]),
                          ("test/desnow/input", ["s.png"]), ("test/desnow/target", ["s.png"])):
        for name in names:
            (tmp_path / folder).mkdir(parents=True, exist_ok=True)
            write_image(tmp_path / folder / name, torch.rand(3, 40, 40, generator=g))
    cfg = load_preset("derain_desnow", {"root": str(tmp_path), "patch_size": 32, "cache": False})
    assert check_dataset(cfg).ok
    train = build_train_dataset(cfg)
    assert train.task_names == ["derain", "desnow"] and train.counts == [1, 2]
    assert sorted(build_val_sets(cfg)) == ["Rain", "Snow"]

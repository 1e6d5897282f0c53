"""The ``mioir`` sweep (issue 13): every row composes to its backbone/prompt/strategy, and the table renders from
real tiny runs of all its rows (one Hydra multirun, MLflow on sqlite, ``aio-tables``)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aio.data.mio import MIO_TASKS
from aio.models import model_from_config
from aio.paths import SWEEPS_DIR
from conftest import compose_train

REPO = Path(__file__).resolve().parents[1]
SPEC = OmegaConf.load(SWEEPS_DIR / "mioir.yaml")
KEYS = str(SPEC.hydra.sweeper.params.experiment).split(",")


def test_rows_match_the_grid_and_compose():
    spec = compose_train(["sweep=mioir"]).sweep
    assert [str(r.key) for r in spec.rows] == KEYS and len(KEYS) == 12
    assert list(spec.sets) == list(MIO_TASKS) and spec.metrics == ["psnr"] and spec.average
    for key in KEYS:
        cfg = compose_train(["sweep=mioir", f"experiment={key}"])
        backbone, learning, *prompt = key.split("/")[1].split("_")
        assert cfg.model.name == backbone and cfg.dataset.name == "synthetic_mio7"
        assert cfg.model.prompt == {(): "none", ("ep",): "explicit", ("ap",): "adaptive"}[tuple(prompt)]
        assert cfg.trainer.lr == 2e-4 and cfg.trainer.ema.decay == 0.999 and cfg.loss.name == "l1"
        sequential = "sequential_restormer" if backbone == "restormer" else "sequential"
        assert cfg.strategy.name == {"m": "mixed", "s": sequential}[learning]
        node = OmegaConf.merge(cfg.model, {"size": "tiny"})
        assert type(model_from_config(node)).__name__.lower() == backbone + "".join(prompt)


@pytest.mark.slow
def test_sweep_renders_the_table_from_real_tiny_runs(tmp_path, mlflow_store):
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "aio.cli.train", "-m", "sweep=mioir", "debug=tiny", "trainer.max_steps=7",
         "trainer.device=cpu", "dataset.images=[astronaut]", "dataset.val.crops_per_task=1", "dataset.val.crop_size=32",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", f"logger.tracking_uri={mlflow_store}",
         f"logger.artifact_location={tmp_path / 'art'}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=1800,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "tables"
    tables = subprocess.run(
        [sys.executable, "-m", "aio.cli.tables", "mioir", "--tracking-uri", mlflow_store, "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert tables.returncode == 0, tables.stderr
    rows = list(csv.DictReader(open(out / "mioir.csv")))
    assert len(rows) == 12
    text = (out / "mioir.csv").read_text()
    for label in ["SRResNet M", "SRResNet S+EP", "Restormer M+AP", "Restormer S"]:
        assert label in text
    header = list(rows[0].keys())
    columns = [next(k for k in header if k.lower().startswith(t) and "psnr" in k.lower()) for t in MIO_TASKS]
    assert any(k.lower().startswith(("avg", "average")) and "psnr" in k.lower() for k in header), header
    cells = [r[c] for r in rows for c in columns]
    assert len(cells) == 12 * 7 and all(0.0 < float(v) < 60.0 for v in cells)  # real PSNRs, every row and task
    latex = (out / "mioir.tex").read_text()
    assert "Restormer S+EP" in latex and "SRResNet M+AP" in latex

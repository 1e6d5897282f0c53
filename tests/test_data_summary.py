"""What is skipped or padded is said at start and logged to MLflow (issue 17, dataset.skip_bad)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aio.data import check_dataset
from aio.data.config import load_preset
from aio.data.summary import summarize


@pytest.fixture
def clean_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "clean"
    root.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / f"big{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "small.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    return root


def test_synthetic_checker_reports_images_smaller_than_the_patch(clean_folder):
    cfg = load_preset("synthetic", {"root": str(clean_folder), "patch_size": 48, "skip_bad": True})
    report = check_dataset(cfg)
    small = [p for p in report.problems if p.kind == "smaller than patch"]
    assert [p.path.rsplit("/", 1)[-1] for p in small] == ["small.png"]  # 40 px < 48; big: 96 px training region
    assert "no problems found" not in report.render()
    s = summarize(report, 48)
    assert (s.skipped, s.padded) == (1, 1)
    assert s.line() == ("[aio] data: 1 bad file(s) skipped (dataset.skip_bad=true), 1 image(s) smaller than "
                        "patch_size 48 padded; `aio-data check` lists them")


def test_training_region_counts_for_the_synthetic_patch(clean_folder):
    # 128 px wide with holdout 0.25 -> a 96 px training region: a 100 px patch pads it
    cfg = load_preset("synthetic", {"root": str(clean_folder), "patch_size": 100, "skip_bad": True})
    assert summarize(check_dataset(cfg), 100).padded == 3


def test_trainer_prints_and_logs_the_summary(clean_folder, tiny_overrides, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from aio.train.trainer import Trainer
    from conftest import compose_train

    cfg = compose_train(tiny_overrides + [f"dataset.root={clean_folder}", "dataset.skip_bad=true",
                                          "dataset.patch_size=48", "trainer.max_steps=1", "trainer.warmup_steps=0", "trainer.val_every=1",
                                          "dataset.val.crops_per_task=1", "dataset.val.crop_size=32"])
    trainer = Trainer(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert "[aio] data: 1 bad file(s) skipped (dataset.skip_bad=true), 1 image(s) smaller than patch_size 48 padded" in out
    run_id = trainer.mlflow_run_id
    trainer.tracker.end("FINISHED")  # logged at start: no need to train
    run = MlflowClient(tracking_uri=cfg.logger.tracking_uri).get_run(run_id)
    assert run.data.metrics["data/skipped"] == 1 and run.data.metrics["data/padded"] == 1
    assert run.data.tags["aio.data_summary"].startswith("1 bad file(s) skipped")

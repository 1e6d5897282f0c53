"""The trainer end to end on tiny CPU runs: learning, exact resume, atomic checkpoints, MLflow, clear errors."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from aio.train import checkpoint as ckpt_io
from aio.train.trainer import NonFiniteLossError, Trainer
from conftest import compose_train, sqlite_uri

REPO = Path(__file__).resolve().parents[1]


def _cfg(overrides):
    if "logger=none" in overrides:  # the tracking keys exist only under logger=mlflow
        overrides = [o for o in overrides if not o.startswith("logger.")]
    return compose_train(overrides)


def test_steps_on_one_batch_reduce_the_loss(tiny_overrides, tmp_path):
    cfg = _cfg(tiny_overrides + ["logger=none", "trainer.max_steps=40", "trainer.warmup_steps=1", "trainer.lr=2e-3"])
    trainer = Trainer(cfg, tmp_path / "run")
    batch = next(iter(trainer.loader))
    same_batch = itertools.repeat(batch)
    first = trainer._train_step(same_batch)["loss"]
    for _ in range(30):
        last = trainer._train_step(same_batch)["loss"]
    assert last < 0.7 * first, (first, last)


def _stop_at(step):
    def callback(trainer):
        if trainer.step == step:
            trainer.stop_requested = True

    return callback


def test_resume_gives_exactly_the_uninterrupted_weights(tiny_overrides, tmp_path):
    overrides = tiny_overrides + ["logger=none", "trainer.max_steps=6", "trainer.checkpoint_every=100",
                                  "trainer.val_every=100"]
    straight = Trainer(_cfg(overrides), tmp_path / "a")
    straight.fit()

    interrupted = Trainer(_cfg(overrides), tmp_path / "b", callbacks=[_stop_at(3)])
    interrupted.fit()
    assert interrupted.step == 3
    assert ckpt_io.load_checkpoint(tmp_path / "b")["step"] == 3

    resumed = Trainer(_cfg(overrides), tmp_path / "b")
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == 6
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.ema.module.state_dict().items():
        assert torch.equal(value, resumed.ema.module.state_dict()[key]), f"ema {key}"


def test_checkpoint_carries_config_and_all_state(tiny_overrides, tmp_path):
    trainer = Trainer(_cfg(tiny_overrides + ["logger=none"]), tmp_path)
    trainer.fit()
    state = ckpt_io.load_checkpoint(tmp_path)
    for key in ("model", "ema", "optimizer", "scheduler", "scaler", "step", "rng", "config", "mlflow_run_id"):
        assert key in state, key
    assert state["config"]["model"]["name"] == "restormer"
    model, cfg = ckpt_io.load_model(tmp_path)
    assert cfg.trainer.max_steps == 4
    out = model(torch.rand(1, 3, 19, 23))
    assert out.shape == (1, 3, 19, 23)


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt_io.save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert ckpt_io.load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_overrides, tmp_path):
    def poison(trainer):
        if trainer.step == 2:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    cfg = _cfg(tiny_overrides + ["logger=none", "trainer.max_steps=4", "trainer.checkpoint_every=2"])
    trainer = Trainer(cfg, tmp_path, callbacks=[poison])
    with pytest.raises(NonFiniteLossError, match="step 3"):
        trainer.fit()
    state = ckpt_io.load_checkpoint(tmp_path)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_run_lands_in_mlflow_with_params_metrics_artifacts(tiny_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = _cfg(tiny_overrides)
    trainer = Trainer(cfg, tmp_path / "run", tracker_tags={"aio.overrides": "debug=tiny"})
    trainer.fit()
    client = MlflowClient(tracking_uri=sqlite_uri(tmp_path))
    run = client.get_run(trainer.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.max_steps"] == "4"
    assert run.data.params["model.name"] == "restormer"
    for key in ("train/loss", "train/lr", "train/images_per_s", "val/avg/psnr", "val/avg/ssim", "model/params_m",
                "model/gflops_256"):
        assert key in run.data.metrics, key
    assert any(k.startswith("val/") and k.endswith("/psnr") and "avg" not in k for k in run.data.metrics)
    for key in ("git_commit", "host", "aio.overrides"):
        assert key in run.data.tags, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"samples", "checkpoints", "config.yaml"} <= artifacts
    assert client.list_artifacts(run.info.run_id, "samples")


def test_bad_values_give_one_line_errors(tiny_overrides, tmp_path):
    from aio.tracking.mlflow_tracker import TrackingError

    with pytest.raises(ValueError, match="trainer.amp=fp8"):
        Trainer(_cfg(tiny_overrides + ["trainer.amp=fp8"]), tmp_path)
    with pytest.raises(ValueError, match="trainer.amp=fp16 needs a CUDA"):
        Trainer(_cfg(tiny_overrides + ["trainer.amp=fp16"]), tmp_path)
    with pytest.raises(ValueError, match="trainer.warmup_steps"):
        Trainer(_cfg(tiny_overrides + ["trainer.warmup_steps=10"]), tmp_path)
    with pytest.raises(TrackingError, match="unreachable"):
        Trainer(_cfg(tiny_overrides + ["logger.tracking_uri=http://127.0.0.1:9"]), tmp_path)
    with pytest.raises(TrackingError, match="file store"):
        Trainer(_cfg(tiny_overrides + [f"logger.tracking_uri={tmp_path}/mlruns"]), tmp_path)


def test_checkpoint_of_another_architecture_lists_mismatched_keys(tiny_overrides, tmp_path):
    Trainer(_cfg(tiny_overrides + ["logger=none"]), tmp_path / "tiny").fit()
    cfg = _cfg(tiny_overrides + ["logger=none", "model.size=small", f"trainer.fine_tune_from={tmp_path / 'tiny'}"])
    with pytest.raises(ckpt_io.CheckpointError, match="mis-shaped"):
        Trainer(cfg, tmp_path / "other")


def test_aio_train_cli_runs_then_resumes_in_the_same_folder(tmp_path, mlflow_store):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "aio.cli.train", "debug=tiny", "trainer.device=cpu",
            f"logger.tracking_uri={mlflow_store}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "AIO_OUTPUTS": str(tmp_path)}
    first = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    run_id = ckpt_io.load_checkpoint(run_dir)["mlflow_run_id"]
    again = subprocess.run(args + ["trainer.max_steps=6"], capture_output=True, text=True, env=env, cwd=REPO,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout
    state = ckpt_io.load_checkpoint(run_dir)
    assert state["step"] == 6 and state["mlflow_run_id"] == run_id

    bad = subprocess.run(args[:-1] + [f"hydra.run.dir={tmp_path / 'bad'}", "trainer.amp=fp8"], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("aio-train: error: trainer.amp=fp8")

"""Preemption: SIGTERM mid-run saves last.pt and exits; the same command resumes to exactly the weights of an
uninterrupted run, in the same MLflow run, with one continuous metric history."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aio.train import checkpoint as ckpt_io
from aio.train.trainer import Trainer
from conftest import compose_train, sqlite_uri

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 8


def _cmd(run_dir: Path, store: str, art: Path) -> list[str]:
    return [sys.executable, "-m", "aio.cli.train", "debug=tiny", "trainer.device=cpu",
            f"trainer.max_steps={MAX_STEPS}", "trainer.log_every=1", "trainer.checkpoint_every=1",
            "trainer.val_every=4", f"logger.tracking_uri={store}", f"logger.artifact_location={art}",
            f"hydra.run.dir={run_dir}"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AIO_OUTPUTS": str(tmp_path), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigterm_saves_then_the_same_command_resumes_exactly(tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    shutil.copy(tmp_path / "mlflow.db", ref_dir / "mlflow.db")  # the reference run gets its own empty store
    env = _env(tmp_path)
    reference = subprocess.Popen(_cmd(ref_dir / "run", sqlite_uri(ref_dir), ref_dir / "art"), cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    run_dir = tmp_path / "run"
    cmd = _cmd(run_dir, mlflow_store, tmp_path / "art")
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = run_dir / "checkpoints" / ckpt_io.CHECKPOINT_NAME
    deadline = time.monotonic() + 300
    while not ckpt.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first last.pt (step 1) exists only once the training loop, and its handler, run
    assert ckpt.exists(), "no checkpoint appeared"
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert "stop requested" in out, out[-2000:]
    stopped_at = ckpt_io.load_checkpoint(run_dir)["step"]
    assert 1 <= stopped_at < MAX_STEPS, f"stopped at {stopped_at}: the run was not interrupted midway"
    client = MlflowClient(tracking_uri=mlflow_store)
    run_id = ckpt_io.load_checkpoint(run_dir)["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"  # the requeued job finishes it

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at step {stopped_at}" in again.stdout
    ref_out, ref_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_err[-3000:]

    resumed, straight = ckpt_io.load_checkpoint(run_dir), ckpt_io.load_checkpoint(ref_dir / "run")
    assert resumed["step"] == straight["step"] == MAX_STEPS
    for part in ("model", "ema"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part} {key}"

    assert resumed["mlflow_run_id"] == run_id
    exp = client.get_experiment_by_name("aio")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.status == "FINISHED"
    history = client.get_metric_history(run_id, "train/loss")
    steps = [m.step for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
    assert steps == list(range(1, MAX_STEPS + 1)), steps  # unique, strictly increasing, ending at max_steps
    ref_client = MlflowClient(tracking_uri=sqlite_uri(ref_dir))
    ref_run = ref_client.search_runs([ref_client.get_experiment_by_name("aio").experiment_id])[0]
    ref_losses = [m.value for m in sorted(ref_client.get_metric_history(ref_run.info.run_id, "train/loss"),
                                          key=lambda m: m.step)]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == ref_losses
    assert len(client.get_metric_history(run_id, "model/params_m")) == 1


def test_stop_signal_saves_before_the_previous_handler_runs(tiny_overrides, tmp_path):
    """Under submitit the previous SIGUSR2 handler requeues the job: it must run after last.pt is written."""
    seen: list[tuple[int, int]] = []

    def submitit_like(signum, frame):
        seen.append((signum, ckpt_io.load_checkpoint(tmp_path)["step"]))

    def preempt_at_2(trainer):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGUSR2)

    overrides = [o for o in tiny_overrides if not o.startswith("logger.")] + ["logger=none",
                                                                              "trainer.checkpoint_every=100"]
    old = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        trainer = Trainer(compose_train(overrides), tmp_path, callbacks=[preempt_at_2])
        trainer.fit()
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # handed back
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert trainer.step == 2 and trainer.stop_requested
    assert seen == [(signal.SIGUSR2, 2)]

"""What a run leaves behind and says (issue 17): train.log holds what the console showed (no progress-bar
redraws), checkpoint saves are announced, a finished run says so when re-run, stale temp files are cleaned,
failed runs leave no stub folder, checkpoints get the umask's mode, MLflow run names say what was trained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aio.paths import REPO_ROOT
from aio.train import checkpoint as ckpt_io
from aio.train.run_name import run_label


SLOW = pytest.mark.slow  # they share two tiny CLI runs and a failing one (~40 s on an idle 2-core machine)


def _train(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "aio.cli.train", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, _template_store):
    """One tiny CLI run (stdout/stderr are pipes, as under SLURM), then the same command again."""
    import shutil

    tmp = tmp_path_factory.mktemp("outputs")
    shutil.copy(_template_store, tmp / "mlflow.db")
    run_dir = tmp / "run"
    env = {**os.environ, "AIO_OUTPUTS": str(tmp)}
    args = ["debug=tiny", "trainer.device=cpu", "strategy=progressive", f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"logger.artifact_location={tmp / 'art'}", f"hydra.run.dir={run_dir}"]
    first = _train(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    stale = run_dir / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"")  # what a kill during a save leaves
    again = _train(args, env)
    assert again.returncode == 0, again.stderr[-3000:]
    return {"dir": run_dir, "first": first, "again": again, "stale": stale, "tmp": tmp, "env": env}


@SLOW
def test_train_log_holds_the_console_lines(finished):
    log = (finished["dir"] / "train.log").read_text()
    assert "[aio] phase 1/2 easy" in log and "[aio] step 4/4" in log and "val PSNR" in log
    assert "[aio] step 4/4" in finished["first"].stdout  # the console showed the same lines


@SLOW
def test_non_terminal_output_has_no_progress_bar_redraws(finished):
    text = finished["first"].stdout + finished["first"].stderr + (finished["dir"] / "train.log").read_text()
    assert "train:" not in text and "it/s]" not in text  # tqdm draws only on a terminal
    lines = [line for line in finished["first"].stdout.splitlines() if "[aio] step 4/4" in line]
    assert len(lines) == 1, lines


@SLOW
def test_checkpoint_saves_are_announced(finished):
    assert f"[aio] saved checkpoint {finished['dir'] / 'checkpoints' / 'last.pt'} (step 4)" in finished["first"].stdout


@SLOW
def test_rerunning_a_finished_run_says_it_is_complete(finished):
    out = finished["again"].stdout
    assert "run already complete: step 4 of 4" in out and "resumed" not in out


@SLOW
def test_stale_temp_files_are_removed_on_start(finished):
    assert not finished["stale"].exists()
    assert [p.name for p in (finished["dir"] / "checkpoints").iterdir()] == ["last.pt"]


def test_checkpoint_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = ckpt_io.save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(1)})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


@SLOW
def test_failed_run_leaves_no_stub_folder(finished):
    bad = finished["tmp"] / "runs" / "2026-01-01" / "bad"
    failed = _train(["debug=tiny", "trainer.device=cpu", "logger=none", "trainer.warmup_steps=99",
                     f"hydra.run.dir={bad}"], finished["env"])
    assert failed.returncode == 1 and "trainer.warmup_steps=99" in failed.stderr
    assert not bad.exists() and not bad.parent.exists()


@SLOW
def test_standalone_mlflow_run_names_say_what_was_trained(finished):
    from mlflow.tracking import MlflowClient

    run_id = ckpt_io.load_checkpoint(finished["dir"])["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{finished['tmp']}/mlflow.db")
    assert client.get_run(run_id).info.run_name == "restormer debug=tiny strategy=progressive"
    assert run_label("baseline", ["loss=gfl", "logger.tracking_uri=x", "hydra.run.dir=y", "trainer.lr=1e-4"]) == \
        "baseline loss=gfl trainer.lr=1e-4"

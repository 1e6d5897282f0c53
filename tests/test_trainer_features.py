"""Trainer features README promises, through the public API and the CLI (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aio.train.trainer import NonFiniteLossError, Trainer
from conftest import compose_train

REPO = Path(__file__).resolve().parents[1]
FAST = ["debug=tiny", "logger=none", "trainer.device=cpu", "trainer.warmup_steps=1", "trainer.val_every=100",
        "trainer.checkpoint_every=100", "dataset.images=[astronaut]", "dataset.tasks=[denoise_25,derain]",
        "dataset.val.crops_per_task=1", "dataset.val.crop_size=32"]


def _optimizer(trainer) -> torch.optim.Optimizer:
    found = [v for v in vars(trainer).values() if isinstance(v, torch.optim.Optimizer)]
    assert len(found) == 1, "the trainer should hold one optimizer"
    return found[0]


def _grad_norms_seen_by_the_optimizer(trainer) -> list[float]:
    norms: list[float] = []

    def pre_step(opt, args, kwargs):
        grads = [p.grad.detach().flatten() for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()))

    _optimizer(trainer).register_step_pre_hook(pre_step)
    return norms


def test_gradient_clipping_clips(tmp_path):
    free = Trainer(compose_train(FAST + ["trainer.max_steps=2", "trainer.grad_clip=0"]), tmp_path / "free")
    free_norms = _grad_norms_seen_by_the_optimizer(free)
    free.fit()
    clip = min(free_norms) / 10
    clipped = Trainer(compose_train(FAST + ["trainer.max_steps=2", f"trainer.grad_clip={clip}"]), tmp_path / "clip")
    norms = _grad_norms_seen_by_the_optimizer(clipped)
    clipped.fit()
    assert len(norms) == 2 and all(n <= clip * (1 + 1e-4) for n in norms), (clip, norms, free_norms)
    assert all(n > clip * 2 for n in free_norms)  # without clipping the same steps exceed it


def test_channels_last_inside_the_trainer(tmp_path):
    trainer = Trainer(compose_train(FAST + ["trainer.max_steps=1", "trainer.warmup_steps=0", "trainer.channels_last=true"]), tmp_path)
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    seen = []
    trainer.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
        if mod.training and args[0].device.type != "meta" else None, with_kwargs=True)
    trainer.fit()
    assert seen and all(seen)  # every training batch reaches the model in channels_last


def test_random_init_vgg_is_tagged_in_mlflow(tiny_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    over = [o for o in FAST if o != "logger=none"] + tiny_overrides[1:] + [
        "loss=perceptual", "paths.vgg19_weights=random", "trainer.max_steps=1", "trainer.warmup_steps=0"]
    cfg = compose_train(over)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.tracker.end("FINISHED")
    client = MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.data.tags.get("perceptual_weights") for r in runs] == ["random-init"]


def test_training_refuses_a_broken_layout_through_the_cli(tmp_path):
    from aio.data.fixtures import make_aio_tree

    root = make_aio_tree(tmp_path / "bad", broken=True)
    env = dict(os.environ, AIO_OUTPUTS=str(tmp_path / "outputs"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "aio.cli.train", "dataset=aio3", f"dataset.root={root}", "logger=none",
                        "trainer.device=cpu", "debug=tiny"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.startswith("aio-train: error: dataset aio3") and "NOT OK" in r.stderr
    assert "Traceback" not in r.stderr and "corrupt.png" in r.stderr


def test_non_finite_loss_names_the_checkpoint_path(tmp_path):
    def poison(trainer):
        if trainer.step == 2:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    trainer = Trainer(compose_train(FAST + ["trainer.max_steps=4", "trainer.checkpoint_every=2"]), tmp_path,
                      callbacks=[poison])
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    assert str(tmp_path / "checkpoints" / "last.pt") in str(err.value) and "step 3" in str(err.value)

"""strategy=dsrir_progressive: the reference's epochs converted to steps, one warm-up + cosine across the
phases, crops and batches that change at the boundaries, and an exact resume across a boundary."""

from __future__ import annotations

import pytest
import torch
from omegaconf import open_dict

from aio.train import checkpoint as ckpt_io
from aio.train.phases import resolve_schedule
from aio.train.trainer import Trainer
from conftest import compose_train

TINY = ["experiment=dsrir", "strategy=dsrir_progressive_tiny", "debug=tiny", "logger=none", "trainer.device=cpu",
        "loss.contrast_weight=0", "trainer.max_steps=8", "trainer.checkpoint_every=100", "trainer.val_every=100",
        "dataset=synthetic_dsrir_aio3", "dataset.images=[chelsea]", "dataset.val.crops_per_task=1",
        "dataset.val.crop_size=32", "dataset.num_workers=0"]


def test_paper_schedule_is_the_reference_epochs_in_steps():
    cfg = compose_train(["experiment=dsrir", "dataset=dsrir_aio3"])
    with open_dict(cfg):
        cfg.strategy.fit_steps = None  # the declared (reference) lengths
    phases = resolve_schedule(cfg, {t: 1000 for t in cfg.dataset.tasks})
    steps_per_epoch = [15144 // b for b in (16, 14, 12, 8)]  # the reference's drop_last DataLoaders
    epochs = [135, 238 - 135, 314 - 238, 347 - 314]
    assert [p.steps for p in phases] == [e * s for e, s in zip(epochs, steps_per_epoch)]
    assert [(p.patch_size, p.batch_size) for p in phases] == [(128, 16), (160, 14), (192, 12), (256, 8)]
    assert [p.start_step for p in phases] == [0, 127710, 127710 + 111343, 127710 + 111343 + 95912]
    assert sum(p.steps for p in phases) == 397434
    assert [p.schedule for p in phases] == ["restart", "continue", "continue", "continue"]
    assert all(p.lr == 2e-4 and p.min_lr == 1e-6 and p.warmup_steps == 3 * 946 for p in phases)
    assert phases[-1].segment_steps == 397434  # one cosine over the whole run
    assert cfg.trainer.weight_decay == 1e-4


def _recording(trainer: Trainer) -> list[tuple[int, tuple[int, ...], float]]:
    """Record (step, input batch shape, lr) of every optimizer step the trainer takes."""
    seen: list[tuple[int, tuple[int, ...], float]] = []
    take_step = trainer._train_step

    def step(data_iter):
        def watched():
            for batch in data_iter:
                seen.append((trainer.step + 1, tuple(batch["input"].shape), trainer.optimizer.param_groups[0]["lr"]))
                yield batch

        return take_step(watched())

    trainer._train_step = step
    return seen


def _stop_at(step):
    def callback(trainer):
        if trainer.step == step:
            trainer.stop_requested = True

    return callback


@pytest.mark.slow  # two 8-step runs and a resumed one of the tiny DSRIR
def test_tiny_form_changes_patch_and_batch_at_the_boundaries_and_resumes_exactly(tmp_path):
    straight = Trainer(compose_train(TINY), tmp_path / "a")
    assert [(p.steps, p.patch_size, p.batch_size) for p in straight.schedule] == [
        (2, 32, 4), (2, 40, 3), (1, 48, 3), (3, 64, 2)]  # 8 steps in the reference's proportions
    seen = _recording(straight)
    straight.fit()
    assert [s for s, _, _ in seen] == list(range(1, 9))
    assert [shape for _, shape, _ in seen] == [(4, 3, 32, 32)] * 2 + [(3, 3, 40, 40)] * 2 + [(3, 3, 48, 48)] + [
        (2, 3, 64, 64)] * 3
    lrs = [lr for _, _, lr in seen]
    assert lrs[2] < lrs[1] and lrs[4] < lrs[3]  # no warm-up restart at a boundary: the cosine continues

    stopped = Trainer(compose_train(TINY), tmp_path / "b", callbacks=[_stop_at(3)])
    stopped.fit()
    state = ckpt_io.load_checkpoint(tmp_path / "b")
    assert (state["step"], state["phase_name"], state["phase_step"]) == (3, "p160", 1)
    resumed = Trainer(compose_train(TINY), tmp_path / "b")
    assert resumed.step == 3 and resumed.phase.name == "p160"
    seen_resumed = _recording(resumed)
    resumed.fit()
    assert [shape for _, shape, _ in seen_resumed] == [shape for _, shape, _ in seen[3:]]
    for part, a, b in (("model", straight.model, resumed.model), ("ema", straight.ema.module, resumed.ema.module)):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), f"{part} {key}"

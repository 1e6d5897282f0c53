"""Exact resume beyond the default run (issue 18), through the public API ``Trainer(cfg, run_dir).fit()``.

Each case trains straight to ``max_steps`` and, separately, stops after step 3 (a stop request, as SLURM's
SIGUSR2 does) and resumes; the final model and EMA weights must be bit-identical. Three trainer runs per case:
marked slow (CI runs them).
"""

from __future__ import annotations

import pytest
import torch

from aio.train import checkpoint as ckpt_io
from aio.train.trainer import Trainer
from conftest import compose_train

FAST = ["debug=tiny", "logger=none", "trainer.device=cpu", "trainer.max_steps=6", "trainer.warmup_steps=1",
        "trainer.val_every=100", "trainer.checkpoint_every=100", "dataset.images=[astronaut,coffee]",
        "dataset.tasks=[denoise_25,derain]", "dataset.val.crops_per_task=1", "dataset.val.crop_size=32"]


def _stop_after(step):
    def callback(trainer):
        if trainer.step == step:
            trainer.stop_requested = True

    return callback


def _weights(run_dir):
    state = ckpt_io.load_checkpoint(run_dir)
    return state["model"], state["ema"], state


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _straight_and_resumed(tmp_path, extra):
    Trainer(compose_train(FAST + extra), tmp_path / "straight").fit()
    Trainer(compose_train(FAST + extra), tmp_path / "cut", callbacks=[_stop_after(3)]).fit()
    assert ckpt_io.load_checkpoint(tmp_path / "cut")["step"] == 3
    Trainer(compose_train(FAST + extra), tmp_path / "cut").fit()
    (m1, e1, s1), (m2, e2, s2) = _weights(tmp_path / "straight"), _weights(tmp_path / "cut")
    assert s1["step"] == s2["step"] == 6
    _assert_same(m1, m2)
    _assert_same(e1, e2)


def _cpu_has_bf16() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.nn.functional.linear(torch.ones(1, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    except RuntimeError:
        return False


@pytest.mark.parametrize("extra", [
    pytest.param(["trainer.amp=bf16"], id="bf16", marks=pytest.mark.skipif(not _cpu_has_bf16(), reason="no bf16 on this CPU")),
    pytest.param(["trainer.grad_accum=2"], id="grad_accum2"),
    pytest.param(["dataset.num_workers=1"], id="workers1"),
])
@pytest.mark.slow
def test_exact_resume(tmp_path, extra):
    _straight_and_resumed(tmp_path, extra)


@pytest.mark.slow
def test_resume_from_a_path_and_never(tmp_path):
    Trainer(compose_train(FAST), tmp_path / "straight").fit()
    Trainer(compose_train(FAST), tmp_path / "cut", callbacks=[_stop_after(3)]).fit()
    cut_ckpt = tmp_path / "cut" / "checkpoints" / "last.pt"
    # trainer.resume=<file>: continue another folder's run into a new folder, to the same weights
    Trainer(compose_train(FAST + [f"trainer.resume={cut_ckpt}"]), tmp_path / "elsewhere").fit()
    _assert_same(_weights(tmp_path / "straight")[0], _weights(tmp_path / "elsewhere")[0])
    # trainer.resume=never: the folder's own last.pt (step 3) is ignored: a fresh run, equal to the straight one
    fresh = Trainer(compose_train(FAST + ["trainer.resume=never"]), tmp_path / "cut")
    assert fresh.step == 0
    fresh.fit()
    _assert_same(_weights(tmp_path / "straight")[0], _weights(tmp_path / "cut")[0])


def test_fine_tune_from_loads_weights_with_a_fresh_optimizer(tmp_path):
    Trainer(compose_train(FAST + ["trainer.max_steps=3"]), tmp_path / "source").fit()
    source = _weights(tmp_path / "source")[1]  # an aio checkpoint's weights are its EMA ones (README)
    tuned = Trainer(compose_train(FAST + [f"trainer.fine_tune_from={tmp_path / 'source'}"]), tmp_path / "tuned")
    assert tuned.step == 0
    _assert_same(source, tuned.model.state_dict())
    tuned.fit()
    state = ckpt_io.load_checkpoint(tmp_path / "tuned")
    assert state["step"] == 6
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {6.0}  # 6 optimizer steps from a fresh AdamW, not 3 + 6

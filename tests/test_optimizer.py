"""trainer.adamw_kernel: fused AdamW where torch has the kernel, the same update as torch's default loop to
float rounding; the choice's errors and its MLflow tag."""

from __future__ import annotations

import pytest
import torch

from aio.train.builders import adamw, adamw_kernel_of
from aio.train.trainer import Trainer
from conftest import compose_train


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in [(64, 48, 1, 1), (48,), (7, 3, 3, 3)]]


def test_auto_is_fused_on_cpu_and_default_is_torchs_own_choice():
    assert adamw_kernel_of(adamw(_params(), lr=1e-3)) == "fused"
    assert adamw_kernel_of(adamw(_params(), lr=1e-3, kernel="fused")) == "fused"
    default = adamw(_params(), lr=1e-3, kernel="default")
    assert adamw_kernel_of(default) == "default" and not default.defaults["foreach"]  # the loop, on a CPU


def test_fused_is_the_default_update_to_float_rounding():
    runs = {}
    for kernel in ("fused", "default"):
        params = _params()
        opt = adamw(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=1e-4, kernel=kernel)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs[kernel] = params
    start = _params()
    for fused, loop, p0 in zip(runs["fused"], runs["default"], start):
        moved = (loop - p0).abs().max()
        assert moved > 1e-2  # five steps of lr 1e-2 moved every tensor ...
        assert (fused - loop).abs().max() <= 1e-6 * max(1.0, p0.abs().max().item())  # ... to the same place


def test_a_resumed_optimizer_keeps_the_kernel_it_was_saved_with():
    saved = adamw(_params(), lr=1e-3, kernel="default")
    resumed = adamw(_params(), lr=1e-3)
    resumed.load_state_dict(saved.state_dict())
    assert adamw_kernel_of(resumed) == "default"


def test_errors_name_the_key():
    with pytest.raises(ValueError, match="^trainer.adamw_kernel=fast is not one of auto, fused, default$"):
        adamw(_params(), lr=1e-3, kernel="fast")
    meta = [torch.nn.Parameter(torch.empty(3, device="meta"))]
    with pytest.raises(ValueError, match=r"^trainer.adamw_kernel=fused: torch has no fused AdamW for torch.float32 on meta .*; use trainer.adamw_kernel=auto$"):
        adamw(meta, lr=1e-3, kernel="fused")
    assert adamw_kernel_of(adamw(meta, lr=1e-3)) == "default"  # auto falls back where there is no fused kernel


def test_trainer_rejects_a_bad_kernel_before_any_work(tiny_overrides, tmp_path):
    cfg = compose_train([o for o in tiny_overrides if not o.startswith("logger.")]
                        + ["logger=none", "trainer.adamw_kernel=fast"])
    with pytest.raises(ValueError, match="^trainer.adamw_kernel=fast is not one of auto, fused, default$"):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kernel,expected", [("auto", "fused"), ("default", "default")])
def test_trainer_builds_and_records_the_kernel(tiny_overrides, tmp_path, kernel, expected):
    import mlflow

    from aio.tracking import names

    trainer = Trainer(compose_train(tiny_overrides + [f"trainer.adamw_kernel={kernel}"]), tmp_path / "run")
    assert adamw_kernel_of(trainer.optimizer) == expected
    run = mlflow.MlflowClient(trainer.cfg.logger.tracking_uri).get_run(trainer.mlflow_run_id)
    assert run.data.tags[names.TAG_ADAMW_KERNEL] == expected

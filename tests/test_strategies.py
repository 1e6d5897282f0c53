"""Every strategy of conf/strategy runs end to end at tiny scale: its phases are visible in MLflow (one
``phase`` point per boundary, trainable-parameter counts, end-of-phase validation per phase)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from aio.paths import CONF_DIR
from aio.train.phases import trainable_names
from aio.train.trainer import Trainer
from conftest import compose_train

# the general strategies (issue 12); method branches' own strategies (abair_*, dsrir_*) are run by their tests
STRATEGIES = ["mixed", "progressive", "sequential", "sequential_restormer", "staged_finetune", "task_incremental"]
ORDER = "strategy.order=[derain,denoise_15,dehaze]"  # the synthetic preset's tasks (mio7 names elsewhere)


def test_every_general_strategy_has_its_file():
    assert set(STRATEGIES) <= {p.stem for p in (CONF_DIR / "strategy").glob("*.yaml")}


@pytest.mark.slow  # 15-30 s each on an idle 2-core machine (a model, 4+ phases, validations, MLflow)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_runs_at_tiny_scale_with_its_phases_in_mlflow(strategy, tiny_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    overrides = tiny_overrides + [f"strategy={strategy}", "trainer.max_steps=5", "trainer.val_every=100",
                                  "trainer.checkpoint_every=100", "logger.log_images=false"]
    if strategy.startswith("sequential"):
        overrides.append(ORDER)
    trainer = Trainer(compose_train(overrides), tmp_path / "run")
    trainer.fit()
    names = [p.name for p in trainer.schedule]
    assert trainer.step == trainer.total_steps >= 5 and len(names) >= 1
    client = MlflowClient(tracking_uri=OmegaConf.select(trainer.cfg, "logger.tracking_uri"))
    run = client.get_run(trainer.mlflow_run_id)
    phases = client.get_metric_history(run.info.run_id, "phase")
    assert sorted(int(m.value) for m in phases) == list(range(len(names)))
    assert len(client.get_metric_history(run.info.run_id, "model/trainable_params")) == len(names)
    for name in names:
        assert f"val:{name}/avg/psnr" in run.data.metrics, name
    assert run.data.tags["aio.strategy"] == strategy and run.data.tags["aio.phases"] == ",".join(names)


def test_staged_finetune_core_modules_are_six_promptir_modules():
    from aio.models import create_model

    cfg = OmegaConf.load(CONF_DIR / "strategy" / "staged_finetune.yaml")
    ft2 = next(p for p in cfg.phases if p.name == "ft2")
    names = [n for n, _ in create_model("promptir").named_parameters()]
    kept = trainable_names(names, [], list(ft2.train_only))
    assert sorted({n.split(".")[0] for n in kept}) == ["decoder_level1", "output", "prompt1", "prompt2", "prompt3",
                                                        "refinement"]
    assert 0 < len(kept) < len(names)

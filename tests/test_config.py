"""Every option of every config group composes, resolves, and bad keys/types are rejected by Hydra."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, ValidationError

from aio.paths import CONF_DIR
from conftest import compose_train

GROUPS = ["backbone", "gate", "lora_ratio", "loss", "dataset", "trainer", "logger", "paths", "launcher", "scale",
          "experiment", "debug", "prompt", "strategy", "augment"]


def _options(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in _options(g)]


def test_every_group_has_options():
    for group in ["backbone", "gate", "lora_ratio", "loss", "dataset", "trainer", "logger", "launcher", "scale"]:
        assert _options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose_train([f"{group}={option}"])
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["model"]["name"]
    assert plain["trainer"]["max_steps"] >= 1


def test_default_composition_is_the_embedded_run():
    cfg = compose_train()
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.name == "restormer" and cfg.model.size == "small"
    assert cfg.logger.name == "mlflow" and cfg.logger.tracking_uri.endswith("mlflow.db")


def test_misspelt_trainer_key_is_rejected():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_train(["trainer.max_stepz=3"])


def test_wrong_type_is_rejected():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_train(["trainer.max_steps=many"])


def test_misspelt_dataset_key_is_rejected():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_train(["dataset.batchsize=3"])

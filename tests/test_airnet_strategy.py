"""strategy=airnet: AirNet's two stages as phases (encoder alone on the contrastive loss, then joint)."""

from __future__ import annotations

import torch
from omegaconf import open_dict

from aio.train.trainer import Trainer
from conftest import compose_train


def test_airnet_stages_train_the_encoder_alone_then_everything(tmp_path):
    cfg = compose_train(["debug=tiny", "backbone=airnet", "strategy=airnet", "logger=none", "trainer.device=cpu",
                         "trainer.max_steps=6"])
    with open_dict(cfg):
        cfg.trainer.ema.enabled = False
    trainer = Trainer(cfg, tmp_path / "run")
    assert [(p.name, p.lr, p.schedule) for p in trainer.schedule] == [
        ("encoder", 1e-3, "constant"), ("encoder_decay", 1e-4, "constant"), ("joint", 1e-4, "restart")]
    start = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def record(tr: Trainer) -> None:
        seen[tr.phase.name] = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}

    trainer.callbacks.append(record)
    trainer.fit()
    enc = seen["encoder_decay"]  # the end of the encoder-only stage
    assert all(torch.equal(enc[k], start[k]) for k in start if k.startswith("R."))  # restoration net untouched
    assert any(not torch.equal(enc[k], start[k]) for k in start if k.startswith("E.") and "queue" not in k)
    end = seen["joint"]
    assert any(not torch.equal(end[k], enc[k]) for k in start if k.startswith("R."))  # then everything trains

"""Training losses. ``build_loss(cfg.loss)`` -> nn.Module; ``total, terms = loss_fn(pred, target)``.

``terms`` maps a term name (``l_pix``, ``l_percep``, ``l_edge``, ``l_freq``, ``l_lap``, ``l_gfl``) to a detached
scalar: each is the weighted contribution of that term to ``total``. Modules expose ``random_init`` (True
only when a perceptual VGG was explicitly randomly initialised, so the trainer can tag the run).

Config (group ``loss``): ``name`` plus the constructor's keyword arguments, see ``conf/loss/*.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from aio.losses.dsrir import DSRIRLoss
from aio.losses.gfl import BandedFrequencyLoss, GuidedFrequencyLoss
from aio.losses.mixed import MixedLoss
from aio.losses.perceptual import PerceptualLoss, PerceptualWeightsError
from aio.losses.pixel import CharbonnierLoss, EdgeLoss, FFTLoss, L1Loss
from aio.losses.segmentation import ABAIRLoss


def _perceptual(perceptual: Mapping | None = None, weight: float = 1.0) -> PerceptualLoss:
    return PerceptualLoss(weight=weight, **dict(perceptual or {}))


LOSSES = {
    "l1": L1Loss,
    "charbonnier": CharbonnierLoss,
    "fft": FFTLoss,
    "edge": EdgeLoss,
    "perceptual": _perceptual,
    "mixed": MixedLoss,
    "gfl": GuidedFrequencyLoss,
    "gfl_banded": BandedFrequencyLoss,
    "dsrir": DSRIRLoss,
    "abair": ABAIRLoss,
}

__all__ = ["build_loss", "LOSSES", "L1Loss", "CharbonnierLoss", "FFTLoss", "EdgeLoss", "PerceptualLoss",
           "MixedLoss", "GuidedFrequencyLoss", "BandedFrequencyLoss", "PerceptualWeightsError"]


def _to_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, str):
        return {"name": cfg}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def build_loss(cfg_loss: Any) -> nn.Module:
    """Build the loss named ``cfg_loss.name`` with the node's other keys as keyword arguments."""
    cfg = _to_dict(cfg_loss)
    name = cfg.pop("name", None)
    if name not in LOSSES:
        raise ValueError(f"unknown loss.name={name!r}; choose from {sorted(LOSSES)}")
    cfg.pop("_target_", None)
    try:
        return LOSSES[name](**cfg)
    except TypeError as exc:
        raise ValueError(f"loss {name!r}: bad parameter ({exc})") from None

"""ABAIR's training loss: restoration loss + weighted degradation-segmentation and estimator cross-entropies.

``total = restoration_weight * restoration(restored, target) + seg_weight * CE(seg_logits, deg_map)
+ est_weight * CE(est_logits, deg_prob)``. Targets come from the batch (:mod:`aio.data.abair`): ``deg_map``
``[B, C, H, W]`` per-pixel class probabilities (one-hot, or ``1/n`` per part of a whole-image composite, so a
composite pixel is a soft target rather than a forced single label) and ``deg_prob [B, K]``; batches without
them (plain synthetic or paired data) fall back to the one-hot of ``task``. A term whose weight is 0, or whose
logits the model did not return, is skipped. Terms: the restoration loss's own (``l_pix``, ...), ``l_seg``,
``l_est``, and ``est_acc`` / ``seg_acc`` (argmax accuracy, logged, not part of the total).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.output import ModelOutput


def _soft_targets(batch: Mapping[str, Any] | None, key: str, num_classes: int, like: torch.Tensor,
                  spatial: bool) -> torch.Tensor | None:
    if batch is None:
        return None
    t = batch.get(key)
    if t is not None:
        return t.to(like.device, torch.float32)
    task = batch.get("task")
    if task is None:
        return None
    onehot = F.one_hot(task.to(like.device).long().view(-1), num_classes).float()
    if spatial:
        return onehot[:, :, None, None].expand(-1, -1, *like.shape[-2:])
    return onehot


class ABAIRLoss(nn.Module):
    """See the module docstring; ``restoration`` is a ``loss`` node (default L1)."""

    uses_model_output = True

    def __init__(self, restoration: Mapping | None = None, restoration_weight: float = 1.0,
                 seg_weight: float = 0.1, est_weight: float = 1.0):
        super().__init__()
        from aio.losses import build_loss

        for key, v in (("restoration_weight", restoration_weight), ("seg_weight", seg_weight),
                       ("est_weight", est_weight)):
            if float(v) < 0:
                raise ValueError(f"loss.{key}={v} must be >= 0")
        self.restoration = build_loss(dict(restoration or {"name": "l1"}))
        self.restoration_weight = float(restoration_weight)
        self.seg_weight = float(seg_weight)
        self.est_weight = float(est_weight)

    def forward(self, output: ModelOutput, target: torch.Tensor, batch: Mapping[str, Any] | None = None):
        terms: dict[str, torch.Tensor] = {}
        total = output.restored.new_zeros(())
        if self.restoration_weight > 0:
            rest, rterms = self.restoration(output.restored, target)
            total = total + self.restoration_weight * rest
            terms.update({k: self.restoration_weight * v.detach() for k, v in rterms.items()})
        for short, logits_key, target_key, spatial, weight, fix in (
                ("seg", "seg_logits", "deg_map", True, self.seg_weight,
                 "model.seg_classes must be the dataset's tasks"),
                ("est", "est_logits", "deg_prob", False, self.est_weight,
                 "model.adapters must be the dataset's tasks in the estimator phase")):
            logits = output.extras.get(logits_key)
            if logits is None or weight <= 0:
                continue
            tgt = _soft_targets(batch, target_key, logits.shape[1], logits, spatial=spatial)
            if tgt is None:
                raise ValueError(f"loss.{short}_weight > 0 but the batch has no {target_key} or task labels")
            if tgt.shape != logits.shape:
                raise ValueError(f"{logits_key} {tuple(logits.shape)} vs {target_key} {tuple(tgt.shape)}: {fix}")
            ce = F.cross_entropy(logits, tgt)
            total = total + weight * ce
            terms[f"l_{short}"] = weight * ce.detach()
            terms[f"{short}_acc"] = (logits.argmax(1) == tgt.argmax(1)).float().mean().detach()
        return total, terms

"""Dynamic Feature Refinement Gate of the seed-000 reference (``DFRG`` in ``model_improved.py``).

Applied to the attention input before qkv: ``x * channel_gate * spatial_gate`` with
  channel gate = sigmoid(fc2(relu(fc1([avgpool(x), maxpool(x)]))))  (1x1 2C->C/r, 1x1 C/r->C, no biases),
  spatial gate = sigmoid(conv7x7([mean_c(x), max_c(x)]))  (no bias),
and an expert selector softmax(1x1 C/r->K (with bias)) of the squeezed vector. The reference computes the
expert weights and throws them away; so does aio by default (they change nothing in the output). The last
weights are kept on the module — detached unless a routing loss is asked for — for
:func:`mean_expert_weights` (logged as metrics) and :func:`routing_loss` (opt-in, ``aux_weight > 0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.blocks.lora import DENSE, LoRaPlan


class DFRG(nn.Module):
    """The reference DFRG (``reduction`` 4, ``experts`` 5 by default); its 1x1 convs are built by ``lora``
    (the reference's LoRa rules replace them too)."""

    def __init__(self, channels: int, reduction: int = 4, experts: int = 5, lora: LoRaPlan = DENSE,
                 keep_graph: bool = False):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"DFRG at {channels} channels with reduction={reduction} has no hidden channel")
        self.experts = experts
        self.keep_graph = keep_graph
        self.fc1 = lora.conv1x1("dfrg.fc1", channels * 2, hidden, bias=False)
        self.fc2 = lora.conv1x1("dfrg.fc2", hidden, channels, bias=False)
        self.expert_selector = nn.Sequential(lora.conv1x1("dfrg.expert_selector", hidden, experts, bias=True),
                                             nn.Softmax(dim=1))
        self.spatial_gate = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False), nn.Sigmoid())
        self.last_weights: torch.Tensor | None = None  # [B, experts] of the last forward

    def __getstate__(self):  # deepcopy/pickle (e.g. EMA copies) must not carry an autograd graph
        state = super().__getstate__()
        state["last_weights"] = None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)
        squeeze = F.relu(self.fc1(pooled))
        channel_gate = torch.sigmoid(self.fc2(squeeze))
        weights = self.expert_selector(squeeze).flatten(1)
        self.last_weights = weights if self.keep_graph else weights.detach()
        spatial = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * channel_gate * self.spatial_gate(spatial)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.last_weights for m in model.modules() if isinstance(m, DFRG) and m.last_weights is not None]


def mean_expert_weights(model: nn.Module) -> list[float]:
    """Mean expert weight per expert over the last batch and every DFRG of ``model`` ([] before a forward)."""
    weights = _weights(model)
    if not weights:
        return []
    return torch.stack([w.detach().float().mean(0) for w in weights]).mean(0).tolist()


def routing_loss(model: nn.Module, task: torch.Tensor) -> torch.Tensor | None:
    """Task-aware routing: mean over DFRGs of NLL(log weights, ``task % experts``); None without weights."""
    weights = [w for w in _weights(model) if w.requires_grad]
    if not weights:
        return None
    target = task.to(weights[0].device).long() % weights[0].shape[-1]
    return torch.stack([F.nll_loss(w.float().clamp_min(1e-8).log(), target) for w in weights]).mean()

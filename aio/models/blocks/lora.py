"""Low-rank (LoRa) 1x1 convolutions of the seed-000 reference and the rule deciding which conv gets which ratio.

Reference: 1601339895/Image-Restoration, ``experiment/20251208_cpMoCE_IR_Gatewise_LoRa/src/net/`` —
``BetterLoRaConv`` + ``apply_mixed_strategy_lora`` (``model.py``, the baseline) and ``SpatialAwareLoRaConv`` +
``apply_enhanced_lora_strategy`` (``model_improved.py``, the enhanced network). The reference builds dense
networks and then swaps 1x1 convs by substring matching on module paths; aio builds every 1x1 conv through
:meth:`LoRaPlan.conv1x1` with an explicit *role*, and :data:`BASELINE_ROLES` / :data:`ENHANCED_ROLES` state
the ratio each role ends up with in the reference. The networks come out identical (same keys, shapes, maths).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

#: Which ratio (``"ffn"``, ``"attn"``) or ``None`` (kept dense) each 1x1-conv role gets under the reference's
#: ``apply_mixed_strategy_lora`` (the baseline rule). Where the reference is surprising:
#:   - attention's ``project_out`` gets the **FFN** ratio (its rule tests ``'project' in name`` before ``'attn'``);
#:   - the DFRG's convs (``fc1``, ``fc2`` and the expert selector) get the attention ratio (they sit in ``attn``);
#:   - CSFF's convs get the attention ratio too: none of the rule's names matches them ("attention" does not
#:     contain "attn"), so they fall through to its default branch;
#:   - ``reduce_chan_level*`` and ``skip_conv`` stay dense (as do patch embed / up / down, which are 3x3).
BASELINE_ROLES: Mapping[str, str | None] = {
    "attn.qkv": "attn",
    "attn.project_out": "ffn",
    "ffn.project_in": "ffn",
    "ffn.project_out": "ffn",
    "dfrg.fc1": "attn",
    "dfrg.fc2": "attn",
    "dfrg.expert_selector": "attn",
    "csff.merge": "attn",
    "csff.attention": "attn",
    "reduce": None,
    "skip": None,
}

#: The same for ``apply_enhanced_lora_strategy``: as the baseline rule except that CSFF's convs stay dense.
#: Surprising: the rule has a DFRG branch with a fixed ratio 0.75, but it is never reached — every DFRG lives
#: inside an attention module, whose ``'attn'`` test comes first — so the DFRG convs get the attention ratio.
ENHANCED_ROLES: Mapping[str, str | None] = {**BASELINE_ROLES, "csff.merge": None, "csff.attention": None}


def reference_rank(c_in: int, c_out: int, ratio: float, min_rank: int) -> int:
    """``max(min_rank, int(min(c_in, c_out) * ratio))``: the reference's rank (``int`` truncates)."""
    return max(min_rank, int(min(c_in, c_out) * ratio))


class LoRaConv(nn.Module):
    """The reference's ``BetterLoRaConv``: 1x1 down to ``rank`` (no bias) -> depthwise 3x3 (no bias) -> GELU ->
    1x1 up to ``c_out`` (with the replaced conv's bias)."""

    def __init__(self, c_in: int, c_out: int, rank: int, bias: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, rank, 1, bias=False)
        self.dwconv = nn.Conv2d(rank, rank, 3, padding=1, groups=rank, bias=False)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(rank, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.dwconv(self.conv1(x))))


class SpatialLoRaConv(nn.Module):
    """The reference's ``SpatialAwareLoRaConv``: ``z = down(x)``; ``s = dw3x3 -> BatchNorm -> GELU -> dw3x3 (z)``;
    ``up(z + s * SE(s))`` with SE = GAP -> 1x1 r->r/4 -> ReLU -> 1x1 r/4->r -> sigmoid (with biases).

    The BatchNorm (buffers in the state dict) makes training need batch >= 2 where the input is 1x1 (the DFRG's
    pooled convs), exactly as in the reference.
    """

    def __init__(self, c_in: int, c_out: int, rank: int, bias: bool = False):
        super().__init__()
        self.conv_down = nn.Conv2d(c_in, rank, 1, bias=False)
        self.spatial_context = nn.Sequential(
            nn.Conv2d(rank, rank, 3, padding=1, groups=rank, bias=False),
            nn.BatchNorm2d(rank),
            nn.GELU(),
            nn.Conv2d(rank, rank, 3, padding=1, groups=rank, bias=False),
        )
        self.global_context = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(rank, rank // 4, 1),
            nn.ReLU(),
            nn.Conv2d(rank // 4, rank, 1),
            nn.Sigmoid(),
        )
        self.conv_up = nn.Conv2d(rank, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv_down(x)
        s = self.spatial_context(z)
        return self.conv_up(z + s * self.global_context(s))


@dataclass(frozen=True)
class LoRaPlan:
    """How a network builds its 1x1 convs: the FFN and attention ratios and the rule (``spatial`` False = the
    baseline's ``LoRaConv``, rank >= 2, :data:`BASELINE_ROLES`; True = ``SpatialLoRaConv``, rank >= 4,
    :data:`ENHANCED_ROLES`). A conv is factored only when its rank is below ``min(c_in, c_out)``, so ratio 1.0
    gives plain ``nn.Conv2d`` layers (the official Restormer layout)."""

    ffn_ratio: float = 1.0
    attn_ratio: float = 1.0
    spatial: bool = False

    def __post_init__(self):
        for key in ("ffn_ratio", "attn_ratio"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"model.{key}={value} must be in (0, 1]; 1.0 keeps the convs dense (lora_ratio=full)")

    @property
    def roles(self) -> Mapping[str, str | None]:
        return ENHANCED_ROLES if self.spatial else BASELINE_ROLES

    @property
    def min_rank(self) -> int:
        return 4 if self.spatial else 2

    def ratio(self, role: str) -> float | None:
        """The ratio of ``role`` (None: kept dense)."""
        if role not in self.roles:
            raise KeyError(f"unknown 1x1-conv role {role!r}; known: {', '.join(self.roles)}")
        which = self.roles[role]
        return None if which is None else (self.ffn_ratio if which == "ffn" else self.attn_ratio)

    def conv1x1(self, role: str, c_in: int, c_out: int, bias: bool = False) -> nn.Module:
        """The 1x1 conv ``c_in -> c_out`` playing ``role``: dense, or the rule's low-rank conv."""
        ratio = self.ratio(role)
        if ratio is not None:
            rank = reference_rank(c_in, c_out, ratio, self.min_rank)
            if rank < min(c_in, c_out):
                return (SpatialLoRaConv if self.spatial else LoRaConv)(c_in, c_out, rank, bias)
        return nn.Conv2d(c_in, c_out, 1, bias=bias)


#: Plain convs everywhere (the official layouts).
DENSE = LoRaPlan()

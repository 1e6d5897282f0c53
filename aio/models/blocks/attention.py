"""Restormer's multi-Dconv head transposed attention (MDTA), with the seed-000 reference's gate and DFRG
(``GatedMDTA`` in ``model.py``, ``EnhancedGatedMDTA`` in ``model_improved.py``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.blocks.dfrg import DFRG
from aio.models.blocks.gates import apply_gate, gate_channels, split_qkv_gate
from aio.models.blocks.lora import DENSE, LoRaPlan


class Attention(nn.Module):
    """MDTA: attention across channels (linear in H*W) per head, with learned temperatures.

    ``gate`` widens qkv by a gate slice and multiplies the attention output by its sigmoid (see
    :mod:`aio.models.blocks.gates`); ``dfrg`` (``{"reduction", "experts", "keep_graph"}``, or None) refines the
    input by a :class:`DFRG` before qkv; ``lora`` builds the 1x1 convs (``attn.qkv``, ``attn.project_out``).
    At ``gate="none"``, no DFRG and dense convs this is the official module.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool, gate: str = "none", lora: LoRaPlan = DENSE,
                 dfrg: Mapping | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads={num_heads}")
        self.num_heads = num_heads
        self.gate = gate
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        qkv = dim * 3 + gate_channels(gate, dim, num_heads)
        self.qkv = lora.conv1x1("attn.qkv", dim, qkv, bias)
        self.qkv_dwconv = nn.Conv2d(qkv, qkv, 3, padding=1, groups=qkv, bias=bias)
        self.project_out = lora.conv1x1("attn.project_out", dim, dim, bias)
        if dfrg is not None:
            self.dfrg = DFRG(dim, lora=lora, **dfrg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "dfrg"):
            x = self.dfrg(x)
        b, c, h, w = x.shape
        q, k, v, g = split_qkv_gate(self.gate, self.qkv_dwconv(self.qkv(x)), c, self.num_heads)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = apply_gate(self.gate, attn.to(v.dtype) @ v, g)
        return self.project_out(out.reshape(b, c, h, w))

"""Restormer's multi-Dconv head transposed attention (MDTA), with the seed-000 reference's gate and DFRG
(``GatedMDTA`` in ``model.py``, ``EnhancedGatedMDTA`` in ``model_improved.py``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
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
        heads, d = self.num_heads, c // self.num_heads
        qkv = self.qkv_dwconv(self.qkv(x))
        # channels_last (aio's CPU layout, see OverlapPatchEmbed): q, (gate,) k, v are strided views of the
        # [B, HW, qkv channels] buffer, no copies; the output comes back channels_last. A gated or ungated
        # NCHW input takes the official reshapes.
        fast = qkv.is_contiguous(memory_format=torch.channels_last) and not qkv.is_contiguous()
        if fast:
            t = qkv.permute(0, 2, 3, 1).view(b, h * w, qkv.shape[1])
            q, g, k, v = t.split([c, gate_channels(self.gate, c, heads), c, c], dim=-1)
            q, k, v = (u.view(b, h * w, heads, d).permute(0, 2, 3, 1) for u in (q, k, v))  # [B, heads, d, HW]
        else:
            q, k, v, g = split_qkv_gate(self.gate, qkv, c, heads)
            q, k, v = (t.reshape(b, heads, d, h * w) for t in (q, k, v))
        # normalize(q) @ normalize(k)^T (F.normalize's eps 1e-12) computed as (q @ k^T) * (1/|q|) * (1/|k|)^T:
        # the d x d product is scaled instead of the two d x HW operands (same value to ~1e-7, fewer full-size
        # passes). Two factors, not 1/(|q| |k|): all-zero q or k rows stay 0 with finite gradients.
        rq = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(1e-12).reciprocal()
        rk = torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-12).reciprocal()
        attn = ((q @ k.transpose(-2, -1)) * rq * rk.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        attn = attn.to(v.dtype)
        if fast:  # (attn @ v)^T = v^T attn^T lands in [B, heads, HW, d]: channels_last again
            out = v.transpose(-2, -1) @ attn.transpose(-2, -1)
            if self.gate != "none":  # the gate slice [B, HW, heads | C] as [B, heads, HW, 1 | d]
                out = out * torch.sigmoid(g.view(b, h * w, heads, -1).transpose(1, 2))
            return self.project_out(out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2))
        out = apply_gate(self.gate, attn @ v, g)
        return self.project_out(out.reshape(b, c, h, w))

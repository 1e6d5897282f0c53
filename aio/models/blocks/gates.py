"""Gated attention of the seed-000 reference (``GatedMDTA`` in ``model.py``): ``none | headwise | elementwise``.

The qkv projection is widened by a gate slice — ``heads`` channels (headwise) or ``dim`` channels
(elementwise) — that sits right after ``q``; the attention output is multiplied by ``sigmoid(gate)`` per head
(one value per head and pixel) or per element, before ``project_out``. ``none`` is the official MDTA.
(aio's earlier residual-branch gates, ``sigmoid(dwconv(x)) * f(x)`` and SE, were not the seed's method and
are gone.)
"""

from __future__ import annotations

import torch

GATES = ("none", "headwise", "elementwise")


def check_gate(kind: str) -> str:
    """``kind`` if it is a known gate, else a one-line ValueError."""
    if kind not in GATES:
        raise ValueError(f"gate={kind!r}; valid: {', '.join(GATES)}")
    return kind


def gate_channels(kind: str, dim: int, heads: int) -> int:
    """Extra qkv output channels of the gate: 0, ``heads`` or ``dim``."""
    return {"none": 0, "headwise": heads, "elementwise": dim}[check_gate(kind)]


def split_qkv_gate(kind: str, qkv: torch.Tensor, dim: int, heads: int):
    """``(q, k, v, gate)`` from the widened qkv tensor (``gate`` is None for ``none``)."""
    extra = gate_channels(kind, dim, heads)
    if extra == 0:
        q, k, v = qkv.chunk(3, dim=1)
        return q, k, v, None
    q, gate, k, v = qkv.split([dim, extra, dim, dim], dim=1)
    return q, k, v, gate


def apply_gate(kind: str, out: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    """``out * sigmoid(gate)`` with ``out`` ``[B, heads, C/heads, HW]`` and ``gate`` ``[B, heads | C, H, W]``."""
    if gate is None:
        return out
    b, heads, c, hw = out.shape
    shape = (b, heads, 1, hw) if kind == "headwise" else (b, heads, c, hw)
    return out * torch.sigmoid(gate.reshape(shape))

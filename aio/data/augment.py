"""Batch-level paired augmentations: CutBlur, Mixup and Blend (the ``augment`` group's ``strong`` preset).

Definitions as in Yoo et al., "Rethinking Data Augmentation for Image Super-resolution" (CVPR 2020) and their
public code (clovaai/cutblur ``augments.py``), for same-size pairs (``input`` = degraded, ``target`` = clean):

* **CutBlur** (``alpha`` = box side ratio): a box of side ``(alpha + 0.01 N(0,1))`` x H (resp. W) at a uniform
  position; with probability 1/2 the box of the *target* is pasted into the input, otherwise the input's box
  is pasted into (a copy of) the target, which becomes the new input. The target is unchanged.
* **Mixup** (``alpha``): ``v ~ Beta(alpha, alpha)``, a random permutation ``r`` of the batch;
  ``x = v x + (1 - v) x[r]`` and ``y = v y + (1 - v) y[r]``.
* **Blend** (``alpha``): one constant colour ``c ~ U(0, 1)^3`` per image and ``v ~ U(alpha, 1)`` per batch;
  ``x = v x + (1 - v) c`` and ``y = v y + (1 - v) c`` (the reference draws c in [0, 255] for 8-bit images).

As in the reference's mixture of augmentations, ``mode: one_of`` draws one operation per batch uniformly among
those with ``p > 0`` and applies it with its probability ``p``; ``mode: all`` applies each in turn with its
own probability. kornia has no paired (input/target) versions of these operations (its mixup/cutmix mix
class labels), so they are written here in a few lines of torch. All randomness comes from the
``torch.Generator`` the trainer passes (seeded by run seed, step, micro-batch and rank): a resumed run draws
the same augmentations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

OPERATIONS = ("cutblur", "mixup", "blend")
MODES = ("one_of", "all")


def _uniform(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def cutblur(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """CutBlur of a batch (see the module docstring); returns the new input and the unchanged target."""
    h, w = x.shape[-2:]
    ratio = float(torch.randn((), generator=g)) * 0.01 + alpha
    ch, cw = max(0, min(h, int(h * ratio))), max(0, min(w, int(w * ratio)))
    cy = int(torch.randint(0, h - ch + 1, (), generator=g))
    cx = int(torch.randint(0, w - cw + 1, (), generator=g))
    if _uniform(g) > 0.5:  # clean box inside the degraded image
        out = x.clone()
        out[..., cy:cy + ch, cx:cx + cw] = y[..., cy:cy + ch, cx:cx + cw]
    else:  # degraded box inside the clean image
        out = y.clone()
        out[..., cy:cy + ch, cx:cx + cw] = x[..., cy:cy + ch, cx:cx + cw]
    return out, y


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup of every pair with a permuted partner, one Beta(alpha, alpha) weight per batch."""
    v = _beta(alpha, g)
    r = torch.randperm(x.shape[0], generator=g).to(x.device)
    return v * x + (1 - v) * x[r], v * y + (1 - v) * y[r]


def _beta(alpha: float, g: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw seeded from the torch generator (numpy has the Beta sampler)."""
    import numpy as np

    seed = int(torch.randint(0, 2**62, (), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def blend(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend input and target with one constant colour per image, weight ``v ~ U(alpha, 1)``."""
    c = torch.rand((x.shape[0], x.shape[1], 1, 1), generator=g).to(device=x.device, dtype=x.dtype)
    v = _uniform(g, alpha, 1.0)
    return v * x + (1 - v) * c, v * y + (1 - v) * c


_OPS = {"cutblur": cutblur, "mixup": mixup, "blend": blend}


class BatchAugment:
    """Applies the configured operations to a training batch: ``x, y = aug(x, y, generator)``."""

    def __init__(self, spec: Mapping[str, Any]):
        self.name = str(spec.get("name", "custom"))
        self.mode = str(spec.get("mode", "one_of"))
        if self.mode not in MODES:
            raise ValueError(f"augment.mode={self.mode!r} is not one of {', '.join(MODES)}")
        unknown = sorted(set(spec) - set(OPERATIONS) - {"name", "mode"})
        if unknown:
            raise ValueError(f"augment: unknown key(s) {unknown}; operations: {', '.join(OPERATIONS)}")
        self.ops: list[tuple[str, float, float]] = []
        for op in OPERATIONS:
            node = spec.get(op) or {}
            p, alpha = float(node.get("p", 0.0)), float(node.get("alpha", 0.0))
            if not 0 <= p <= 1:
                raise ValueError(f"augment.{op}.p={p} must be in [0, 1]")
            if p > 0 and alpha <= 0:
                raise ValueError(f"augment.{op}.alpha={alpha} must be > 0 when augment.{op}.p > 0")
            if p > 0:
                self.ops.append((op, p, alpha))

    @staticmethod
    def generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
        from aio.data.transforms import generator_for

        return generator_for("batch-augment", seed, step, micro, rank)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.ops
        if self.mode == "one_of":
            chosen = [self.ops[int(torch.randint(len(self.ops), (), generator=g))]]
        for op, p, alpha in chosen:
            if _uniform(g) < p:
                x, y = _OPS[op](x, y, alpha, g)
        return x, y


def build_batch_augment(spec: Mapping[str, Any] | None) -> BatchAugment | None:
    """The batch augmentation of an augment node, or None when it has no operation with ``p > 0``."""
    if not spec:
        return None
    aug = BatchAugment(spec)
    return aug if aug.ops else None

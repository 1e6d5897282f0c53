"""Batch augmentations of the `augment` group: CutBlur, Mixup and Blend as Yoo et al. define them."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from aio.data.augment import BatchAugment, _beta, blend, build_batch_augment, cutblur, mixup
from aio.paths import CONF_DIR


def _pair():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(4, 3, 20, 20, generator=g)
    return (y + 0.2 * torch.rand(4, 3, 20, 20, generator=g)).clamp(0, 1), y


def _g(seed=1):
    return torch.Generator().manual_seed(seed)


def test_cutblur_pastes_one_box_between_input_and_target():
    x, y = _pair()
    for seed in range(6):
        out, target = cutblur(x, y, alpha=0.5, g=_g(seed))
        assert torch.equal(target, y)
        from_x, from_y = (out == x).all(1), (out == y).all(1)  # [B, H, W] where the pixel came from
        assert (from_x | from_y).all()
        box = from_y[0] if from_x[0].float().mean() > 0.5 else from_x[0]  # the pasted box is the minority
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert box.sum() == h * w and 8 <= h <= 11 and 8 <= w <= 11  # ~0.5 x 20


def test_mixup_blends_pairs_with_one_partner_permutation():
    x, y = _pair()
    mx, my = mixup(x, y, alpha=1.2, g=_g())
    g = _g()  # the same draws: one Beta(1.2, 1.2) weight, then one permutation, shared by input and target
    v, r = _beta(1.2, g), torch.randperm(4, generator=g)
    assert 0 < v < 1 and not torch.equal(r, torch.arange(4))
    assert torch.allclose(mx, v * x + (1 - v) * x[r]) and torch.allclose(my, v * y + (1 - v) * y[r])
    again = mixup(x, y, alpha=1.2, g=_g())
    assert torch.equal(again[0], mx) and torch.equal(again[1], my)  # reproducible from the generator


def test_blend_uses_one_constant_colour_for_input_and_target():
    x, y = _pair()
    bx, by = blend(x, y, alpha=0.6, g=_g())
    diff = (bx - by) / (x - y).where((x - y).abs() > 1e-3, torch.ones_like(x))
    v = diff[(x - y).abs() > 1e-3]
    assert torch.allclose(v, v[0].expand_as(v), atol=1e-4) and 0.6 <= float(v[0]) <= 1.0


def test_presets_and_probabilities():
    basic = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "augment" / "basic.yaml"))
    strong = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "augment" / "strong.yaml"))
    assert build_batch_augment(basic) is None  # flips/rot90 only (inside the datasets)
    aug = build_batch_augment(strong)
    assert [op for op, _, _ in aug.ops] == ["cutblur", "mixup", "blend"]
    x, y = _pair()
    ax, ay = aug(x, y, BatchAugment.generator(0, 5, 0, 0))
    bx, by = aug(x, y, BatchAugment.generator(0, 5, 0, 0))
    assert torch.equal(ax, bx) and torch.equal(ay, by)
    off = build_batch_augment({**strong, "mixup": {"p": 0.0, "alpha": 1.2}, "blend": {"p": 0.0, "alpha": 0.6},
                               "cutblur": {"p": 0.0, "alpha": 0.7}})
    assert off is None
    with pytest.raises(ValueError, match="augment.mixup.p=2.0"):
        BatchAugment({**strong, "mixup": {"p": 2.0, "alpha": 1.2}})

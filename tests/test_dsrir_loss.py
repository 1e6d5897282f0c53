"""loss=dsrir: each term against a direct computation of the reference formulas, the term bookkeeping, the
multi-output contract, clear errors, and a tiny training run through the trainer (finite, decreasing)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf

from aio.losses import PerceptualWeightsError, build_loss
from aio.losses.contract import compute_loss
from aio.models import create_model
from aio.paths import CONF_DIR
from aio.train.trainer import Trainer
from conftest import compose_train


def _loss(**over):
    cfg = OmegaConf.load(CONF_DIR / "loss" / "dsrir.yaml")
    cfg.perceptual.weights = "random"
    cfg.merge_with(over)
    return build_loss(cfg)


@pytest.fixture(scope="module")
def outputs():
    torch.manual_seed(0)
    model = create_model("dsrir", sn1_feats=8, sn2_feats=8, sn3_feats=8, feats_step1=8, feats_step2=8,
                         reduction=4, sn1_blocks=(1, 1, 1), sn2_blocks=(1, 1), sn3_groups=1)
    x = torch.rand(2, 3, 32, 32)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    return model(x), x, y


def _direct(loss, out, x, y):
    """The reference's train.py / losses/loss.py formulas, written out one image list at a time."""
    imgs = [out.restored, out.extras["restored2"], out.extras["restored1"]]
    vars_ = [out.extras["var3"], out.extras["var2"], out.extras["var1"]]
    ul = sum((i * torch.exp(-v) - y * torch.exp(-v)).abs().mean() + 2 * v.mean()
             for i, v in zip(imgs, vars_)) / 3
    psnr = [10 / math.log(10) * torch.log(((i - y) ** 2).mean(dim=(1, 2, 3)) + 1e-8).mean() for i in imgs]
    lp = psnr[0] + 0.5 * (psnr[1] + psnr[2]) / 2
    vgg = loss.contrast.vgg
    cuts = [1, 6, 11, 20, 29]  # relu1_1 .. relu5_1

    def feats(t):
        out_, h = [], t
        for k, layer in enumerate(vgg):
            h = layer(h)
            if k in cuts:
                out_.append(h)
        return out_

    fa, ft, f2, f1, fn = feats(imgs[0]), feats(y), feats(imgs[1]), feats(imgs[2]), feats(x)
    pc = 0
    for k, w in enumerate([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]):
        d = lambda p, q: (p - q).abs().mean()  # noqa: E731
        pos = d(fa[k], ft[k]) + 0.25 * d(fa[k], f2[k]) + 0.125 * d(fa[k], f1[k])
        pc = pc + w * pos / (d(fa[k], fn[k]) + 1e-7)
    return ul, lp, pc


def test_terms_match_a_direct_computation(outputs):
    out, x, y = outputs
    loss = _loss()
    total, terms = compute_loss(loss, out, y, {"input": x})
    ul, lp, pc = _direct(loss, out, x, y)
    assert set(terms) == {"l_uncert", "l_psnr", "l_contrast"}
    assert terms["l_uncert"].item() == pytest.approx(ul.item(), rel=1e-5)
    assert terms["l_psnr"].item() == pytest.approx(lp.item(), rel=1e-5)
    assert terms["l_contrast"].item() == pytest.approx(0.2 * pc.item(), rel=1e-5)
    assert total.item() == pytest.approx((ul + lp + 0.2 * pc).item(), rel=1e-5)
    assert all(not v.requires_grad for v in terms.values()) and loss.random_init


def test_psnr_loss_is_minus_the_psnr_and_gradients_reach_every_stage(outputs):
    from aio.losses.dsrir import psnr_loss

    y = torch.zeros(1, 3, 8, 8)
    assert psnr_loss(y + 0.1, y).item() == pytest.approx(-20.0, abs=1e-4)  # MSE 0.01 -> 20 dB
    out, x, y = outputs
    stages = {k: v.detach().requires_grad_(True) for k, v in [("restored", out.restored), *out.extras.items()]}
    out2 = type(out)(stages.pop("restored"), stages)
    total, _ = compute_loss(_loss(), out2, y, {"input": x})
    total.backward()
    assert out2.restored.grad.abs().sum() > 0
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in stages.values())


def test_clear_errors():
    with pytest.raises(ValueError, match="needs the stage outputs of backbone=dsrir"):
        compute_loss(_loss(), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), {"input": torch.rand(1, 3, 8, 8)})
    cfg = OmegaConf.load(CONF_DIR / "loss" / "dsrir.yaml")
    cfg.perceptual.weights = "/nonexistent/vgg19.pth"
    with pytest.raises(PerceptualWeightsError, match="loss.perceptual.weights"):
        build_loss(cfg)
    assert _loss(contrast_weight=0.0).contrast is None  # no VGG needed without the contrastive term


@pytest.mark.slow  # ~10 CPU-s of VGG19 features, more on a loaded 2-core box
def test_trains_at_tiny_scale_finite_and_decreasing(tmp_path):
    cfg = compose_train(["backbone=dsrir", "loss=dsrir", "debug=tiny", "logger=none", "paths.vgg19_weights=random",
                         "trainer.device=cpu", "trainer.max_steps=40", "trainer.lr=2e-3", "dataset.patch_size=24",
                         "dataset.images=[chelsea]", "dataset.val.crops_per_task=1"])
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.loss_fn.random_init
    batch = next(iter(trainer.loader))
    same = itertools.repeat(batch)
    first = trainer._train_step(same)
    for _ in range(7):
        last = trainer._train_step(same)
    assert all(math.isfinite(v) for v in last.values())
    assert {"l_uncert", "l_psnr", "l_contrast", "loss"} <= set(last)
    assert last["loss"] < first["loss"] - 1.0, (first, last)  # the loss is ~ -PSNR: 1 dB better at least

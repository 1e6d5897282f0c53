"""PSNR/SSIM agree with scikit-image in both protocols on the bundled photos; METRICS registry."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from aio.metrics import METRICS, get_metric, psnr, ssim

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
SK = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def _y(a: np.ndarray) -> np.ndarray:
    """BasicSR rgb2ycbcr(y_only=True) on 8-bit values, in [16, 235] float."""
    return 16.0 + a.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0


def _pair(name: str, seed: int):
    clean = getattr(skimage.data, name)()[:, :, :3]
    rng = np.random.default_rng(seed)
    h, w = clean.shape[:2]
    clean = clean[: min(h, 257), : min(w, 301)]  # odd sizes, fast
    # a float "restored" output: noise + a brightness shift, not on the 8-bit grid
    pred = np.clip(clean / 255.0 + rng.normal(0, 0.04, clean.shape) + 0.01, 0, 1)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).unsqueeze(0)  # noqa: E731
    return clean, pred, t(pred).float(), t(clean / 255.0).float()


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_protocol_matches_skimage(name):
    clean, pred, tp, tc = _pair(name, 0)
    pred_u8 = np.round(pred.astype(np.float32).astype(np.float64) * 255).astype(np.uint8)
    ref_p = sk_psnr(clean, pred_u8, data_range=255)
    ref_s = sk_ssim(clean, pred_u8, channel_axis=-1, **SK)
    assert abs(psnr(tp, tc).item() - ref_p) < 1e-4
    assert abs(ssim(tp, tc).item() - ref_s) < 1e-5


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("crop_border", [0, 4])
def test_y_protocol_matches_skimage(name, crop_border):
    clean, pred, tp, tc = _pair(name, 1)
    pred_u8 = np.round(pred.astype(np.float32).astype(np.float64) * 255).astype(np.uint8)
    yc, yp = _y(clean), _y(pred_u8)
    if crop_border:
        c = crop_border
        yc, yp = yc[c:-c, c:-c], yp[c:-c, c:-c]
    ref_p = sk_psnr(yc, yp, data_range=255)
    ref_s = sk_ssim(yc, yp, **SK)
    kw = dict(crop_border=crop_border, test_y_channel=True)
    assert abs(psnr(tp, tc, **kw).item() - ref_p) < 1e-4
    assert abs(ssim(tp, tc, **kw).item() - ref_s) < 1e-5


def test_unquantized_and_rgb_crop():
    clean, pred, tp, tc = _pair("chelsea", 2)
    tp64 = tp.double()
    p = tp64[0].permute(1, 2, 0).numpy() * 255
    c = clean.astype(np.float64)
    assert abs(psnr(tp64, tc.double(), quantize=False).item() - sk_psnr(c, p, data_range=255)) < 1e-4
    assert abs(ssim(tp64, tc.double(), quantize=False).item() - sk_ssim(c, p, channel_axis=-1, **SK)) < 1e-5
    pu = np.round(p).astype(np.uint8)
    assert abs(ssim(tp, tc, crop_border=3).item() - sk_ssim(clean[3:-3, 3:-3], pu[3:-3, 3:-3], channel_axis=-1, **SK)) < 1e-5


def test_batch_shape_and_identity():
    x = torch.rand(3, 3, 32, 40)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert psnr(y, x).shape == (3,) and ssim(y, x).shape == (3,)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    # per-image values equal the single-image calls
    assert psnr(y[1:2], x[1:2]).item() == pytest.approx(psnr(y, x)[1].item())
    with pytest.raises(ValueError):
        psnr(x, x[:, :, :10])


def test_registry_directions_and_extras():
    assert METRICS["psnr"].higher_is_better and METRICS["ssim"].higher_is_better
    assert not METRICS["gmsd"].higher_is_better and not METRICS["lpips"].higher_is_better
    x = torch.rand(2, 3, 64, 64)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    for name in ("fsim", "vif", "gmsd", "haarpsi"):
        v = METRICS[name](y, x)
        assert v.shape == (2,) and torch.isfinite(v).all()
        same = METRICS[name](x, x)
        assert (same >= v).all() if METRICS[name].higher_is_better else (same <= v).all()
    big = torch.rand(1, 3, 176, 176)
    assert METRICS["ms_ssim"](big, big).item() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="unknown metric"):
        get_metric("nope")


def test_lpips_dists_need_local_weights(tmp_path):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"eval\.lpips_weights"):
        METRICS["lpips"](x, x)
    with pytest.raises(ValueError, match=r"eval\.dists_weights"):
        METRICS["dists"](x, x)
    with pytest.raises(ValueError, match=r"eval\.lpips_weights.*not found"):
        METRICS["lpips"](x, x, weights=str(tmp_path / "nope.pt"), vgg16_weights=str(tmp_path / "v.pt"))

"""Extra full-reference metrics from piq (MS-SSIM, FSIM, VIF, GMSD, HaarPSI) and, only from local weight
files, LPIPS and DISTS (piq's implementations; nothing is downloaded).

The piq metrics are computed on RGB in [0, 1] (after the same clamp / 8-bit quantisation and
``crop_border`` as PSNR/SSIM; ``test_y_channel`` does not apply to them). Each returns ``Tensor[B]``.
"""

from __future__ import annotations

import functools
import os

import torch


def _prep(img: torch.Tensor, crop_border: int, quantize: bool) -> torch.Tensor:
    if img.ndim == 3:
        img = img.unsqueeze(0)
    x = img.detach().float().clamp(0, 1)
    if quantize:
        x = torch.round(x * 255.0) / 255.0
    if crop_border:
        c = int(crop_border)
        x = x[..., c:-c, c:-c]
    return x


def _piq(fn_name: str, **fixed):
    def metric(pred, target, *, crop_border=0, test_y_channel=False, quantize=True, **_):
        import piq

        x, y = _prep(pred, crop_border, quantize), _prep(target, crop_border, quantize)
        try:
            return getattr(piq, fn_name)(x, y, data_range=1.0, reduction="none", **fixed).double()
        except AssertionError as exc:
            raise ValueError(f"metric {fn_name}: {str(exc).splitlines()[0] if str(exc) else 'bad input'}") from None

    metric.__name__ = fn_name
    return metric


def _load_vgg16_features(path: str, key: str):
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd)
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        net.features.load_state_dict(feats)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{key}={path!r}: not a torchvision VGG16 state dict ({type(exc).__name__})") from None
    feats = net.features.eval()
    for p in feats.parameters():
        p.requires_grad_(False)
    return feats


def _need(path, key: str, what: str) -> str:
    if not path:
        raise ValueError(f"{what} needs local weights: set {key}=<file> (nothing is downloaded)")
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise ValueError(f"{key}={path!r}: file not found")
    return path


@functools.lru_cache(maxsize=4)
def _lpips_module(weights: str, vgg16_weights: str):
    import piq
    from piq.perceptual import VGG16_LAYERS, ContentLoss

    try:
        lin = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"eval.lpips_weights={weights!r}: unreadable ({type(exc).__name__})") from None
    feats = _load_vgg16_features(vgg16_weights, "eval.vgg16_weights")
    layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    m = piq.LPIPS.__new__(piq.LPIPS)
    ContentLoss.__init__(m, feature_extractor=feats, layers=[VGG16_LAYERS[k] for k in layers], weights=lin,
                         distance="mse", reduction="none", normalize_features=True)
    return m.eval()


@functools.lru_cache(maxsize=4)
def _dists_module(weights: str, vgg16_weights: str):
    import piq
    from piq.perceptual import VGG16_LAYERS, ContentLoss

    try:
        w = torch.load(weights, map_location="cpu", weights_only=True)
        channels = [3, 64, 128, 256, 512, 512]
        dw = list(torch.split(w["alpha"], channels, dim=1)) + list(torch.split(w["beta"], channels, dim=1))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"eval.dists_weights={weights!r}: not piq's DISTS weights ({type(exc).__name__})") from None
    feats = _load_vgg16_features(vgg16_weights, "eval.vgg16_weights")
    layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    m = piq.DISTS.__new__(piq.DISTS)
    ContentLoss.__init__(m, feature_extractor=feats, layers=[VGG16_LAYERS[k] for k in layers], weights=dw,
                         replace_pooling=True, reduction="none", normalize_features=False,
                         allow_layers_weights_mismatch=True)
    return m.eval()


def lpips(pred, target, *, crop_border=0, test_y_channel=False, quantize=True, weights=None,
          vgg16_weights=None, **_):
    """LPIPS (VGG16) from ``weights`` (piq's lpips_weights.pt) and ``vgg16_weights`` (torchvision VGG16)."""
    m = _lpips_module(_need(weights, "eval.lpips_weights", "LPIPS"),
                      _need(vgg16_weights, "eval.vgg16_weights", "LPIPS"))
    x, y = _prep(pred, crop_border, quantize), _prep(target, crop_border, quantize)
    with torch.no_grad():
        return m.to(x.device)(x, y).double()


def dists(pred, target, *, crop_border=0, test_y_channel=False, quantize=True, weights=None,
          vgg16_weights=None, **_):
    """DISTS from ``weights`` (piq's dists_weights.pt) and ``vgg16_weights`` (torchvision VGG16)."""
    m = _dists_module(_need(weights, "eval.dists_weights", "DISTS"),
                      _need(vgg16_weights, "eval.vgg16_weights", "DISTS"))
    x, y = _prep(pred, crop_border, quantize), _prep(target, crop_border, quantize)
    with torch.no_grad():
        return m.to(x.device)(x, y).double()


ms_ssim = _piq("multi_scale_ssim")
fsim = _piq("fsim")
vif = _piq("vif_p")
gmsd = _piq("gmsd")
haarpsi = _piq("haarpsi")

"""The building blocks of DSRIR (Wang et al., IPM 2025): patch attention (PA / PAB / PAG), the pixel-wise
refine unit (PRU), the uncertainty-supervised attention unit (USAU) and the bilinear down/up-samplers.

Module and parameter names follow the reference code (xfwang23/DSRIR ``model/DSRIR.py``) so that its
checkpoints load strictly; the network that assembles them is :mod:`aio.models.dsrir`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(c_in: int, c_out: int, kernel: int, bias: bool = False) -> nn.Conv2d:
    """A stride-1 convolution with 'same' zero padding."""
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)


def squeeze_excite(channels: int, reduction: int, kernel: int = 1) -> nn.Sequential:
    """conv(C -> C/r) -> ReLU -> conv(C/r -> C) -> sigmoid (both convs with bias): an attention map."""
    hidden = channels // reduction
    return nn.Sequential(conv(channels, hidden, kernel, bias=True), nn.ReLU(inplace=True),
                         conv(hidden, channels, kernel, bias=True), nn.Sigmoid())


class PatchAttention(nn.Module):
    """Channel attention computed per patch: the map is cut into a ``grid = (gh, gw)`` of patches, each
    patch is average-pooled and squeezed/excited, and every pixel of a patch is scaled by its patch's
    channel weights. ``grid = (1, 1)`` is ordinary channel attention. H and W must be multiples of the grid
    (the network pads its input so that they are)."""

    def __init__(self, channels: int, reduction: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = tuple(int(g) for g in grid)
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.conv_du = squeeze_excite(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        gh, gw = self.grid
        if h % gh or w % gw:
            raise ValueError(f"PatchAttention: feature map {h}x{w} is not a multiple of the {gh}x{gw} patch grid")
        b, c = x.shape[:2]
        weights = self.conv_du(self.pool(x))  # [B, C, gh, gw]
        # broadcast each patch's weights over its pixels through a [B, C, gh, h/gh, gw, w/gw] view: no
        # upsampled copy of the weights (repeat_interleave made two, and its backward is a slow scatter-add)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # channels_last (DSRIR's CPU layout): the same products through a [B, gh, h/gh, gw, w/gw, C] view
            patches = x.permute(0, 2, 3, 1).view(b, gh, h // gh, gw, w // gw, c)
            scaled = patches * weights.permute(0, 2, 3, 1).reshape(b, gh, 1, gw, 1, c)
            return scaled.view(b, h, w, c).permute(0, 3, 1, 2)
        patches = x.reshape(b, c, gh, h // gh, gw, w // gw)
        return (patches * weights.reshape(b, c, gh, 1, gw, 1)).reshape(b, c, h, w)


class PAB(nn.Module):
    """Patch attention block: x + PA(conv(ReLU(conv(x))))."""

    def __init__(self, channels: int, kernel: int, reduction: int, bias: bool, grid: tuple[int, int]):
        super().__init__()
        self.conv1 = conv(channels, channels, kernel, bias)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = conv(channels, channels, kernel, bias)
        self.PA = PatchAttention(channels, reduction, grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.PA(self.conv2(self.act(self.conv1(x))))


def pab_stage(channels: int, depth: int, kernel: int, reduction: int, bias: bool,
              grid: tuple[int, int]) -> nn.Sequential:
    """``depth`` PABs of the same width and patch grid."""
    return nn.Sequential(*[PAB(channels, kernel, reduction, bias, grid) for _ in range(depth)])


class PAG(nn.Module):
    """Patch attention group: one PAB per patch grid (coarse to fine), a conv, and a residual."""

    def __init__(self, channels: int, kernel: int, reduction: int, bias: bool, grids):
        super().__init__()
        self.body = nn.Sequential(*[PAB(channels, kernel, reduction, bias, g) for g in grids],
                                  conv(channels, channels, kernel, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PRU(nn.Module):
    """Pixel-wise refine unit: y = conv(x); x + y * sigmoid-attention(y), the attention from two 3x3 convs."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.conv = conv(channels, channels, 3)
        self.fr = squeeze_excite(channels, reduction, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y * self.fr(y)


class USAU(nn.Module):
    """Uncertainty-supervised attention unit: fuses a subnet's features with the degraded image, predicts
    the stage's restored image (a residual on the input) and a per-pixel variance map (the last op is a
    LeakyReLU(0.1), so the 'variance' may be slightly negative, as in the reference), and gates the
    features for the next stage by an attention map derived from the variance features.

    ``forward(x, img, last)`` returns ``(features or None when last, restored, variance)``. In the last
    stage ``conv2`` and ``att_map`` exist (in the reference state dict) but are unused.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int, kernel: int, bias: bool):
        super().__init__()
        self.conv_in = conv(in_channels, channels, kernel, bias)
        self.conv_out = conv(channels, out_channels, kernel, bias)
        self.conv1 = conv(channels, channels, 1, bias)
        self.conv2 = conv(channels, channels, 1, bias)
        self.var_est = nn.Sequential(conv(channels, channels, 3, bias=True), nn.LeakyReLU(0.1, inplace=True))
        self.var_map = nn.Sequential(conv(channels, out_channels, 3, bias=True), nn.LeakyReLU(0.1, inplace=True))
        self.att_map = nn.Sequential(conv(channels, channels, 1, bias=True), nn.Sigmoid())

    def forward(self, x: torch.Tensor, img: torch.Tensor, last: bool = False):
        fused = self.conv1(x) + self.conv_in(img)
        restored = img + self.conv_out(fused)
        var_feat = self.var_est(fused)
        variance = self.var_map(var_feat)
        features = None if last else x + self.att_map(var_feat) * self.conv2(x)
        return features, restored, variance


class _Resample(nn.Module):
    """Bilinear resize by ``scale`` (align_corners=False), held as module ``0`` of ``Sequential`` so that
    the 1x1 conv after it is named ``1`` as in the reference."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


class DownSample(nn.Module):
    """Half resolution (bilinear), then a bias-free 1x1 conv from C to C + step channels."""

    def __init__(self, channels: int, step: int):
        super().__init__()
        self.down = nn.Sequential(_Resample(0.5), conv(channels, channels + step, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """Double resolution (bilinear), then a bias-free 1x1 conv from C + step to C channels."""

    def __init__(self, channels: int, step: int):
        super().__init__()
        self.up = nn.Sequential(_Resample(2.0), conv(channels + step, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)

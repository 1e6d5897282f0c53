"""NAFNet (Chen et al., ECCV 2022): a nonlinear-activation-free U-Net of NAFBlocks.

Parameter names and shapes match the official implementation (``intro``, ``encoders``, ``downs``,
``middle_blks``, ``ups``, ``decoders``, ``ending``). Inputs are reflect-padded to a multiple of
``2 ** len(enc_blk_nums)`` inside the model (the official code zero-pads) and cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aio.models.base import RestorationModel, crop_to, pad_to_multiple
from aio.models.blocks.norm import LayerNorm2d
from aio.models.registry import register_model


class SimpleGate(nn.Module):
    """Split channels in two halves and multiply them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet block: LN -> 1x1 -> dw3x3 -> SimpleGate -> simplified channel attention -> 1x1 (scaled by
    ``beta``), then LN -> 1x1 -> SimpleGate -> 1x1 (scaled by ``gamma``)."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0):
        super().__init__()
        dw = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw, 1, bias=True)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw, bias=True)
        self.conv3 = nn.Conv2d(dw // 2, c, 1, bias=True)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1, bias=True))
        self.sg = SimpleGate()
        ffn = ffn_expand * c
        self.conv4 = nn.Conv2d(c, ffn, 1, bias=True)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1, bias=True)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.dropout1(self.conv3(x * self.sca(x)))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(x) * self.gamma


@register_model("nafnet")
class NAFNet(RestorationModel):
    """NAFNet U-Net; defaults are the SIDD width-32 model (29.16 M parameters)."""

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        middle_blk_num: int = 12,
        enc_blk_nums: Sequence[int] = (2, 2, 4, 8),
        dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
        dw_expand: int = 2,
        ffn_expand: int = 2,
        drop_out_rate: float = 0.0,
    ):
        super().__init__()
        blk = dict(dw_expand=dw_expand, ffn_expand=ffn_expand, drop_out_rate=drop_out_rate)
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1, bias=True)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1, bias=True)
        self.encoders, self.decoders = nn.ModuleList(), nn.ModuleList()
        self.ups, self.downs = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan, **blk) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(chan, **blk) for _ in range(middle_blk_num)])
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan, **blk) for _ in range(num)]))
        self.pad_multiple = 2 ** len(self.encoders)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        inp, size = pad_to_multiple(x, self.pad_multiple)
        h = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            h = encoder(h)
            skips.append(h)
            h = down(h)
        h = self.middle_blks(h)
        for decoder, up, skip in zip(self.decoders, self.ups, skips[::-1]):
            h = decoder(up(h) + skip)
        return crop_to(self.ending(h) + inp, size)

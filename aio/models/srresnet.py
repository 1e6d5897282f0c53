"""SRResNet in MiOIR's layout (Kong et al. 2024; BasicSR's ``MSRResNet`` without BN and without upsampling).

MiOIR trains it with ``upscale: 1``: every task, super-resolution included, restores an input of the
output's size (the SR input is bicubic x4 down + up), so there is no upsampler and the output is
``conv_last(lrelu(conv_hr(body(lrelu(conv_first(x)))))) + x``. Parameter names and shapes are the
reference's ``SRResNet`` (``conv_first``, ``body.<i>.conv{1,2}``, ``conv_hr``, ``conv_last``).
"""

from __future__ import annotations

import torch
from torch import nn

from aio.models.base import RestorationModel, cpu_channels_last
from aio.models.registry import register_model


@torch.no_grad()
def scaled_kaiming_init(modules: list[nn.Module], scale: float = 0.1) -> None:
    """BasicSR's ``default_init_weights``: Kaiming-normal convs scaled by ``scale``, zero biases (small
    residual branches make deep residual stacks train stably)."""
    for m in modules:
        for sub in m.modules():
            if isinstance(sub, nn.Conv2d):
                nn.init.kaiming_normal_(sub.weight)
                sub.weight.mul_(scale)
                if sub.bias is not None:
                    sub.bias.zero_()


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))`` with 3x3 convs, no batch norm (EDSR / BasicSR style)."""

    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        scaled_kaiming_init([self.conv1, self.conv2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def check_upscale(upscale: int) -> None:
    if int(upscale) != 1:
        raise ValueError(f"model.upscale={upscale}: MiOIR's SRResNet restores at the input size (its SR input is "
                         "bicubic-upsampled); use model.upscale=1")


@register_model("srresnet")
class SRResNet(RestorationModel):
    """MiOIR's SRResNet: ``num_block`` residual blocks of ``num_feat`` channels, global residual, no upsampler
    (``upscale`` must be 1; the reference's default of 4 does not run)."""

    pad_multiple = 1  # stride-1 convs only: any size

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 upscale: int = 1):
        super().__init__()
        check_upscale(upscale)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        scaled_kaiming_init([self.conv_first, self.conv_hr, self.conv_last])

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        x = cpu_channels_last(x)
        feat = self.body(self.lrelu(self.conv_first(x)))
        return self.conv_last(self.lrelu(self.conv_hr(feat))) + x

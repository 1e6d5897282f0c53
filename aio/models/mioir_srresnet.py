"""MiOIR's prompted SRResNet (``SRResNet_EP`` / ``SRResNet_AP`` of Xiangtaokong/MiOIR).

One prompt extractor ``F_ext_net`` pools the prompt image to a 64-d vector; after every residual block
``body<k>`` (k = 1..num_block), after ``lrelu(conv_hr)`` and after ``conv_last`` the features are modulated
by ``prompt_scale<k>`` / ``prompt_shift<k>`` (``hr``, ``out``) as ``f * scale + shift + f``; the output adds
the input (the reference's ``bilinear`` resize by ``upscale``, an identity at ``upscale: 1``, the only value
its forward runs with). At ``num_block=16`` (the reference's fixed count) names and shapes are the
reference's, so its checkpoints load strictly. Unlike the plain SRResNet the reference initialises only the
residual blocks with scaled Kaiming weights; so does this class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aio.models.base import RestorationModel, cpu_channels_last
from aio.models.prompts import (PromptExtractor, TaskPromptMaps, add_prompt_linears, check_prompt_kind,
                                modulate_at, prompt_input)
from aio.models.registry import register_model
from aio.models.srresnet import ResidualBlockNoBN, check_upscale


class PromptedSRResNet(RestorationModel):
    """SRResNet with MiOIR's prompt modulation after each block; ``prompt`` is ``explicit`` (task label ->
    fixed map, see :class:`~aio.models.prompts.TaskPromptMaps`) or ``adaptive`` (the input image)."""

    pad_multiple = 1
    prompt_backbone = "srresnet"
    prompt_kind = "explicit"

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, prompt_nf: int = 64,
                 num_block: int = 16, upscale: int = 1, prompt_tasks: Sequence[str] | None = None,
                 prompt_maps: str | None = None):
        super().__init__()
        check_upscale(upscale)
        self.prompt = check_prompt_kind(self.prompt_kind)
        explicit = self.prompt == "explicit"
        self.num_block = num_block
        # the reference hard-codes nf=64 for F_ext; prompt_nf (default 64) must equal it to run
        self.F_ext_net = PromptExtractor(in_nc=1 if explicit else num_in_ch, nf=prompt_nf)
        outputs = [(str(k), num_feat) for k in range(1, num_block + 1)] + [("hr", num_feat), ("out", num_out_ch)]
        add_prompt_linears(self, "scale", outputs, prompt_nf)
        add_prompt_linears(self, "shift", outputs, prompt_nf)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        for k in range(1, num_block + 1):  # body<k> = Sequential(one block), the reference's nesting
            self.add_module(f"body{k}", nn.Sequential(ResidualBlockNoBN(num_feat)))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        self.task_maps = TaskPromptMaps(prompt_tasks, prompt_maps) if explicit else None

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        p = self.F_ext_net(prompt_input(self.task_maps, x, task).to(x.dtype))
        x = cpu_channels_last(x)
        feat = self.lrelu(self.conv_first(x))
        for k in range(1, self.num_block + 1):
            feat = modulate_at(self, getattr(self, f"body{k}")(feat), p, str(k))
        feat = modulate_at(self, self.lrelu(self.conv_hr(feat)), p, "hr")
        return modulate_at(self, self.conv_last(feat), p, "out") + x


@register_model("srresnet_ep")
class SRResNetEP(PromptedSRResNet):
    """MiOIR's ``SRResNet_EP``: explicit prompt from the task label."""

    prompt_kind = "explicit"


@register_model("srresnet_ap")
class SRResNetAP(PromptedSRResNet):
    """MiOIR's ``SRResNet_AP``: adaptive prompt from the degraded image."""

    prompt_kind = "adaptive"

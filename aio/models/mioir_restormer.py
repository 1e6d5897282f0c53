"""MiOIR's prompted Restormer (``Restormer_EP`` / ``Restormer_AP`` of Xiangtaokong/MiOIR).

The standard Restormer trunk plus four prompt extractors ``F_ext_net1..4`` (64-d vectors) and scale/shift
pairs at six positions: after the latent (``prompt_*1``, 8*dim channels, from prompt 1), after decoder level
3 (``*2``, 4*dim, prompt 2), after decoder level 2 (``*3``, 2*dim, prompt 3), after decoder level 1 (``*4``)
and after the refinement (``*5``) -- both from prompt 3, as in the reference --, and on the 3-channel output
before the global residual (``*out``, prompt 4). Names and shapes are the reference's at its defaults, so its
checkpoints load strictly.

Differences from the reference, where it does something surprising: the reference's forward does not pad
(its test code reflect-pads to a multiple of 64 and feeds the padded image as the adaptive prompt); here the
input is reflect-padded to a multiple of 8 inside the model and the adaptive prompt is computed from that
padded input (identical outputs when H and W are multiples of 64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aio.models.base import RestorationModel, crop_to
from aio.models.layers import Downsample, OverlapPatchEmbed, Upsample, transformer_stage
from aio.models.prompts import (PromptExtractor, TaskPromptMaps, add_prompt_linears, check_prompt_kind,
                                modulate_at, prompt_input)
from aio.models.registry import register_model

PROMPT_NF = 64  # the reference's fixed prompt width


class PromptedRestormer(RestorationModel):
    """Restormer with MiOIR's prompt modulation; ``prompt_kind`` is ``explicit`` (task label -> fixed map,
    see :class:`~aio.models.prompts.TaskPromptMaps`) or ``adaptive`` (the input image)."""

    pad_multiple = 8
    prompt_backbone = "restormer"
    prompt_kind = "explicit"

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 (official spelling)
        global_residual: bool = True,
        dual_pixel_task: bool = False,
        prompt_tasks: Sequence[str] | None = None,
        prompt_maps: str | None = None,
    ):
        super().__init__()
        self.prompt = check_prompt_kind(self.prompt_kind)
        explicit = self.prompt == "explicit"
        d = dim
        for k in range(1, 5):
            self.add_module(f"F_ext_net{k}", PromptExtractor(in_nc=1 if explicit else inp_channels, nf=PROMPT_NF))
        self.dim = d
        outputs = [("1", d * 8), ("2", d * 4), ("3", d * 2), ("4", d * 2), ("5", d * 2), ("out", out_channels)]
        add_prompt_linears(self, "scale", outputs, PROMPT_NF)
        add_prompt_linears(self, "shift", outputs, PROMPT_NF)
        self.global_residual = global_residual
        self.dual_pixel_task = dual_pixel_task

        blk = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        self.patch_embed = OverlapPatchEmbed(inp_channels, d)
        self.encoder_level1 = transformer_stage(num_blocks[0], d, heads[0], **blk)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.down3_4 = Downsample(d * 4)
        self.latent = transformer_stage(num_blocks[3], d * 8, heads[3], **blk)
        self.up4_3 = Upsample(d * 8)
        self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, 1, bias=bias)
        self.decoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, 1, bias=bias)
        self.decoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.up2_1 = Upsample(d * 2)
        self.decoder_level1 = transformer_stage(num_blocks[0], d * 2, heads[0], **blk)
        self.refinement = transformer_stage(num_refinement_blocks, d * 2, heads[0], **blk)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(d, d * 2, 1, bias=bias)
        self.output = nn.Conv2d(d * 2, out_channels, 3, padding=1, bias=bias)
        self.task_maps = TaskPromptMaps(prompt_tasks, prompt_maps) if explicit else None

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        inp, size = self.pad(x)
        src = prompt_input(self.task_maps, inp, task).to(inp.dtype)
        p1, p2, p3, p4 = (getattr(self, f"F_ext_net{k}")(src) for k in range(1, 5))
        e1 = self.patch_embed(inp)
        o1 = self.encoder_level1(e1)
        o2 = self.encoder_level2(self.down1_2(o1))
        o3 = self.encoder_level3(self.down2_3(o2))
        lat = modulate_at(self, self.latent(self.down3_4(o3)), p1, "1")
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), o3], 1)))
        d3 = modulate_at(self, d3, p2, "2")
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), o2], 1)))
        d2 = modulate_at(self, d2, p3, "3")
        d1 = modulate_at(self, self.decoder_level1(torch.cat([self.up2_1(d2), o1], 1)), p3, "4")
        d1 = modulate_at(self, self.refinement(d1), p3, "5")
        if self.dual_pixel_task:  # the reference skips the output prompt here
            return crop_to(self.output(d1 + self.skip_conv(e1)), size)
        out = modulate_at(self, self.output(d1), p4, "out")
        return crop_to(out + inp if self.global_residual else out, size)


@register_model("restormer_ep")
class RestormerEP(PromptedRestormer):
    """MiOIR's ``Restormer_EP``: explicit prompt from the task label."""

    prompt_kind = "explicit"


@register_model("restormer_ap")
class RestormerAP(PromptedRestormer):
    """MiOIR's ``Restormer_AP``: adaptive prompt from the degraded image."""

    prompt_kind = "adaptive"

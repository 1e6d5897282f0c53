"""Restormer (Zamir et al., CVPR 2022) with the LoRa-Gate ablation switches.

At neutral switches (``gate="none"``, ratios 1.0, no DFRG / spatial LoRa / CSFF) the parameter names and
shapes are exactly the official implementation's, so official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.base import RestorationModel, crop_to
from aio.models.blocks.csff import CSFF
from aio.models.blocks.dfrg import DFRG
from aio.models.blocks.sampling import Downsample, OverlapPatchEmbed, Upsample
from aio.models.blocks.transformer import transformer_stage
from aio.models.registry import register_model


def _dfrg_settings(dfrg: Mapping | bool | None) -> tuple[int, float]:
    """``(experts, aux_weight)`` from the ``dfrg`` node; experts 0 means disabled."""
    if not dfrg:
        return 0, 0.0
    if isinstance(dfrg, Mapping):
        if not dfrg.get("enabled", False):
            return 0, 0.0
        return int(dfrg.get("experts", 4)), float(dfrg.get("aux_weight", 0.0))
    return 4, 0.0  # dfrg=True


@register_model("restormer")
class Restormer(RestorationModel):
    """Restormer encoder-decoder of MDTA/GDFN transformer blocks, output = ``net(x) + x``.

    Ablation switches (all in the same class):
      ``gate``: ``none`` | ``elementwise`` | ``channel`` gate on every residual branch;
      ``ffn_ratio`` / ``attn_ratio``: LoRa rank ratio of the GDFN / MDTA 1x1 convs (1.0 = plain conv);
      ``spatial_lora``: spatial-aware LoRa convs instead of plain low-rank ones;
      ``dfrg``: ``{enabled, experts, aux_weight}``, a Dynamic Feature Refinement Gate in every block;
      ``csff``: attention-weighted cross-scale fusion at the decoder skips instead of concat + 1x1.
    The DFRG routing loss (``aux_losses``) is cross-entropy pushing the samples of task ``t`` to expert
    ``t % experts``, averaged over all DFRG modules and weighted by ``aux_weight``.
    """

    supports_ablations = True
    pad_multiple = 8

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
        dual_pixel_task: bool = False,
        gate: str = "none",
        ffn_ratio: float = 1.0,
        attn_ratio: float = 1.0,
        dfrg: Mapping | bool | None = None,
        spatial_lora: bool = False,
        csff: bool = False,
    ):
        super().__init__()
        experts, self.route_aux_weight = _dfrg_settings(dfrg)
        self.dual_pixel_task = dual_pixel_task
        self.csff = csff
        blk = dict(
            ffn_expansion_factor=ffn_expansion_factor,
            bias=bias,
            LayerNorm_type=LayerNorm_type,
            gate=gate,
            ffn_ratio=float(ffn_ratio),
            attn_ratio=float(attn_ratio),
            spatial_lora=spatial_lora,
            dfrg_experts=experts,
        )
        d = dim
        self.patch_embed = OverlapPatchEmbed(inp_channels, d, bias=False)
        self.encoder_level1 = transformer_stage(num_blocks[0], d, heads[0], **blk)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.down3_4 = Downsample(d * 4)
        self.latent = transformer_stage(num_blocks[3], d * 8, heads[3], **blk)

        self.up4_3 = Upsample(d * 8)
        if csff:
            self.csff_level3 = CSFF(d * 4, d * 4, bias=bias)
        else:
            self.reduce_chan_level3 = nn.Conv2d(d * 8, d * 4, 1, bias=bias)
        self.decoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.up3_2 = Upsample(d * 4)
        if csff:
            self.csff_level2 = CSFF(d * 2, d * 2, bias=bias)
        else:
            self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, 1, bias=bias)
        self.decoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.up2_1 = Upsample(d * 2)
        if csff:  # the official level-1 skip is a plain concat (no reduce): fuse and lift to 2*dim
            self.csff_level1 = CSFF(d, d * 2, bias=bias)
        self.decoder_level1 = transformer_stage(num_blocks[0], d * 2, heads[0], **blk)
        self.refinement = transformer_stage(num_refinement_blocks, d * 2, heads[0], **blk)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(d, d * 2, 1, bias=bias)
        self.output = nn.Conv2d(d * 2, out_channels, 3, padding=1, bias=bias)

    def _skip(self, level: int, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        if self.csff:
            return getattr(self, f"csff_level{level}")(dec, enc)
        x = torch.cat([dec, enc], 1)
        return x if level == 1 else getattr(self, f"reduce_chan_level{level}")(x)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        inp, size = self.pad(x)
        e1 = self.patch_embed(inp)
        o1 = self.encoder_level1(e1)
        o2 = self.encoder_level2(self.down1_2(o1))
        o3 = self.encoder_level3(self.down2_3(o2))
        lat = self.latent(self.down3_4(o3))
        d3 = self.decoder_level3(self._skip(3, self.up4_3(lat), o3))
        d2 = self.decoder_level2(self._skip(2, self.up3_2(d3), o2))
        d1 = self.refinement(self.decoder_level1(self._skip(1, self.up2_1(d2), o1)))
        if self.dual_pixel_task:
            out = self.output(d1 + self.skip_conv(e1))
        else:
            out = self.output(d1) + inp
        return crop_to(out, size)

    # -- DFRG routing ------------------------------------------------------------------------------------
    def _routing_logits(self) -> list[torch.Tensor]:
        return [m.last_logits for m in self.modules() if isinstance(m, DFRG) and m.last_logits is not None]

    def aux_losses(self, task: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``{"l_route": aux_weight * CE(routing, task % experts)}`` when DFRG has aux_weight > 0 and task
        labels are given, else ``{}``."""
        logits = self._routing_logits()
        if self.route_aux_weight <= 0 or task is None or not logits:
            return {}
        k = logits[0].shape[-1]
        target = task.to(logits[0].device).long() % k
        loss = torch.stack([F.cross_entropy(lg.float(), target) for lg in logits]).mean()
        return {"l_route": self.route_aux_weight * loss}

    @torch.no_grad()
    def aux_metrics(self) -> dict[str, float]:
        """Mean routing weight per expert over the batch and all DFRG modules (``route_w{k}``)."""
        logits = self._routing_logits()
        if not logits:
            return {}
        w = torch.stack([lg.float().softmax(-1).mean(0) for lg in logits]).mean(0)
        return {f"route_w{i}": float(v) for i, v in enumerate(w)}

"""Restormer (Zamir et al., CVPR 2022) and the seed-000 LoRa-Gate-Restormer family built on it.

Reference for the family: 1601339895/Image-Restoration, ``experiment/20251208_cpMoCE_IR_Gatewise_LoRa/src/net/``
(``LoRa_Gate_Restormer`` + ``apply_mixed_strategy_lora`` in ``model.py``; ``ImprovedLoRaGateRestormer`` +
``apply_enhanced_lora_strategy`` in ``model_improved.py``). The ablation rows are switches of one class:

==================  =====================================================================================
``gate``            ``none | headwise | elementwise`` gated attention inside MDTA (``GatedMDTA``)
``ffn/attn_ratio``  LoRa ratios; which conv gets which is :mod:`aio.models.blocks.lora`'s role map
``dfrg``            the DFRG on every attention input (``EnhancedGatedMDTA``)
``spatial_lora``    ``SpatialAwareLoRaConv`` under the enhanced rule instead of ``BetterLoRaConv``
``csff``            the reference's enhanced decoder: CSFF + ``reduce_chan_level{1,2,3}`` (C->C) at every
                    level, decoder level 1 / refinement / output at ``dim`` (not ``2*dim``), and learnable
                    residual scales ``gamma1``/``gamma2`` in every block
==================  =====================================================================================

With every switch neutral the parameter names and shapes are the official Restormer's; ``gate=elementwise``
at (0.5, 0.8) is the reference baseline, and with ``dfrg``, ``spatial_lora`` and ``csff`` on it is the
reference's full network — reference checkpoints load with ``strict=True`` and give the same outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from aio.models.base import RestorationModel, crop_to
from aio.models.blocks.csff import CSFF
from aio.models.blocks.dfrg import mean_expert_weights, routing_loss
from aio.models.blocks.gates import check_gate
from aio.models.blocks.lora import LoRaPlan
from aio.models.blocks.sampling import Downsample, OverlapPatchEmbed, Upsample
from aio.models.blocks.transformer import transformer_stage
from aio.models.registry import register_model


def _dfrg_settings(dfrg: Mapping | bool | None) -> tuple[dict | None, float]:
    """``(DFRG kwargs or None, routing-loss weight)`` from the ``dfrg`` node ``{enabled, experts, reduction,
    aux_weight}`` (or a bool)."""
    if not dfrg or (isinstance(dfrg, Mapping) and not dfrg.get("enabled", False)):
        return None, 0.0
    node = dfrg if isinstance(dfrg, Mapping) else {}
    aux = float(node.get("aux_weight", 0.0))
    kw = {"experts": int(node.get("experts", 5)), "reduction": int(node.get("reduction", 4)), "keep_graph": aux > 0}
    return kw, aux


@register_model("restormer")
class Restormer(RestorationModel):
    """Restormer encoder-decoder of MDTA/GDFN transformer blocks, output = ``net(x) + x``, with the seed-000
    switches (module docstring). ``aux_metrics()`` gives the mean DFRG expert weights (``route_w{k}``);
    ``aux_losses`` the opt-in routing loss ``l_route`` (``dfrg.aux_weight > 0`` and task labels given).
    With ``spatial_lora`` the BatchNorms make a training forward need batch >= 2 (as in the reference)."""

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
        dfrg_kw, self.route_aux_weight = _dfrg_settings(dfrg)
        lora = LoRaPlan(float(ffn_ratio), float(attn_ratio), bool(spatial_lora))
        self.dual_pixel_task = dual_pixel_task
        self.csff = csff
        blk = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type,
                   gate=check_gate(gate), lora=lora, dfrg=dfrg_kw, gamma=bool(csff))
        d = dim
        top = d if csff else d * 2  # channels of decoder level 1, refinement and output
        self.patch_embed = OverlapPatchEmbed(inp_channels, d, bias=False)
        self.encoder_level1 = transformer_stage(num_blocks[0], d, heads[0], **blk)
        self.down1_2 = Downsample(d)
        self.encoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.down2_3 = Downsample(d * 2)
        self.encoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.down3_4 = Downsample(d * 4)
        self.latent = transformer_stage(num_blocks[3], d * 8, heads[3], **blk)

        self.up4_3 = Upsample(d * 8)
        self._skip_modules(3, d * 4, lora, bias)
        self.decoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.up3_2 = Upsample(d * 4)
        self._skip_modules(2, d * 2, lora, bias)
        self.decoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.up2_1 = Upsample(d * 2)
        if csff:  # the official level-1 skip is a plain concat (no reduce)
            self._skip_modules(1, d, lora, bias)
        self.decoder_level1 = transformer_stage(num_blocks[0], top, heads[0], **blk)
        self.refinement = transformer_stage(num_refinement_blocks, top, heads[0], **blk)
        if dual_pixel_task:
            self.skip_conv = lora.conv1x1("skip", d, top, bias)
        self.output = nn.Conv2d(top, out_channels, 3, padding=1, bias=bias)

    def _skip_modules(self, level: int, c: int, lora: LoRaPlan, bias: bool) -> None:
        """The skip fusion at decoder ``level`` (``c`` channels): ``csff{level}`` + ``reduce_chan_level{level}``
        (C->C) with CSFF, else ``reduce_chan_level{level}`` (2C->C) after a concat."""
        if self.csff:
            setattr(self, f"csff{level}", CSFF(c, c, lora))
            setattr(self, f"reduce_chan_level{level}", lora.conv1x1("reduce", c, c, bias))
        else:
            setattr(self, f"reduce_chan_level{level}", lora.conv1x1("reduce", 2 * c, c, bias))

    def _skip(self, level: int, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        if self.csff:
            x = getattr(self, f"csff{level}")(enc, dec)
        else:
            x = torch.cat([dec, enc], 1)
            if level == 1:
                return x
        return getattr(self, f"reduce_chan_level{level}")(x)

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

    # -- DFRG expert weights -------------------------------------------------------------------------------
    def aux_losses(self, task: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``{"l_route": aux_weight * routing NLL}`` when ``dfrg.aux_weight > 0`` and task labels are given."""
        if self.route_aux_weight <= 0 or task is None:
            return {}
        loss = routing_loss(self, task)
        return {} if loss is None else {"l_route": self.route_aux_weight * loss}

    @torch.no_grad()
    def aux_metrics(self) -> dict[str, float]:
        """Mean DFRG expert weight per expert over the last batch and all DFRGs (``route_w{k}``)."""
        return {f"route_w{i}": v for i, v in enumerate(mean_expert_weights(self))}

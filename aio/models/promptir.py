"""PromptIR (Potlapalli et al., NeurIPS 2023): Restormer with prompt blocks in the decoder.

Parameter names and shapes match the official code (``decoder=True``), including the modules the official
forward never uses (``chnl_reduce*``, ``reduce_noise_channel_*``), so official checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.base import RestorationModel, crop_to
from aio.models.blocks.sampling import Downsample, OverlapPatchEmbed, Upsample
from aio.models.blocks.transformer import TransformerBlock, transformer_stage
from aio.models.registry import register_model


def _prompt_to_official(module, state_dict, prefix, local_metadata) -> None:
    key = prefix + "prompt_param"
    state_dict[key] = state_dict[key].unsqueeze(0)


def _prompt_from_official(module, state_dict, prefix, *args) -> None:
    key = prefix + "prompt_param"
    if key in state_dict and state_dict[key].dim() == 5 and state_dict[key].shape[0] == 1:
        state_dict[key] = state_dict[key].squeeze(0)


class PromptGenBlock(nn.Module):
    """Prompt generation: softmax weights from pooled features mix ``prompt_len`` learned prompts, which are
    resized to the feature map and passed through a 3x3 conv.

    ``prompt_param`` is held 4-D ``[L, C, S, S]`` (so ``model.to(memory_format=torch.channels_last)`` works)
    but appears in state dicts in the official 5-D shape ``[1, L, C, S, S]`` (and loads from it).
    """

    def __init__(self, prompt_dim: int = 128, prompt_len: int = 5, prompt_size: int = 96, lin_dim: int = 192):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)
        self.register_state_dict_post_hook(_prompt_to_official)
        self.register_load_state_dict_pre_hook(_prompt_from_official)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # [B, L]
        prompt = torch.einsum("bl,lchw->bchw", weights, self.prompt_param.to(weights.dtype))
        prompt = F.interpolate(prompt, (h, w), mode="bilinear")
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # aio's CPU layout (see OverlapPatchEmbed): the einsum gives NCHW, and the decoder's cat with it would
            # drop the whole decoder back to NCHW (a layout copy around every LayerNorm: ~6% of an fp32 step)
            prompt = prompt.contiguous(memory_format=torch.channels_last)
        return self.conv3x3(prompt)


@register_model("promptir")
class PromptIR(RestorationModel):
    """PromptIR: Restormer encoder/decoder, prompt blocks + one transformer block before each decoder upsample.

    ``prompt_dims``/``prompt_sizes`` generalise the official constants (64/128/320 channels, 64/32/16 px) so
    that the tiny/small presets can shrink them; the official values are the defaults.
    """

    has_unused_parameters = True  # chnl_reduce*/reduce_noise_channel_* exist only for official checkpoints

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
        decoder: bool = True,
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_sizes: Sequence[int] = (64, 32, 16),
        prompt_len: int = 5,
    ):
        super().__init__()
        if not decoder:  # the official decoder=False path does not run either (channel mismatch at up4_3)
            raise ValueError("PromptIR decoder=false is not supported; use decoder=true")
        d = dim
        p1, p2, p3 = prompt_dims
        blk = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        self.decoder = decoder
        self.patch_embed = OverlapPatchEmbed(inp_channels, d)
        if decoder:
            self.prompt1 = PromptGenBlock(p1, prompt_len, prompt_sizes[0], d * 2)
            self.prompt2 = PromptGenBlock(p2, prompt_len, prompt_sizes[1], d * 4)
            self.prompt3 = PromptGenBlock(p3, prompt_len, prompt_sizes[2], d * 8)
        # Present in the official model (and its checkpoints) but never used by its forward.
        self.chnl_reduce1 = nn.Conv2d(p1, p1, 1, bias=bias)
        self.chnl_reduce2 = nn.Conv2d(p2, p2, 1, bias=bias)
        self.chnl_reduce3 = nn.Conv2d(p3, 2 * p2, 1, bias=bias)
        self.reduce_noise_channel_1 = nn.Conv2d(d + p1, d, 1, bias=bias)
        self.encoder_level1 = transformer_stage(num_blocks[0], d, heads[0], **blk)
        self.down1_2 = Downsample(d)
        self.reduce_noise_channel_2 = nn.Conv2d(d * 2 + p2, d * 2, 1, bias=bias)
        self.encoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)
        self.down2_3 = Downsample(d * 2)
        self.reduce_noise_channel_3 = nn.Conv2d(d * 4 + 2 * p2, d * 4, 1, bias=bias)
        self.encoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)
        self.down3_4 = Downsample(d * 4)
        self.latent = transformer_stage(num_blocks[3], d * 8, heads[3], **blk)

        self.up4_3 = Upsample(d * 4)
        self.reduce_chan_level3 = nn.Conv2d(d * 2 + d * 4, d * 4, 1, bias=bias)
        self.noise_level3 = TransformerBlock(d * 8 + p3, heads[2], **blk)
        self.reduce_noise_level3 = nn.Conv2d(d * 8 + p3, d * 4, 1, bias=bias)
        self.decoder_level3 = transformer_stage(num_blocks[2], d * 4, heads[2], **blk)

        self.up3_2 = Upsample(d * 4)
        self.reduce_chan_level2 = nn.Conv2d(d * 4, d * 2, 1, bias=bias)
        self.noise_level2 = TransformerBlock(d * 4 + p2, heads[2], **blk)
        self.reduce_noise_level2 = nn.Conv2d(d * 4 + p2, d * 4, 1, bias=bias)
        self.decoder_level2 = transformer_stage(num_blocks[1], d * 2, heads[1], **blk)

        self.up2_1 = Upsample(d * 2)
        self.noise_level1 = TransformerBlock(d * 2 + p1, heads[2], **blk)
        self.reduce_noise_level1 = nn.Conv2d(d * 2 + p1, d * 2, 1, bias=bias)
        self.decoder_level1 = transformer_stage(num_blocks[0], d * 2, heads[0], **blk)
        self.refinement = transformer_stage(num_refinement_blocks, d * 2, heads[0], **blk)
        self.output = nn.Conv2d(d * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        inp, size = self.pad(x)
        o1 = self.encoder_level1(self.patch_embed(inp))
        o2 = self.encoder_level2(self.down1_2(o1))
        o3 = self.encoder_level3(self.down2_3(o2))
        lat = self.latent(self.down3_4(o3))

        lat = torch.cat([lat, self.prompt3(lat)], 1)
        lat = self.reduce_noise_level3(self.noise_level3(lat))
        d3 = self.reduce_chan_level3(torch.cat([self.up4_3(lat), o3], 1))
        d3 = self.decoder_level3(d3)

        d3 = torch.cat([d3, self.prompt2(d3)], 1)
        d3 = self.reduce_noise_level2(self.noise_level2(d3))
        d2 = self.reduce_chan_level2(torch.cat([self.up3_2(d3), o2], 1))
        d2 = self.decoder_level2(d2)

        d2 = torch.cat([d2, self.prompt1(d2)], 1)
        d2 = self.reduce_noise_level1(self.noise_level1(d2))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), o1], 1))
        d1 = self.refinement(d1)
        return crop_to(self.output(d1) + inp, size)

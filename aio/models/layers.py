"""Compatibility re-exports: the blocks now live in :mod:`aio.models.blocks` (one module per kind).

Kept so that code importing ``aio.models.layers`` keeps working; new code imports from the block's module.
"""

from aio.models.blocks.attention import Attention
from aio.models.blocks.csff import CSFF
from aio.models.blocks.dfrg import DFRG
from aio.models.blocks.ffn import FeedForward
from aio.models.blocks.gates import GATES, ChannelGate, ElementwiseGate, make_gate
from aio.models.blocks.lora import LowRankConv2d, SpatialLoRaConv2d, lora_conv1x1, lora_rank
from aio.models.blocks.norm import BiasFreeLayerNorm, LayerNorm, LayerNorm2d, WithBiasLayerNorm
from aio.models.blocks.sampling import Downsample, OverlapPatchEmbed, Upsample
from aio.models.blocks.transformer import TransformerBlock, transformer_stage

__all__ = [
    "GATES", "BiasFreeLayerNorm", "WithBiasLayerNorm", "LayerNorm", "LayerNorm2d", "lora_rank", "LowRankConv2d",
    "SpatialLoRaConv2d", "lora_conv1x1", "ElementwiseGate", "ChannelGate", "make_gate", "DFRG", "CSFF",
    "FeedForward", "Attention", "TransformerBlock", "OverlapPatchEmbed", "Downsample", "Upsample",
    "transformer_stage",
]

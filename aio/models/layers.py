"""Compatibility re-exports: the blocks now live in :mod:`aio.models.blocks` (one module per kind).

Kept so that code importing ``aio.models.layers`` keeps working; new code imports from the block's module.
"""

from aio.models.blocks.attention import Attention
from aio.models.blocks.csff import CSFF
from aio.models.blocks.dfrg import DFRG
from aio.models.blocks.ffn import FeedForward
from aio.models.blocks.gates import GATES
from aio.models.blocks.lora import LoRaConv, LoRaPlan, SpatialLoRaConv
from aio.models.blocks.norm import BiasFreeLayerNorm, LayerNorm, LayerNorm2d, WithBiasLayerNorm
from aio.models.blocks.sampling import Downsample, OverlapPatchEmbed, Upsample
from aio.models.blocks.transformer import TransformerBlock, transformer_stage

__all__ = [
    "GATES", "BiasFreeLayerNorm", "WithBiasLayerNorm", "LayerNorm", "LayerNorm2d", "LoRaConv", "LoRaPlan",
    "SpatialLoRaConv", "DFRG", "CSFF", "FeedForward", "Attention", "TransformerBlock", "OverlapPatchEmbed",
    "Downsample", "Upsample", "transformer_stage",
]

"""Reusable blocks: Restormer's LayerNorms, MDTA/GDFN and transformer block, LoRa convs, gates, DFRG, CSFF.

Every switch has a neutral value (ratio 1.0, gate ``none``, no DFRG, no spatial LoRa) that builds exactly the
official Restormer module layout, so official checkpoints keep their parameter names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GATES = ("none", "elementwise", "channel")


# ----------------------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------------------
class BiasFreeLayerNorm(nn.Module):
    """LayerNorm over the last dim without mean subtraction or bias (Restormer's ``BiasFree``)."""

    def __init__(self, normalized_shape: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        var = x32.var(-1, keepdim=True, unbiased=False)
        return (x32 * torch.rsqrt(var + 1e-5) * self.weight.float()).to(x.dtype)


class WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the last dim (eps 1e-5), Restormer's ``WithBias``."""

    def __init__(self, normalized_shape: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class LayerNorm(nn.Module):
    """Channel LayerNorm of a ``[B, C, H, W]`` tensor, official names (``body.weight``/``body.bias``)."""

    def __init__(self, dim: int, layernorm_type: str = "WithBias"):
        super().__init__()
        if layernorm_type == "BiasFree":
            self.body = BiasFreeLayerNorm(dim)
        elif layernorm_type == "WithBias":
            self.body = WithBiasLayerNorm(dim)
        else:
            raise ValueError(f"LayerNorm_type={layernorm_type!r}; valid: BiasFree, WithBias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    """NAFNet's channel LayerNorm (eps 1e-6) computed in channels-first layout."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------------------
# LoRa (low-rank) 1x1 convolutions
# ----------------------------------------------------------------------------------------------------------
def lora_rank(c_in: int, c_out: int, ratio: float) -> int:
    """Rank of a LoRa conv: ``max(1, round(ratio * min(c_in, c_out)))``."""
    return max(1, round(ratio * min(c_in, c_out)))


class LowRankConv2d(nn.Module):
    """A 1x1 conv factored as ``c_in -> rank -> c_out`` (``down`` then ``up``)."""

    def __init__(self, c_in: int, c_out: int, rank: int, bias: bool = False):
        super().__init__()
        self.down = nn.Conv2d(c_in, rank, 1, bias=False)
        self.up = nn.Conv2d(rank, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class SpatialLoRaConv2d(nn.Module):
    """Spatial-aware LoRa conv: down to ``rank``, add a 3x3 and a dilated 3x3 depthwise branch in the latent
    space, modulate by a global-context scale (pooled -> bottleneck MLP -> sigmoid), project up to ``c_out``."""

    def __init__(self, c_in: int, c_out: int, rank: int, bias: bool = False):
        super().__init__()
        self.down = nn.Conv2d(c_in, rank, 1, bias=False)
        self.local = nn.Conv2d(rank, rank, 3, padding=1, groups=rank, bias=False)
        self.dilated = nn.Conv2d(rank, rank, 3, padding=2, dilation=2, groups=rank, bias=False)
        hidden = max(4, rank // 16)
        self.context = nn.Sequential(nn.Conv2d(rank, hidden, 1), nn.GELU(), nn.Conv2d(hidden, rank, 1))
        self.up = nn.Conv2d(rank, c_out, 1, bias=bias)
        nn.init.zeros_(self.local.weight)  # starts as a plain low-rank conv (x 0.5 context scale)
        nn.init.zeros_(self.dilated.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.down(x)
        z = z + self.local(z) + self.dilated(z)
        scale = torch.sigmoid(self.context(z.mean(dim=(2, 3), keepdim=True)))
        return self.up(z * scale)


def lora_conv1x1(c_in: int, c_out: int, ratio: float = 1.0, bias: bool = False, spatial: bool = False) -> nn.Module:
    """A 1x1 conv ``c_in -> c_out``: plain ``nn.Conv2d`` at ratio 1.0 (official names), else a low-rank pair
    (``LowRankConv2d``), or ``SpatialLoRaConv2d`` when ``spatial`` (at any ratio)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"LoRa ratio={ratio} must be in (0, 1]")
    if spatial:
        return SpatialLoRaConv2d(c_in, c_out, lora_rank(c_in, c_out, ratio), bias)
    if ratio >= 1.0:
        return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)
    return LowRankConv2d(c_in, c_out, lora_rank(c_in, c_out, ratio), bias)


# ----------------------------------------------------------------------------------------------------------
# Residual-branch gates
# ----------------------------------------------------------------------------------------------------------
class ElementwiseGate(nn.Module):
    """``sigmoid(g(x)) * f(x)`` with ``g`` a depthwise 3x3 conv of the branch input ``x``."""

    def __init__(self, dim: int):
        super().__init__()
        self.g = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=True)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.g(x)) * fx


class ChannelGate(nn.Module):
    """Squeeze-excitation on the branch output: ``f(x) * sigmoid(W2 relu(W1 pool(f(x))))`` (reduction 16)."""

    def __init__(self, dim: int, reduction: int = 16):
        super().__init__()
        hidden = max(4, dim // reduction)
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=True)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        s = fx.mean(dim=(2, 3), keepdim=True)
        return fx * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


def make_gate(kind: str, dim: int) -> nn.Module | None:
    """The gate module for ``kind`` (``none`` gives None: the plain residual ``x + f(x)``)."""
    if kind == "none":
        return None
    if kind == "elementwise":
        return ElementwiseGate(dim)
    if kind == "channel":
        return ChannelGate(dim)
    raise ValueError(f"gate={kind!r}; valid: {', '.join(GATES)}")


# ----------------------------------------------------------------------------------------------------------
# Dynamic Feature Refinement Gate
# ----------------------------------------------------------------------------------------------------------
class DFRG(nn.Module):
    """Dynamic Feature Refinement Gate: ``y + CA(y) * SA(y) * sum_k w_k E_k(y)``.

    - CA: ECA-style channel attention (1-D conv, k=3, over the pooled channel vector, sigmoid);
    - SA: spatial attention (3x3 conv of the channel mean and max maps, sigmoid);
    - experts E_k: K per-channel (depthwise) 1x1 convs, mixed by softmax routing weights ``w`` predicted by
      a linear router from the pooled features (averaged in groups to at most 16 values).
    At dim 48 this is 282 parameters for K=4, under 1% of a Restormer block. The routing logits of the last
    forward are kept in ``last_logits`` (for the routing loss and metrics); they are not copied or saved.
    """

    def __init__(self, dim: int, experts: int = 4, route_dim: int = 16):
        super().__init__()
        self.experts = experts
        self.route_dim = min(dim, route_dim)
        self.channel_conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.spatial_conv = nn.Conv2d(2, 1, 3, padding=1, bias=True)
        self.router = nn.Linear(self.route_dim, experts)
        self.expert_weight = nn.Parameter(torch.randn(experts, dim) * 0.02)
        self.last_logits: torch.Tensor | None = None

    def __getstate__(self):  # deepcopy/pickle (e.g. EMA copies) must not carry the autograd graph
        state = super().__getstate__()
        state["last_logits"] = None
        return state

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b, c = y.shape[:2]
        pooled = y.float().mean(dim=(2, 3))  # [B, C]
        ca = torch.sigmoid(self.channel_conv(pooled.unsqueeze(1))).view(b, c, 1, 1)
        sa_in = torch.cat([y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)
        sa = torch.sigmoid(self.spatial_conv(sa_in))
        logits = self.router(F.adaptive_avg_pool1d(pooled.unsqueeze(1), self.route_dim).squeeze(1))
        self.last_logits = logits
        mixed = torch.softmax(logits, dim=-1) @ self.expert_weight  # [B, C]: sum_k w_k * E_k
        return y + (ca * sa * y * mixed.view(b, c, 1, 1)).to(y.dtype)


# ----------------------------------------------------------------------------------------------------------
# Cross-scale skip fusion
# ----------------------------------------------------------------------------------------------------------
class CSFF(nn.Module):
    """Cross-Scale Feature Fusion at a decoder skip: per-channel softmax weights over the two sources
    (decoder, encoder) from their pooled descriptors (SK-style), weighted sum, then a refinement conv
    (depthwise 3x3 + 1x1 to ``c_out``). Replaces concat + 1x1 reduce."""

    def __init__(self, dim: int, c_out: int, reduction: int = 8, bias: bool = False):
        super().__init__()
        hidden = max(8, dim // reduction)
        self.squeeze = nn.Linear(dim, hidden)
        self.select = nn.Linear(hidden, 2 * dim)
        self.refine_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.refine_pw = nn.Conv2d(dim, c_out, 1, bias=bias)

    def forward(self, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        b, c = dec.shape[:2]
        s = (dec + enc).mean(dim=(2, 3))
        w = torch.softmax(self.select(F.gelu(self.squeeze(s))).view(b, 2, c), dim=1)
        fused = dec * w[:, 0].view(b, c, 1, 1).to(dec.dtype) + enc * w[:, 1].view(b, c, 1, 1).to(enc.dtype)
        return self.refine_pw(self.refine_dw(fused))


# ----------------------------------------------------------------------------------------------------------
# Restormer blocks (MDTA attention, GDFN feed-forward)
# ----------------------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN); ``ratio``/``spatial`` select LoRa project_in/out."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, ratio: float = 1.0, spatial: bool = False):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = lora_conv1x1(dim, hidden * 2, ratio, bias, spatial)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = lora_conv1x1(hidden, dim, ratio, bias, spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): attention across channels, linear in H*W."""

    def __init__(self, dim: int, num_heads: int, bias: bool, ratio: float = 1.0, spatial: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads={num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = lora_conv1x1(dim, dim * 3, ratio, bias, spatial)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = lora_conv1x1(dim, dim, ratio, bias, spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        heads, d = self.num_heads, c // self.num_heads
        qkv = self.qkv_dwconv(self.qkv(x))
        channels_last = qkv.is_contiguous(memory_format=torch.channels_last) and not qkv.is_contiguous()
        if channels_last:  # [B, HW, 3, heads, d] is a view of the channels_last buffer: q, k, v without copies
            t = qkv.permute(0, 2, 3, 1).view(b, h * w, 3, heads, d)
            q, k, v = (u.permute(0, 2, 3, 1) for u in t.unbind(2))  # [B, heads, d, HW] strided views
        else:
            q, k, v = (t.reshape(b, heads, d, h * w) for t in qkv.chunk(3, dim=1))
        # normalize(q) @ normalize(k)^T (F.normalize's eps 1e-12) as (q @ k^T) * (1/|q|) * (1/|k|)^T: the d x d
        # product is scaled instead of the two d x HW operands (same value, fewer full-size passes). Two
        # separate factors, not 1/(|q| |k|): all-zero q and k rows stay 0 with finite gradients, as normalize's.
        rq = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(1e-12).reciprocal()
        rk = torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-12).reciprocal()
        attn = ((q @ k.transpose(-2, -1)) * rq * rk.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        attn = attn.to(v.dtype)
        if channels_last:  # (attn @ v)^T = v^T attn^T lands in [B, heads, HW, d]: channels_last again
            out = (v.transpose(-2, -1) @ attn.transpose(-2, -1)).transpose(1, 2).reshape(b, h, w, c)
            return self.project_out(out.permute(0, 3, 1, 2))
        return self.project_out((attn @ v).reshape(b, c, h, w))


class TransformerBlock(nn.Module):
    """Restormer block ``x + attn(norm1(x))``, ``x + ffn(norm2(x))`` with optional branch gates and DFRG."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,  # noqa: N803 (official spelling)
        gate: str = "none",
        ffn_ratio: float = 1.0,
        attn_ratio: float = 1.0,
        spatial_lora: bool = False,
        dfrg_experts: int = 0,
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias, attn_ratio, spatial_lora)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias, ffn_ratio, spatial_lora)
        gate1, gate2 = make_gate(gate, dim), make_gate(gate, dim)
        if gate1 is not None:
            self.gate1, self.gate2 = gate1, gate2
        if dfrg_experts > 0:
            self.dfrg = DFRG(dim, dfrg_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.attn(self.norm1(x))
        x = x + (self.gate1(x, f) if hasattr(self, "gate1") else f)
        f = self.ffn(self.norm2(x))
        x = x + (self.gate2(x, f) if hasattr(self, "gate2") else f)
        if hasattr(self, "dfrg"):
            x = self.dfrg(x)
        return x


class OverlapPatchEmbed(nn.Module):
    """3x3 conv embedding (``proj``)."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":  # oneDNN's convs run ~2x faster channels_last; the network stays in it
            x = x.contiguous(memory_format=torch.channels_last)
        return self.proj(x)


class Downsample(nn.Module):
    """Halve H, W and double channels: 3x3 conv to ``n_feat // 2`` then PixelUnshuffle(2)."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double H, W and halve channels: 3x3 conv to ``2 * n_feat`` then PixelShuffle(2)."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def transformer_stage(n: int, dim: int, heads: int, **block_kw) -> nn.Sequential:
    """``n`` TransformerBlocks in an ``nn.Sequential`` (official ``encoder_levelX`` layout)."""
    return nn.Sequential(*[TransformerBlock(dim, heads, **block_kw) for _ in range(n)])


__all__ = [
    "GATES",
    "BiasFreeLayerNorm",
    "WithBiasLayerNorm",
    "LayerNorm",
    "LayerNorm2d",
    "lora_rank",
    "LowRankConv2d",
    "SpatialLoRaConv2d",
    "lora_conv1x1",
    "ElementwiseGate",
    "ChannelGate",
    "make_gate",
    "DFRG",
    "CSFF",
    "FeedForward",
    "Attention",
    "TransformerBlock",
    "OverlapPatchEmbed",
    "Downsample",
    "Upsample",
    "transformer_stage",
]

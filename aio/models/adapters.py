"""Per-degradation low-rank adapters on a frozen backbone, blended per sample (ABAIR phases II and III).

Every adapted layer keeps the backbone's weight ``W`` (same parameter names as the plain layer, so backbone
checkpoints load unchanged) and holds one weight update ``dW_k`` per adapter ``k``. For a batch with blend
weights ``w [B, K]`` image ``b`` goes through ``W + sum_k w[b, k] dW_k``. The layer is linear in its weight, so
``conv(x_b, W + sum_k w_bk dW_k) = conv(x_b, W) + sum_k w_bk conv(x_b, dW_k)``: blending the *weight updates*
per sample is computed exactly (not approximately) by blending the adapters' low-rank branch outputs, without
materialising a weight per image. :meth:`AdaptedConv2d.merged_weight` builds the merged weight for one
weight vector (tests check both routes agree).

Why not peft: peft's LoRA has Conv2d layers and mixed-adapter batches (``adapter_names=[...]`` per sample),
but that is a *hard* per-sample selection, allowed only in eval mode ("Cannot pass `adapter_names` when the
model is in training mode"), and ``add_weighted_adapter`` merges adapters with *fixed* scalar weights into a
new static adapter. ABAIR's SW mode needs per-sample *soft* weights that come from an estimator (a tensor,
possibly with gradients), so this small module does it; peft's package import also pulls in transformers.

Adapter kinds (``kind``):
  ``lora``: ``dW = up @ down`` (Hu et al. 2022); for a k x k conv ``down`` is a k x k conv to ``rank``
  channels and ``up`` a 1x1 conv back (peft's Conv2d layout); ``up`` starts at zero, scale ``alpha / rank``.
  ``vera``: ``dW = diag(b) B diag(d) A`` (Kopiczko et al. 2024) with frozen random ``A``, ``B`` regenerated
  from a seed (not stored: only ``d`` (init 0.1) and ``b`` (init 0) are trained and saved).
  ``conv_lora``: LoRA with a 3x3 convolution inside the rank-``r`` bottleneck (Zhong et al. 2024, Conv-LoRA,
  with one expert instead of their mixture of scales), zero-initialised on the way up.

Only ungrouped convolutions and linear layers are adapted (depthwise convs are left alone: their weights are
already per-channel and tiny). ``targets`` (fnmatch globs on module names) narrows the set further.
"""

from __future__ import annotations

import fnmatch
import math
import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("lora", "vera", "conv_lora")


class BlendState:
    """What every adapted layer of one model reads at forward time: the adapter names and ``weights``
    ``[B, K]`` (or None = backbone only). Shared by reference, set by the owning model before each forward."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.weights: torch.Tensor | None = None


class LowRankUpdate(nn.Module):
    """One adapter's update of one layer: ``forward(x)`` = the layer's op with ``dW`` (no bias)."""

    def __init__(self, base: nn.Module, kind: str, rank: int, alpha: float | None, seed_name: str):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"abair.adapter.kind={kind!r} unknown; choose from {', '.join(KINDS)}")
        if rank < 1:
            raise ValueError(f"abair.adapter.rank={rank} must be >= 1")
        self.kind, self.rank = kind, int(rank)
        self.scale = float(alpha if alpha is not None else rank) / rank
        self.is_conv = isinstance(base, nn.Conv2d)
        if self.is_conv:
            self.conv_kw = dict(stride=base.stride, padding=base.padding, dilation=base.dilation)
            cin, cout, ks = base.in_channels, base.out_channels, base.kernel_size
        else:
            self.conv_kw = {}
            cin, cout, ks = base.in_features, base.out_features, (1, 1)
        self.cin, self.cout, self.ks = cin, cout, tuple(ks)
        if kind == "vera":
            g = torch.Generator().manual_seed(zlib.crc32(seed_name.encode()))
            fan_a = cin * ks[0] * ks[1]
            a = (torch.rand(rank, fan_a, generator=g) * 2 - 1) * math.sqrt(3.0 / fan_a)  # Kaiming-uniform
            b = (torch.rand(cout, rank, generator=g) * 2 - 1) * math.sqrt(3.0 / rank)
            self.register_buffer("vera_a", a, persistent=False)
            self.register_buffer("vera_b", b, persistent=False)
            self.d = nn.Parameter(torch.full((rank,), 0.1))
            self.b = nn.Parameter(torch.zeros(cout))
            return
        self.down = nn.Parameter(torch.empty(rank, cin, *ks))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.mid = nn.Parameter(torch.zeros(rank, rank, 3, 3)) if kind == "conv_lora" else None
        if self.mid is not None:
            with torch.no_grad():
                self.mid[:, :, 1, 1] = torch.eye(rank)  # starts as plain LoRA
        self.up = nn.Parameter(torch.zeros(cout, rank))

    def _op(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.is_conv:
            return F.conv2d(x, w, None, **self.conv_kw)
        return F.linear(x, w.flatten(1))

    def _mix(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """A 1x1 map (``w [out, in]``) over channels: dim 1 for convs, the last dim for linear layers."""
        if self.is_conv:
            return torch.einsum("oi,bi...->bo...", w, h)
        return F.linear(h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        if self.kind == "vera":
            a = self.vera_a.to(dt).view(self.rank, self.cin, *self.ks)
            h = self._op(x, a)
            h = h * (self.d.to(dt).view(1, -1, *([1] * (h.dim() - 2))) if self.is_conv else self.d.to(dt))
            h = self._mix(h, self.vera_b.to(dt))
            return self.scale * (h * (self.b.to(dt).view(1, -1, 1, 1) if self.is_conv else self.b.to(dt)))
        h = self._op(x, self.down.to(dt))
        if self.mid is not None:
            h = F.conv2d(h, self.mid.to(dt), padding=1) if self.is_conv else h
        return self.scale * self._mix(h, self.up.to(dt))

    def delta_weight(self) -> torch.Tensor:
        """``dW`` in the layer's weight layout (``conv_lora``: a kernel 2 px wider, see :meth:`merged_weight`)."""
        if self.kind == "vera":
            da = self.d.view(-1, 1) * self.vera_a
            return self.scale * (self.b.view(-1, 1) * self.vera_b @ da).view(self.cout, self.cin, *self.ks)
        if self.mid is None:
            return self.scale * (self.up @ self.down.flatten(1)).view(self.cout, self.cin, *self.ks)
        # down (k x k) then mid (3 x 3) = one (k + 2) x (k + 2) kernel, the full convolution of the two (equal
        # to the two-step branch away from the image border, where the branch zero-pads its bottleneck)
        comb = F.conv2d(F.pad(self.down.transpose(0, 1), (2, 2, 2, 2)), self.mid.flip(-1, -2)).transpose(0, 1)
        return self.scale * (self.up @ comb.flatten(1)).view(self.cout, self.cin, *comb.shape[-2:])


class _Adapted:
    """Mixin of :class:`AdaptedConv2d` / :class:`AdaptedLinear`: base output plus blended updates."""

    state: BlendState
    adapters: nn.ModuleDict

    def _init_adapters(self, state: BlendState, kind: str, rank: int, alpha, layer_name: str, base) -> None:
        self.state = state
        self.adapters = nn.ModuleDict(
            {n: LowRankUpdate(base, kind, rank, alpha, f"{layer_name}/{n}") for n in state.names})

    def add_adapter(self, name: str, kind: str, rank: int, alpha=None, layer_name: str = "") -> None:
        self.adapters[name] = LowRankUpdate(self, kind, rank, alpha, f"{layer_name}/{name}").to(self.weight.device)

    def _blended(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.state.weights
        if w is None:
            return y
        for k, name in enumerate(self.state.names):
            wk = w[:, k]
            if name not in self.adapters or (wk.device.type != "meta" and not bool((wk != 0).any())):
                continue  # (meta tensors: FLOP counting, which cannot read values)
            upd = self.adapters[name](x)
            y = y + wk.to(upd.dtype).view(-1, *([1] * (upd.dim() - 1))) * upd
        return y


class AdaptedConv2d(_Adapted, nn.Conv2d):
    """An ``nn.Conv2d`` (same ``weight``/``bias`` names) plus per-adapter weight updates, blended per sample."""

    def __init__(self, base: nn.Conv2d, state: BlendState, kind: str = "lora", rank: int = 4,
                 alpha: float | None = None, layer_name: str = ""):
        nn.Conv2d.__init__(self, base.in_channels, base.out_channels, base.kernel_size, base.stride, base.padding,
                           base.dilation, base.groups, base.bias is not None, base.padding_mode,
                           device=base.weight.device, dtype=base.weight.dtype)
        self.weight, self.bias = base.weight, base.bias
        self._init_adapters(state, kind, rank, alpha, layer_name, base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._blended(x, nn.Conv2d.forward(self, x))

    def merged_weight(self, weights: Sequence[float]) -> torch.Tensor:
        """``W + sum_k w_k dW_k`` for one weight vector (centre-padded when an update is wider)."""
        out = self.weight.detach().clone()
        for wk, name in zip(weights, self.state.names):
            if name not in self.adapters or wk == 0:
                continue
            d = self.adapters[name].delta_weight().detach()
            if d.shape[-1] > out.shape[-1]:
                p = (d.shape[-1] - out.shape[-1]) // 2
                out = F.pad(out, (p, p, p, p))
            out = out + wk * d
        return out


class AdaptedLinear(_Adapted, nn.Linear):
    """An ``nn.Linear`` (same ``weight``/``bias`` names) plus per-adapter weight updates, blended per sample."""

    def __init__(self, base: nn.Linear, state: BlendState, kind: str = "lora", rank: int = 4,
                 alpha: float | None = None, layer_name: str = ""):
        nn.Linear.__init__(self, base.in_features, base.out_features, base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        self.weight, self.bias = base.weight, base.bias
        self._init_adapters(state, kind, rank, alpha, layer_name, base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._blended(x, nn.Linear.forward(self, x))


def adaptable(module: nn.Module) -> bool:
    """Ungrouped convolutions and linear layers (what gets an adapter)."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return isinstance(module, nn.Linear)


def inject_adapters(model: nn.Module, state: BlendState, kind: str = "lora", rank: int = 4,
                    alpha: float | None = None, targets: Sequence[str] | None = None,
                    exclude: Sequence[str] = ()) -> list[str]:
    """Replace every adaptable layer of ``model`` (names matching ``targets`` globs, none of ``exclude``)
    by its adapted twin; returns the adapted layer names. The backbone's parameter names do not change."""
    names = []
    for name, mod in list(model.named_modules()):
        if not name or not adaptable(mod) or isinstance(mod, _Adapted):
            continue
        if targets and not any(fnmatch.fnmatchcase(name, t) for t in targets):
            continue
        if any(fnmatch.fnmatchcase(name, e) for e in exclude):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        cls = AdaptedConv2d if isinstance(mod, nn.Conv2d) else AdaptedLinear
        setattr(parent, attr, cls(mod, state, kind, rank, alpha, layer_name=name))
        names.append(name)
    if not names:
        raise ValueError(f"abair.adapter.targets={list(targets or [])} matched no conv/linear layer")
    return names


def adapted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _Adapted)]


def adapter_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The trainable parameters of adapter ``name`` over all adapted layers."""
    return [p for _, m in adapted_layers(model) if name in m.adapters for p in m.adapters[name].parameters()]


def count_adapter_parameters(model: nn.Module, name: str | None = None) -> int:
    """Parameters of adapter ``name`` (or of all adapters)."""
    total = 0
    for _, m in adapted_layers(model):
        for n, a in m.adapters.items():
            if name is None or n == name:
                total += sum(p.numel() for p in a.parameters())
    return total

"""Synthetic degradation engine: batched torch/kornia operations on CPU or GPU.

Every operation takes ``x`` (``[B, 3, H, W]`` float in [0, 1]), a ``torch.Generator`` (or ``None`` for the
global RNG) on ``x``'s device, and per-image parameters (tensors ``[B]`` or floats), and returns finite
values in [0, 1] of ``x``'s shape. Noise scales (``sigma``) are in 8-bit units (0-255).

Specs: a degradation is described by a dict ``{"type": name, <param>: value | [lo, hi]}``; a range is
sampled uniformly per image from the generator. A *recipe* is a list of specs applied in physical order
(scene -> weather -> optics -> exposure -> sensor noise -> quantisation -> compression) whatever order
they are listed in; ``RECIPES`` holds the named ones (task names), ``get_recipe(name)`` builds one
(``denoise_<sigma>`` works for any sigma). ``region_mix`` applies different recipes to different regions
of one image (CutMix-style) and returns a per-pixel label map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# --------------------------------------------------------------------------------------------------
# helpers


def make_generator(seed: int, device="cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def _rand(shape, generator, like: Tensor) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def _randn(shape, generator, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _param(v, x: Tensor) -> Tensor:
    """A float or tensor -> float tensor [B] on x's device."""
    b = x.shape[0]
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(b)
    return t.reshape(b)


def _b(t: Tensor) -> Tensor:
    return t.view(-1, 1, 1, 1)


FFT_KERNEL_SIZE = 9  # per_image_conv switches to FFT convolution from this kernel size on


def per_image_conv(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve image ``b`` of ``x`` [B,C,H,W] with ``kernels[b]`` ([B,1,K,K] or [1,1,K,K]), edge-reflected."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    p = k // 2
    if kernels.shape[0] == 1:
        kernels = kernels.expand(b, 1, k, k)
    mode = "reflect" if p < min(h, w) else "replicate"
    if k >= FFT_KERNEL_SIZE:  # large kernels: FFT (direct grouped conv is ~10x slower on CPU)
        xp = F.pad(x, (p, p, p, p), mode=mode)
        hp, wp = xp.shape[-2:]
        kp = x.new_zeros(b, 1, hp, wp)
        kp[..., :k, :k] = kernels.to(x.dtype).flip(-1, -2)  # correlation = convolution with the flip
        kp = torch.roll(kp, shifts=(-p, -p), dims=(-2, -1))
        y = torch.fft.irfft2(torch.fft.rfft2(xp) * torch.fft.rfft2(kp), s=(hp, wp))
        return y[..., p:p + h, p:p + w].contiguous()
    xp = F.pad(x.reshape(1, b * c, h, w), (p, p, p, p), mode=mode)
    wts = kernels.to(x.dtype).repeat_interleave(c, dim=0)
    return F.conv2d(xp, wts, groups=b * c).reshape(b, c, h, w)


def line_kernels(length: Tensor, angle_deg: Tensor, size: int | None = None, normalize: str = "sum") -> Tensor:
    """Anti-aliased line segments [B,1,K,K]; ``angle_deg`` from the horizontal axis (counter-clockwise)."""
    if size is None:
        size = 2 * int(math.ceil(float(length.max()) / 2)) + 1
    size = max(3, size | 1)
    r = size // 2
    coords = torch.arange(-r, r + 1, device=length.device, dtype=length.dtype)
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # v: row (down), u: column
    a = torch.deg2rad(angle_deg).view(-1, 1, 1)
    ca, sa = torch.cos(a), torch.sin(a)
    along = u * ca - v * sa  # image rows grow downwards
    across = u * sa + v * ca
    half = (length / 2).view(-1, 1, 1)
    wts = (1 - across.abs()).clamp(min=0) * (half + 0.5 - along.abs()).clamp(0, 1)
    wts = wts.unsqueeze(1)
    denom = wts.sum(dim=(2, 3), keepdim=True) if normalize == "sum" else wts.amax(dim=(2, 3), keepdim=True)
    return wts / denom.clamp(min=1e-8)


def disk_kernels(radius: Tensor) -> Tensor:
    """Anti-aliased disks (defocus PSFs) [B,1,K,K] summing to one."""
    r = int(math.ceil(float(radius.max()))) + 1
    coords = torch.arange(-r, r + 1, device=radius.device, dtype=radius.dtype)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    dist = torch.sqrt(u * u + v * v)
    wts = (radius.view(-1, 1, 1) + 0.5 - dist).clamp(0, 1).unsqueeze(1)
    return wts / wts.sum(dim=(2, 3), keepdim=True).clamp(min=1e-8)


def gaussian_kernels(sigma: Tensor, size: int | None = None) -> Tensor:
    """Isotropic Gaussians [B,1,K,K] summing to one."""
    if size is None:
        size = 2 * int(math.ceil(3 * float(sigma.max()))) + 1
    size = max(3, size | 1)
    r = size // 2
    coords = torch.arange(-r, r + 1, device=sigma.device, dtype=sigma.dtype)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    s = sigma.view(-1, 1, 1).clamp(min=1e-3)
    wts = torch.exp(-(u * u + v * v) / (2 * s * s)).unsqueeze(1)
    return wts / wts.sum(dim=(2, 3), keepdim=True)


def smooth_field(b: int, h: int, w: int, generator, like: Tensor, cells: int = 4) -> Tensor:
    """A smooth random field [B,1,H,W] in [0,1] (bicubic upsampling of a coarse uniform grid)."""
    coarse = _rand((b, 1, cells, cells), generator, like)
    f = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    lo = f.amin(dim=(2, 3), keepdim=True)
    hi = f.amax(dim=(2, 3), keepdim=True)
    return (f - lo) / (hi - lo).clamp(min=1e-6)


# --------------------------------------------------------------------------------------------------
# operations


def gaussian_noise(x: Tensor, generator=None, sigma=25.0) -> Tensor:
    """Additive white Gaussian noise of std ``sigma``/255, clipped to [0, 1]."""
    s = _b(_param(sigma, x)) / 255.0
    return (x + s * _randn(x.shape, generator, x)).clamp(0, 1)


def poisson_gaussian_noise(x: Tensor, generator=None, peak=60.0, sigma=3.0) -> Tensor:
    """Shot noise (``peak`` photons at white) plus read noise of std ``sigma``/255."""
    p = _b(_param(peak, x)).clamp(min=1e-3)
    shot = torch.poisson(x.clamp(0, 1) * p, generator=generator) / p
    s = _b(_param(sigma, x)) / 255.0
    return (shot + s * _randn(x.shape, generator, x)).clamp(0, 1)


def rain(x: Tensor, generator=None, density=0.004, length=16.0, angle=0.0, width=0.6, intensity=0.7) -> Tensor:
    """Rain streaks: sparse seeds smeared into lines (``length`` px, ``angle`` degrees from vertical),
    blurred by a Gaussian of std ``width``, screen-blended (bright, semi-transparent)."""
    b, _, h, w = x.shape
    dens, inten = _b(_param(density, x)), _b(_param(intensity, x))
    u = _rand((b, 1, h, w), generator, x)
    amp = _rand((b, 1, h, w), generator, x)
    seeds = (u < dens).to(x.dtype) * (0.6 + 0.4 * amp)
    lk = line_kernels(_param(length, x), 90.0 + _param(angle, x), normalize="max")
    streak = per_image_conv(seeds, lk)
    streak = per_image_conv(streak, gaussian_kernels(_param(width, x)))
    streak = (streak * inten).clamp(0, 1)
    return 1 - (1 - x) * (1 - streak)


def haze(x: Tensor, generator=None, beta=1.2, airlight=0.85, depth=None) -> Tensor:
    """Atmospheric scattering ``I = J t + A (1 - t)``, ``t = exp(-beta d)`` with a smooth random depth
    ``d`` in [0.2, 1] (a coarse random field plus a top-is-farther gradient) and a global grey airlight."""
    b, _, h, w = x.shape
    if depth is None:
        field = smooth_field(b, h, w, generator, x, cells=3)
        grad = torch.linspace(1.0, 0.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
        mixw = _rand((b, 1, 1, 1), generator, x)
        d = mixw * field + (1 - mixw) * grad
        depth = 0.2 + 0.8 * d
    t = torch.exp(-_b(_param(beta, x)) * depth)
    a = _b(_param(airlight, x))
    return (x * t + a * (1 - t)).clamp(0, 1)


def snow(x: Tensor, generator=None, density=0.004, size=1.5, intensity=0.9, angle=0.0, length=4.0, veil=0.1) -> Tensor:
    """Snowflakes (Gaussian blobs of std ``size`` px, smeared ``length`` px along their fall ``angle``)
    composited in white over the scene, plus a light veil."""
    b, _, h, w = x.shape
    dens = _b(_param(density, x))
    size_t = _param(size, x)
    u = _rand((b, 1, h, w), generator, x)
    amp = _rand((b, 1, h, w), generator, x)
    seeds = (u < dens).to(x.dtype) * (0.5 + 0.5 * amp)
    flakes = per_image_conv(seeds, gaussian_kernels(size_t))
    flakes = flakes * _b(2 * math.pi * size_t**2)  # peak of a lone flake = its amplitude
    flakes = per_image_conv(flakes, line_kernels(_param(length, x).clamp(min=1), 90.0 + _param(angle, x)))
    m = (flakes * _b(_param(intensity, x)) * 1.5).clamp(0, 1)
    v = _b(_param(veil, x))
    y = x * (1 - v) + 0.85 * v
    return (y * (1 - m) + m).clamp(0, 1)


def gaussian_blur(x: Tensor, generator=None, sigma=2.0, kernel_radius=10.0) -> Tensor:
    """Isotropic Gaussian blur of std ``sigma`` px on a square ``2 * floor(kernel_radius) + 1`` window
    (MiOIR's blur: kernel sizes 7..21, i.e. ``kernel_radius`` in [3, 11), sigma in [1, 3])."""
    s, r = _param(sigma, x), _param(kernel_radius, x).floor().clamp(min=1)
    size = 2 * int(r.max()) + 1
    k = gaussian_kernels(s, size)
    coords = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
    inside = (coords.abs().view(1, 1, -1, 1) <= _b(r)) & (coords.abs().view(1, 1, 1, -1) <= _b(r))
    k = k * inside
    return per_image_conv(x, k / k.sum(dim=(2, 3), keepdim=True)).clamp(0, 1)


def bicubic_down_up(x: Tensor, generator=None, scale=4.0) -> Tensor:
    """Bicubic downsampling by ``scale`` then bicubic upsampling back to the input size (MiOIR's SR input:
    same size as the target). One ``scale`` per batch (the first image's)."""
    h, w = x.shape[-2:]
    f = float(_param(scale, x)[0])
    lr = F.interpolate(x, scale_factor=1.0 / f, mode="bicubic", align_corners=False)
    return F.interpolate(lr, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def defocus_blur(x: Tensor, generator=None, radius=2.5) -> Tensor:
    """Out-of-focus blur with a disk PSF of ``radius`` px."""
    return per_image_conv(x, disk_kernels(_param(radius, x))).clamp(0, 1)


def motion_blur(x: Tensor, generator=None, length=9.0, angle=0.0) -> Tensor:
    """Linear motion blur of ``length`` px at ``angle`` degrees."""
    return per_image_conv(x, line_kernels(_param(length, x).clamp(min=1), _param(angle, x))).clamp(0, 1)


def low_light(x: Tensor, generator=None, gamma=1.5, gain=0.3, peak=200.0, sigma=2.0) -> Tensor:
    """Under-exposure ``gain * x**gamma`` followed by Poisson-Gaussian sensor noise (``peak`` photons at
    white, read noise ``sigma``/255); ``peak <= 0`` disables the noise."""
    y = _b(_param(gain, x)) * x.clamp(min=0).pow(_b(_param(gamma, x)))
    p = _param(peak, x)
    if bool((p > 0).all()):
        y = poisson_gaussian_noise(y, generator, peak=p, sigma=sigma)
    return y.clamp(0, 1)


def jpeg(x: Tensor, generator=None, quality=30.0) -> Tensor:
    """JPEG compression at ``quality`` (1-100) with kornia's differentiable codec."""
    import kornia

    q = _param(quality, x).clamp(1, 100)
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    y = kornia.enhance.jpeg_codec_differentiable(xp.clamp(0, 1), q)
    return y[..., :h, :w].clamp(0, 1)


def bit_depth(x: Tensor, generator=None, bits=4.0) -> Tensor:
    """Quantise to ``bits`` bits per channel."""
    levels = _b(2 ** _param(bits, x).round() - 1)
    return (torch.round(x.clamp(0, 1) * levels) / levels).clamp(0, 1)


def brightness(x: Tensor, generator=None, factor=0.5) -> Tensor:
    """Multiply by ``factor`` (a trivial, deterministic degradation; handy in tests)."""
    return (x * _b(_param(factor, x))).clamp(0, 1)


# name -> (function, default parameters, physical stage)
OPS: dict[str, tuple[Callable, dict[str, Any], int]] = {
    "haze": (haze, {"beta": [0.6, 1.6], "airlight": [0.75, 0.95]}, 0),
    "rain": (rain, {"density": [0.002, 0.008], "length": [10.0, 24.0], "angle": [-20.0, 20.0],
                    "width": [0.4, 0.9], "intensity": [0.5, 0.9]}, 1),
    "snow": (snow, {"density": [0.002, 0.008], "size": [0.8, 2.0], "intensity": [0.7, 1.0],
                    "angle": [-25.0, 25.0], "length": [1.0, 6.0], "veil": [0.0, 0.15]}, 1),
    "defocus_blur": (defocus_blur, {"radius": [1.0, 3.5]}, 2),
    "motion_blur": (motion_blur, {"length": [5.0, 15.0], "angle": [0.0, 180.0]}, 2),
    "gaussian_blur": (gaussian_blur, {"sigma": [1.0, 3.0], "kernel_radius": [3.0, 11.0]}, 2),
    "bicubic_down_up": (bicubic_down_up, {"scale": 4.0}, 2),
    "brightness": (brightness, {"factor": [0.3, 0.9]}, 3),
    "low_light": (low_light, {"gamma": [1.2, 2.0], "gain": [0.15, 0.45], "peak": [100.0, 400.0],
                              "sigma": [1.0, 3.0]}, 3),
    "poisson_gaussian_noise": (poisson_gaussian_noise, {"peak": [20.0, 200.0], "sigma": [1.0, 10.0]}, 4),
    "gaussian_noise": (gaussian_noise, {"sigma": [5.0, 50.0]}, 4),
    "bit_depth": (bit_depth, {"bits": 4.0}, 5),
    "jpeg": (jpeg, {"quality": [10.0, 50.0]}, 6),
}


class Degradation:
    """One operation with fixed values or ``[lo, hi]`` ranges; ``deg(x, generator)``."""

    def __init__(self, type: str, **params):
        if type not in OPS:
            raise ValueError(f"unknown degradation type {type!r}; known: {', '.join(OPS)}")
        fn, defaults, stage = OPS[type]
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"degradation {type!r} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(defaults)}")
        self.type, self.fn, self.stage = type, fn, stage
        self.params = {**defaults, **{k: _plain(v) for k, v in params.items()}}

    def sample(self, x: Tensor, generator=None) -> dict[str, Tensor]:
        b = x.shape[0]
        out = {}
        for k in sorted(self.params):
            v = self.params[k]
            if isinstance(v, (list, tuple)):
                lo, hi = float(v[0]), float(v[1])
                out[k] = lo + (hi - lo) * _rand((b,), generator, x)
            else:
                out[k] = _param(float(v), x)
        return out

    def __call__(self, x: Tensor, generator=None) -> Tensor:
        return self.fn(x, generator, **self.sample(x, generator))

    def __repr__(self):
        return f"Degradation({self.type!r}, {self.params})"


class Composite:
    """Several degradations applied in physical order (stable for equal stages)."""

    def __init__(self, parts: Sequence[Degradation]):
        self.parts = sorted(parts, key=lambda d: d.stage)

    def __call__(self, x: Tensor, generator=None) -> Tensor:
        for d in self.parts:
            x = d(x, generator)
        return x

    def __repr__(self):
        return f"Composite({self.parts})"


def _plain(v):
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(v, (DictConfig, ListConfig)):
            return OmegaConf.to_container(v, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return v


def build(spec) -> Composite:
    """A spec dict, a list of spec dicts, a Degradation or a Composite -> Composite."""
    spec = _plain(spec)
    if isinstance(spec, Composite):
        return spec
    if isinstance(spec, Degradation):
        return Composite([spec])
    if isinstance(spec, Mapping):
        spec = [spec]
    parts = []
    for s in spec:
        if isinstance(s, Degradation):
            parts.append(s)
            continue
        s = dict(s)
        if "type" not in s:
            raise ValueError(f"degradation spec {s} has no 'type'")
        parts.append(Degradation(s.pop("type"), **s))
    return Composite(parts)


_CDD_PARTS = {
    "low": {"type": "low_light"},
    "haze": {"type": "haze"},
    "rain": {"type": "rain"},
    "snow": {"type": "snow"},
}

RECIPES: dict[str, list[dict]] = {
    "denoise_15": [{"type": "gaussian_noise", "sigma": 15.0}],
    "denoise_25": [{"type": "gaussian_noise", "sigma": 25.0}],
    "denoise_50": [{"type": "gaussian_noise", "sigma": 50.0}],
    "denoise": [{"type": "gaussian_noise", "sigma": [0.0, 50.0]}],
    "derain": [{"type": "rain"}],
    "dehaze": [{"type": "haze"}],
    "desnow": [{"type": "snow"}],
    "deblur": [{"type": "motion_blur"}],
    "defocus": [{"type": "defocus_blur"}],
    "lowlight": [{"type": "low_light"}],
    "poisson": [{"type": "poisson_gaussian_noise"}],
    "dejpeg": [{"type": "jpeg"}],
    "bitdepth": [{"type": "bit_depth", "bits": 4.0}],
}
# the 11 CDD-11 categories as composites (applied in physical order: haze, rain/snow, low light)
for _name in ["low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain",
              "haze_snow", "low_haze_rain", "low_haze_snow"]:
    RECIPES[_name] = [dict(_CDD_PARTS[p]) for p in _name.split("_")]


def get_recipe(name: str, overrides: Mapping | None = None) -> Composite:
    """The named recipe (``overrides`` first, then ``RECIPES``, then ``denoise_<sigma>``)."""
    overrides = _plain(overrides) or {}
    if name in overrides:
        return build(overrides[name])
    if name in RECIPES:
        return build(RECIPES[name])
    if name.startswith("denoise_"):
        try:
            sigma = float(name.split("_", 1)[1])
        except ValueError:
            sigma = None
        if sigma is not None:
            return build({"type": "gaussian_noise", "sigma": sigma})
    raise ValueError(f"no degradation recipe for task {name!r}: add it under dataset.recipes "
                     f"(known: {', '.join(sorted(RECIPES))}, denoise_<sigma>)")


def get_train_recipe(name: str, overrides: Mapping | None = None, noise_sigma_range=None) -> Composite:
    """The training recipe of task ``name``: with ``noise_sigma_range = [lo, hi]`` a ``denoise*`` task not in
    ``overrides`` draws sigma uniformly from [lo, hi] per image (blind denoising); else :func:`get_recipe`."""
    overrides = _plain(overrides) or {}
    if noise_sigma_range is not None and name.startswith("denoise") and name not in overrides:
        lo, hi = (float(v) for v in noise_sigma_range)
        if not 0 <= lo <= hi:
            raise ValueError(f"dataset.noise_sigma_range={[lo, hi]} must be [lo, hi] with 0 <= lo <= hi")
        return build({"type": "gaussian_noise", "sigma": [lo, hi]})
    return get_recipe(name, overrides)


def degrade_batch(x: Tensor, task: Tensor, recipes: Sequence[Callable], generator=None) -> Tensor:
    """Apply ``recipes[task[b]]`` to image ``b`` (groups images by task, in increasing task order)."""
    out = torch.empty_like(x)
    for t in torch.unique(task).tolist():
        idx = (task == t).nonzero(as_tuple=True)[0]
        out[idx] = recipes[int(t)](x[idx], generator)
    return out


def region_mix(x: Tensor, recipes: Sequence[Callable], generator=None, boxes: int = 2,
               min_frac: float = 0.25, max_frac: float = 0.6) -> tuple[Tensor, Tensor]:
    """Different degradations in different regions of each image (CutMix-style).

    Every recipe degrades the whole image; a label map starts as one random label per image and
    ``boxes`` random rectangles (sides ``min_frac``-``max_frac`` of the image) are painted with random
    labels; each pixel takes the output of its label's recipe. Returns ``(mixed [B,3,H,W],
    label_map [B,H,W] long)`` with ``label_map`` indexing ``recipes``.
    """
    b, c, h, w = x.shape
    k = len(recipes)
    outs = torch.stack([r(x, generator) for r in recipes], dim=1)  # [B,K,C,H,W]
    dev = x.device
    label = torch.randint(k, (b,), generator=generator, device=dev).view(b, 1, 1).expand(b, h, w).clone()
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    for _ in range(boxes):
        r = torch.rand((b, 4), generator=generator, device=dev)
        bh = ((min_frac + (max_frac - min_frac) * r[:, 0]) * h).long().clamp(min=1)
        bw = ((min_frac + (max_frac - min_frac) * r[:, 1]) * w).long().clamp(min=1)
        y0 = (r[:, 2] * (h - bh + 1).float()).long()
        x0 = (r[:, 3] * (w - bw + 1).float()).long()
        lab = torch.randint(k, (b,), generator=generator, device=dev)
        inside = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + bh).view(b, 1, 1))
                  & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + bw).view(b, 1, 1)))
        label = torch.where(inside, lab.view(b, 1, 1), label)
    idx = label.view(b, 1, 1, h, w).expand(b, 1, c, h, w)
    mixed = outs.gather(1, idx).squeeze(1)
    return mixed, label

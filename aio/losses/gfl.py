r"""Guided Frequency Loss (GFL), after Benjdira, Ali & Koubaa, "Guided Frequency Loss for Image
Restoration" (arXiv 2309.15563).

The paper's GFL aggregates three components that work in parallel: a Charbonnier (spatial) component, a
Laplacian-pyramid component and a *gradual frequency* component whose frequency band widens during
training, so the network learns low frequencies first and high frequencies progressively (countering
spectral bias). This module implements that idea with the following explicit formulation (our own; the
paper's exact code is not reproduced):

* spatial term     ``l_pix  = mean sqrt((p - t)^2 + eps^2)``  (Charbonnier, eps = 1e-3)
* Laplacian term   ``l_lap  = 1/L sum_l mean sqrt((Lap_l(p) - Lap_l(t))^2 + eps^2)`` with a ``levels``-level
  Laplacian pyramid (5x5 Gaussian, sigma 1, replicate border, 2x decimation): spatial band-pass images.
* frequency term   ``l_freq = sum_k w_k l_k``. Let ``P, T`` be the orthonormal 2-D FFTs (``rfft2``) of
  each channel and ``r`` the radial frequency normalised so that the spectrum corner is 1. The current
  passband ``[0, r_max(s)]`` grows linearly with the training step ``s`` from ``start_radius`` to
  ``end_radius`` over ``ramp_steps`` steps (the gradual part). It is split into ``bands`` equal-width
  annuli ``B_k`` (band-pass masks); ``l_k`` is the Charbonnier distance ``sqrt(|P - T|^2 + eps^2)``
  averaged over the bins of ``B_k``. The band weights are adaptive, ``w_k = sg(l_k) / sum_j sg(l_j)``
  (``sg`` = stop-gradient): the bands with the largest current error get the most weight, and the
  weights sum to 1.
* total            ``L = l_pix + lambda_lap a_lap l_lap + lambda_freq a_freq l_freq`` where, with
  ``adaptive: true``, ``a_x = clamp(sg(l_pix / l_x), 1e-2, 1e2)`` rescales each frequency-domain term to
  the magnitude of the spatial term (so ``lambda`` is a relative weight and no component dominates
  whatever the image statistics); with ``adaptive: false`` ``a_x = 1``.

Reported terms (each the weighted contribution to ``L``): ``l_pix``, ``l_lap``, ``l_freq``.

The training step is counted internally (one per forward call in training mode with grad enabled, stored
in the ``step`` buffer); a trainer may instead call ``set_progress(fraction)``. ``current_radius`` gives the
passband edge in use. Everything is computed in fp32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from aio.losses.pixel import _fp32, charbonnier


def _gauss_kernel(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


class GuidedFrequencyLoss(nn.Module):
    random_init = False

    def __init__(self, eps: float = 1e-3, lap_weight: float = 1.0, freq_weight: float = 1.0,
                 levels: int = 3, bands: int = 4, start_radius: float = 0.25, end_radius: float = 1.0,
                 ramp_steps: int = 10000, adaptive: bool = True, weight: float = 1.0):
        super().__init__()
        if not 0 < start_radius <= end_radius <= 1:
            raise ValueError("loss: need 0 < start_radius <= end_radius <= 1 (1 = spectrum corner)")
        if bands < 1 or levels < 1:
            raise ValueError("loss: bands and levels must be >= 1")
        self.eps = float(eps)
        self.lap_weight = float(lap_weight)
        self.freq_weight = float(freq_weight)
        self.levels = int(levels)
        self.bands = int(bands)
        self.start_radius = float(start_radius)
        self.end_radius = float(end_radius)
        self.ramp_steps = int(ramp_steps)
        self.adaptive = bool(adaptive)
        self.weight = float(weight)
        self._progress: float | None = None
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("kernel", _gauss_kernel().view(1, 1, 5, 5), persistent=False)

    # -- schedule ----------------------------------------------------------------------------------
    def set_progress(self, fraction: float | None) -> None:
        """Fix the training progress in [0, 1] (None: use the internal step counter)."""
        self._progress = None if fraction is None else min(max(float(fraction), 0.0), 1.0)

    @property
    def current_radius(self) -> float:
        if self._progress is not None:
            p = self._progress
        else:
            p = 1.0 if self.ramp_steps <= 0 else min(int(self.step) / self.ramp_steps, 1.0)
        return self.start_radius + (self.end_radius - self.start_radius) * p

    # -- components --------------------------------------------------------------------------------
    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.device).expand(c, 1, 5, 5)
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=c)

    def _laplacian_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for _ in range(self.levels):
            if min(x.shape[-2:]) < 4:
                break
            low = self._blur(x)
            down = low[..., ::2, ::2]
            up = torch.zeros_like(x)
            up[..., ::2, ::2] = down * 4
            out.append(x - self._blur(up))
            x = down
        return out

    def _lap_term(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lp, lt = self._laplacian_pyramid(pred), self._laplacian_pyramid(target)
        if not lp:
            return pred.new_zeros(())
        return sum(charbonnier(a, b, self.eps) for a, b in zip(lp, lt)) / len(lp)

    def _band_terms(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h, w = pred.shape[-2:]
        d = torch.fft.rfft2(pred, norm="ortho") - torch.fft.rfft2(target, norm="ortho")
        err = torch.sqrt(d.real**2 + d.imag**2 + self.eps**2)  # [B, C, H, W//2+1]
        fy = torch.fft.fftfreq(h, device=pred.device).abs()
        fx = torch.fft.rfftfreq(w, device=pred.device)
        r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / (0.5 * 2**0.5)  # corner = 1
        edges = torch.linspace(0.0, self.current_radius, self.bands + 1, device=pred.device).tolist()
        terms = []
        for k in range(self.bands):
            lo, hi = edges[k], edges[k + 1]
            mask = (r >= lo) & ((r < hi) if k < self.bands - 1 else (r <= hi + 1e-9))
            if mask.any():
                terms.append(err[..., mask].mean())
        if not terms:
            return err.mean().unsqueeze(0)
        return torch.stack(terms)

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        pred, target = _fp32(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            l_pix = charbonnier(pred, target, self.eps)
            l_lap = self._lap_term(pred, target)
            bands = self._band_terms(pred, target)
            w = bands.detach() / bands.detach().sum().clamp_min(1e-12)
            l_freq = (w * bands).sum()
            if self.adaptive:
                ref = l_pix.detach()
                a_lap = (ref / l_lap.detach().clamp_min(1e-12)).clamp(1e-2, 1e2)
                a_freq = (ref / l_freq.detach().clamp_min(1e-12)).clamp(1e-2, 1e2)
            else:
                a_lap = a_freq = 1.0
            t_pix = self.weight * l_pix
            t_lap = self.weight * self.lap_weight * a_lap * l_lap
            t_freq = self.weight * self.freq_weight * a_freq * l_freq
            total = t_pix + t_lap + t_freq
        if self.training and torch.is_grad_enabled() and self._progress is None:
            self.step += 1
        return total, {"l_pix": t_pix.detach(), "l_lap": t_lap.detach(), "l_freq": t_freq.detach()}

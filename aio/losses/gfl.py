r"""Guided Frequency Loss (GFL), Benjdira, Ali & Koubaa, "Guided Frequency Loss for Image Restoration"
(arXiv 2309.15563): :class:`GuidedFrequencyLoss` as published, and an earlier banded variant kept as the
named option ``loss=gfl_banded`` (:class:`BandedFrequencyLoss`).

**As published** (``loss=gfl``). One Charbonnier over the combined spatial, frequency and Laplacian
differences::

    L = mean( sqrt( (p - t)^2  +  |M_s(F p) - M_s(F t)|^2  +  (Lap p - Lap t)^2  +  eps^2 ) )

``F`` is the per-channel orthonormal 2-D FFT (``fft2``, unshifted) and ``|.|^2`` the squared modulus
(real^2 + imag^2); ``Lap x = x - G(up(down(G x)))`` is one Laplacian-pyramid level (5x5 Gaussian, sigma 1,
replicate border, 2x decimation, zero-insertion up-sampling x4); the mean runs over batch, channels and
pixels. ``M_s`` is the curriculum's band-pass mask over the FFT's *column* index ``k`` (the last axis):
it keeps ``k < start_frequency`` and ``k >= f(s)`` with ``f(s) = int(start + (end - start) * s)`` and
``s`` the training progress in [0, 1]. So at the start of training the whole spectrum is compared, and as
``s`` grows the band ``[start_frequency, f(s))`` is left out, until (``s = 1``) only the columns below
``start_frequency`` and from ``end_frequency`` on remain. This is what the public implementation that calls
itself the official one does (``gfl/losses/gradual_frequency_loss.py``, class ``GradualFrequencyLoss``,
defaults start 10, end 255, mask on the last axis, progress = epoch / num_epochs); we match it, including
the direction of the curriculum and the column-only mask, with one change: the progress is the trainer's
position in the phase (``in_phase_step / phase.steps``, set once per optimizer step through
:meth:`set_progress`) rather than an epoch count. The position is a persistent buffer (``progress``), so it
is saved with the checkpoint (the trainer stores the loss's buffers in ``last.pt``). Reported term:
``l_gfl``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from aio.losses.pixel import _fp32, charbonnier


def _gauss_kernel(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """A normalised ``size x size`` Gaussian."""
    ax = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


class BandedFrequencyLoss(nn.Module):
    """The earlier GFL variant (``loss=gfl_banded``), kept as a named option. Our own formulation, not the
    published one:

    Guided Frequency Loss (GFL), after Benjdira, Ali & Koubaa, "Guided Frequency Loss for Image
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


class GuidedFrequencyLoss(nn.Module):
    """GFL as published (module docstring): one Charbonnier over spatial + curriculum-masked FFT + Laplacian
    differences; ``set_progress(s)`` moves the curriculum (the trainer calls it once per optimizer step)."""

    random_init = False

    def __init__(self, start_frequency: int = 10, end_frequency: int = 255, eps: float = 1e-3,
                 kernel_size: int = 5, sigma: float = 1.0, weight: float = 1.0):
        super().__init__()
        if not 0 <= start_frequency <= end_frequency:
            raise ValueError(f"loss: need 0 <= start_frequency={start_frequency} <= end_frequency={end_frequency}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"loss: kernel_size={kernel_size} must be odd and >= 1")
        self.start_frequency = int(start_frequency)
        self.end_frequency = int(end_frequency)
        self.eps = float(eps)
        self.weight = float(weight)
        self.register_buffer("progress", torch.zeros((), dtype=torch.float64))  # the curriculum position
        self.register_buffer("kernel", _gauss_kernel(kernel_size, sigma)[None, None], persistent=False)

    def set_progress(self, fraction: float) -> None:
        """Put the curriculum at ``fraction`` of the way (clamped to [0, 1])."""
        self.progress.fill_(min(max(float(fraction), 0.0), 1.0))

    @property
    def current_end(self) -> int:
        """``f(s)``: the first FFT column kept above the masked band."""
        s = float(self.progress)
        return int(self.start_frequency + (self.end_frequency - self.start_frequency) * s)

    def _gauss(self, x: torch.Tensor) -> torch.Tensor:
        c, k = x.shape[1], self.kernel.shape[-1]
        pad = k // 2
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), self.kernel.expand(c, 1, k, k), groups=c)

    def _laplacian(self, x: torch.Tensor) -> torch.Tensor:
        low = self._gauss(x)
        up = torch.zeros_like(low)
        up[..., ::2, ::2] = low[..., ::2, ::2] * 4
        return x - self._gauss(up)

    def _masked_fft(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.fft.fft2(x, norm="ortho")
        cols = torch.arange(x.shape[-1], device=x.device)
        keep = (cols < self.start_frequency) | (cols >= self.current_end)
        return f * keep.to(f.real.dtype)

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        pred, target = _fp32(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            spatial = pred - target
            freq = self._masked_fft(pred) - self._masked_fft(target)
            lap = self._laplacian(pred) - self._laplacian(target)
            combined = spatial**2 + freq.real**2 + freq.imag**2 + lap**2 + self.eps**2
            total = self.weight * torch.sqrt(combined).mean()
        return total, {"l_gfl": total.detach()}

"""AirNet (Li et al., "All-In-One Image Restoration for Unknown Corruption", CVPR 2022).

Parameter names, shapes and maths follow the official XLearning-SCU/2022-CVPR-AirNet (``net/model.py``,
``encoder.py``, ``moco.py``, ``DGRN.py``, ``deform_conv.py``), so official checkpoints (e.g. ``All.pth``)
load with ``strict=True``:

- ``E`` (CBDE): a MoCo contrastive degradation encoder — query and momentum key ResEncoders (``E.E.encoder_q``
  / ``encoder_k``), a queue of ``queue_size`` negative keys (official: 256 x batch size, 1280 for the
  five-task model); its first ResBlock's feature map ``inter`` is the degradation representation.
- ``R`` (DGRN): 5 groups x 5 blocks of two DGMs (deformable conv + SFT, both guided by ``inter``) and convs.

Forward: eval = ``R(x, E_q(x))`` (no global residual, as the official code). In training the key view is
encoded by the momentum encoder, the queue is updated and the contrastive logits are kept for
:meth:`AirNet.aux_losses` (``l_contrast = contrast_weight * CE(logits, 0)``, 0.1 in the official joint stage).
The official loader feeds a second random crop of the same degraded image as the key; aio's trainer has one
input, so without ``x_key`` the key is a random flip / 90° rotation of the query (same degradation, other
layout). Differences from the official code: the queue write wraps around when the batch does not divide
``queue_size`` (the official code asserts), and the DDP batch shuffle is not done (BatchNorm statistics stay
per process).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aio.models.base import RestorationModel
from aio.models.blocks.deform import DeformConv
from aio.models.registry import register_model


def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    """The official ``default_conv``: same padding, with bias."""
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=True)


# -- the degradation encoder (CBDE) ---------------------------------------------------------------------------
class ResBlock(nn.Module):
    """Conv-BN-LeakyReLU(0.1)-Conv-BN plus a 1x1-conv-BN shortcut, then LeakyReLU(0.1)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.1), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.backbone(x) + self.shortcut(x), 0.1)


class ResEncoder(nn.Module):
    """``inter = E_pre(x)`` (full resolution), ``fea = pool(E(inter))``, ``out = mlp(fea)``."""

    def __init__(self, widths: Sequence[int] = (64, 128, 256)):
        super().__init__()
        w0, w1, w2 = widths
        self.E_pre = ResBlock(3, w0)
        self.E = nn.Sequential(ResBlock(w0, w1, stride=2), ResBlock(w1, w2, stride=2), nn.AdaptiveAvgPool2d(1))
        self.mlp = nn.Sequential(nn.Linear(w2, w2), nn.LeakyReLU(0.1), nn.Linear(w2, w2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inter = self.E_pre(x)
        fea = self.E(inter).flatten(1)
        return fea, self.mlp(fea), inter


class MoCo(nn.Module):
    """Query encoder, momentum key encoder (``m``), queue of normalised keys, temperature ``T``."""

    def __init__(self, widths: Sequence[int], queue_size: int, m: float = 0.999, T: float = 0.07):  # noqa: N803
        super().__init__()
        self.m, self.T = m, T
        self.encoder_q = ResEncoder(widths)
        self.encoder_k = ResEncoder(widths)
        self.encoder_k.load_state_dict(self.encoder_q.state_dict())
        self.encoder_k.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(widths[-1], queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            k.mul_(self.m).add_(q.detach(), alpha=1.0 - self.m)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[1]
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, idx] = keys.t().to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + keys.shape[0]) % size

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor | None = None):
        """``(inter, logits)``: logits ``[B, 1 + queue]`` (positive first) in training with a key, else None."""
        _, q, inter = self.encoder_q(x_query)
        if not self.training or x_key is None:
            return inter, None
        q = F.normalize(q, dim=1)
        with torch.no_grad():
            self._momentum_update()
            k = F.normalize(self.encoder_k(x_key)[1], dim=1)
        l_pos = (q * k.to(q.dtype)).sum(1, keepdim=True)
        l_neg = q @ self.queue.clone().to(q.dtype)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        self._enqueue(k)
        return inter, logits


class CBDE(nn.Module):
    """The official wrapper: ``E`` is the MoCo module (keys ``E.E.*``)."""

    def __init__(self, widths: Sequence[int], queue_size: int):
        super().__init__()
        self.E = MoCo(widths, queue_size)

    def forward(self, x_query: torch.Tensor, x_key: torch.Tensor | None = None):
        return self.E(x_query, x_key)


# -- the degradation-guided restoration network (DGRN) ----------------------------------------------------------
class SFT(nn.Module):
    """Spatial feature transform: ``x * gamma(inter) + beta(inter)`` (two 1x1 convs each, no bias)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_gamma = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.LeakyReLU(0.1),
                                        nn.Conv2d(c_out, c_out, 1, bias=False))
        self.conv_beta = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.LeakyReLU(0.1),
                                       nn.Conv2d(c_out, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        return x * self.conv_gamma(inter) + self.conv_beta(inter)


class DGM(nn.Module):
    """Degradation-guided module: ``x + dcn(x, inter) + sft(x, inter)``."""

    def __init__(self, c: int, k: int = 3):
        super().__init__()
        self.dcn = DeformConv(c, c, k, padding=(k - 1) // 2, bias=False)
        self.sft = SFT(c, c)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        return x + self.dcn(x, inter) + self.sft(x, inter)


class DGB(nn.Module):
    """``conv2(lrelu(dgm2(lrelu(conv1(lrelu(dgm1(x))))))) + x``."""

    def __init__(self, c: int, k: int = 3):
        super().__init__()
        self.dgm1, self.dgm2 = DGM(c, k), DGM(c, k)
        self.conv1, self.conv2 = _conv(c, c, k), _conv(c, c, k)

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.dgm1(x, inter), 0.1)
        out = F.leaky_relu(self.conv1(out), 0.1)
        out = F.leaky_relu(self.dgm2(out, inter), 0.1)
        return self.conv2(out) + x


class DGG(nn.Module):
    """``n_blocks`` DGBs and a conv in ``body``, with a group residual."""

    def __init__(self, c: int, k: int, n_blocks: int):
        super().__init__()
        self.body = nn.Sequential(*[DGB(c, k) for _ in range(n_blocks)], _conv(c, c, k))

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        res = x
        for block in self.body[:-1]:
            res = block(res, inter)
        return self.body[-1](res) + x


class DGRN(nn.Module):
    """``head`` conv, ``n_groups`` DGGs + a conv with a long residual, ``tail`` conv to 3 channels."""

    def __init__(self, n_feats: int = 64, n_groups: int = 5, n_blocks: int = 5, k: int = 3, channels: int = 3):
        super().__init__()
        self.head = nn.Sequential(_conv(channels, n_feats, k))
        self.body = nn.Sequential(*[DGG(n_feats, k, n_blocks) for _ in range(n_groups)], _conv(n_feats, n_feats, k))
        self.tail = nn.Sequential(_conv(n_feats, channels, k))

    def forward(self, x: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        res = x
        for group in self.body[:-1]:
            res = group(res, inter)
        return self.tail(self.body[-1](res) + x)


@register_model("airnet")
class AirNet(RestorationModel):
    """AirNet with the official layout (module docstring). ``encoder_widths[0]`` must equal ``n_feats`` (the
    encoder's first feature map guides the DGMs)."""

    pad_multiple = 1  # fully convolutional at stride 1 (the encoder pools)

    def __init__(self, n_feats: int = 64, n_groups: int = 5, n_blocks: int = 5, kernel_size: int = 3,
                 encoder_widths: Sequence[int] = (64, 128, 256), queue_size: int = 1280,
                 contrast_weight: float = 0.1):
        super().__init__()
        if encoder_widths[0] != n_feats:
            raise ValueError(f"model.encoder_widths[0]={encoder_widths[0]} must equal model.n_feats={n_feats}")
        self.contrast_weight = float(contrast_weight)
        self.R = DGRN(n_feats, n_groups, n_blocks, kernel_size)
        self.E = CBDE(tuple(encoder_widths), queue_size)
        self._logits: torch.Tensor | None = None

    def __getstate__(self):  # deepcopy/pickle (EMA copies) must not carry the autograd graph
        state = super().__getstate__()
        state["_logits"] = None
        return state

    @staticmethod
    def key_view(x: torch.Tensor) -> torch.Tensor:
        """A random flip / rotation of each image (90° steps when square, else 0° / 180°): a second view with
        the same degradation and the same shape."""
        square = x.shape[-1] == x.shape[-2]
        views = []
        for img in x:
            img = torch.rot90(img, int(torch.randint(4, ())) if square else 2 * int(torch.randint(2, ())), (1, 2))
            views.append(img.flip(-1) if torch.rand(()) < 0.5 else img)
        return torch.stack(views)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None, x_key: torch.Tensor | None = None):
        if self.training:
            inter, self._logits = self.E(x, self.key_view(x) if x_key is None else x_key)
        else:
            inter, self._logits = self.E(x)
        return self.R(x, inter)

    def aux_losses(self, task: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``{"l_contrast": contrast_weight * CE(logits, positive)}`` after a training forward, else ``{}``."""
        if self._logits is None or self.contrast_weight <= 0:
            return {}
        labels = torch.zeros(self._logits.shape[0], dtype=torch.long, device=self._logits.device)
        return {"l_contrast": self.contrast_weight * F.cross_entropy(self._logits.float(), labels)}

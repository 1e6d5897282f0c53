"""DSRIR (Wang et al., "Dynamic spatial refinement learning for progressive all-in-one image restoration",
IPM 2025): three progressive subnets, each ending in a pixel-wise refine unit (PRU) and an
uncertainty-supervised attention unit (USAU) that emits a restored image and a variance map.

* subnet 1: a 3-level U-Net of patch attention blocks (patch grids 8/4/2), 32 channels (+32 per level);
* subnet 2: a 2-level U-Net (grids 4/2), 48 channels (+16);
* subnet 3: four patch attention groups at full resolution (grids 8/4/2/1 inside each), 64 channels.

One 3x3 conv embeds the image into 32 + 48 + 64 channels, split between the subnets; subnets 2 and 3 get
the gated features of the previous stage concatenated with their own split (``channel_comp`` 1x1 convs).
Parameter names and shapes are those of the reference ``DSRIR()`` (xfwang23/DSRIR ``model/DSRIR.py``:
316 tensors, 3,516,837 parameters), so its checkpoints load with ``strict=True``.

Output: :class:`~aio.models.output.ModelOutput` with ``restored`` = the stage-3 (final) image, which
evaluation and restoration use, and ``extras``:

* ``restored2``, ``restored1``: the images restored by subnets 2 and 1;
* ``var3``, ``var2``, ``var1``: the variance maps of stages 3, 2, 1 (``[B, 3, H, W]``, the log-variance
  ``s`` of the uncertainty loss ``|exp(-s) (y - x)| + 2 s``).

The reference returns ``[img3, img2, img1], [var3, var2, var1]``. It has no padding (its test script crops
images to a multiple of 8); here the input is reflect-padded to a multiple of 8 (the patch grids need it)
and every output cropped back, so any size works. On a CPU the network runs channels_last (oneDNN's 3x3 convs,
forward and backward, are faster in it): the outputs are the reference's to ~1e-6 there (another summation
order), and bit-identical on CUDA for multiples of 8.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aio.models.base import RestorationModel, cpu_channels_last, crop_to
from aio.models.dsrir_blocks import PAG, PRU, USAU, DownSample, UpSample, conv, pab_stage
from aio.models.output import ModelOutput
from aio.models.registry import register_model

EXTRAS = ("restored2", "restored1", "var3", "var2", "var1")


class PABUNet(nn.Module):
    """A U-Net of PAB stages: level ``i`` (1-based) has ``width + (i - 1) * step`` channels, ``depths[i-1]``
    PABs on the patch grid ``grids[i-1]`` in its encoder and in its decoder; bilinear down/up-sampling with
    1x1 convs between levels; each skip passes through one more PAB (``skipatt<i>``) and is added."""

    def __init__(self, depths: Sequence[int], grids: Sequence[tuple[int, int]], width: int, step: int,
                 kernel: int, reduction: int, bias: bool):
        super().__init__()
        if len(depths) != len(grids):
            raise ValueError(f"PABUNet: {len(depths)} depths but {len(grids)} patch grids")
        self.levels = len(depths)
        widths = [width + i * step for i in range(self.levels)]
        stage = dict(kernel=kernel, reduction=reduction, bias=bias)
        for i in range(self.levels):
            self.add_module(f"encoder{i + 1}", pab_stage(widths[i], depths[i], grid=grids[i], **stage))
        for i in reversed(range(self.levels)):
            self.add_module(f"decoder{i + 1}", pab_stage(widths[i], depths[i], grid=grids[i], **stage))
        for i in range(self.levels - 1):
            self.add_module(f"down{i + 1}", DownSample(widths[i], step))
        for i in range(self.levels - 1):
            self.add_module(f"up{i + 1}", UpSample(widths[i], step))
        for i in reversed(range(self.levels - 1)):
            self.add_module(f"skipatt{i + 1}", pab_stage(widths[i], 1, grid=grids[i], **stage)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(1, self.levels + 1):
            if i > 1:
                x = getattr(self, f"down{i - 1}")(x)
            x = getattr(self, f"encoder{i}")(x)
            skips.append(x)
        x = getattr(self, f"decoder{self.levels}")(x)
        for i in range(self.levels - 1, 0, -1):
            skip = getattr(self, f"skipatt{i}")(skips[i - 1])
            x = getattr(self, f"decoder{i}")(getattr(self, f"up{i}")(x) + skip)
        return x


class PAGChain(nn.Module):
    """Subnet 3: ``groups`` patch attention groups (``PAG1``, ``PAG2``, ...) in sequence."""

    def __init__(self, groups: int, grids, width: int, kernel: int, reduction: int, bias: bool):
        super().__init__()
        self.groups = groups
        for i in range(groups):
            self.add_module(f"PAG{i + 1}", PAG(width, kernel, reduction, bias, grids))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.groups):
            x = getattr(self, f"PAG{i + 1}")(x)
        return x


@register_model("dsrir")
class DSRIR(RestorationModel):
    """DSRIR; the defaults are the reference model (3.52 M parameters). ``sn1_blocks``/``sn2_blocks``/
    ``sn3_groups`` generalise the reference's fixed depths (2/2/2, 2/4, 4) so the tiny preset can shrink
    them. See the module docstring for the outputs."""

    has_unused_parameters = True  # usau_3.conv2 / usau_3.att_map exist in the reference but are unused
    pad_multiple = 8

    SN1_GRIDS = ((8, 8), (4, 4), (2, 2))
    SN2_GRIDS = ((4, 4), (2, 2))
    SN3_GRIDS = ((8, 8), (4, 4), (2, 2), (1, 1))

    def __init__(self, in_c: int = 3, out_c: int = 3, sn1_feats: int = 32, sn2_feats: int = 48,
                 sn3_feats: int = 64, feats_step1: int = 32, feats_step2: int = 16, kernel_size: int = 3,
                 reduction: int = 8, bias: bool = False, sn1_blocks: Sequence[int] = (2, 2, 2),
                 sn2_blocks: Sequence[int] = (2, 4), sn3_groups: int = 4):
        super().__init__()
        if len(sn1_blocks) != 3 or len(sn2_blocks) != 2:
            raise ValueError(f"model.sn1_blocks needs 3 depths and model.sn2_blocks 2 "
                             f"(got {list(sn1_blocks)} and {list(sn2_blocks)})")
        for name, c in (("sn1_feats", sn1_feats), ("sn2_feats", sn2_feats), ("sn3_feats", sn3_feats)):
            if c % reduction:
                raise ValueError(f"model.{name}={c} must be a multiple of model.reduction={reduction}")
        self.splits = [sn1_feats, sn2_feats, sn3_feats]
        k, r = kernel_size, reduction
        self.ebd = conv(in_c, sum(self.splits), k, bias)
        self.SN1 = PABUNet(sn1_blocks, self.SN1_GRIDS, sn1_feats, feats_step1, k, r, bias)
        self.PRU1 = PRU(sn1_feats, r)
        self.usau_1 = USAU(in_c, sn1_feats, out_c, 3, bias)
        self.channel_comp1 = conv(sn1_feats + sn2_feats, sn2_feats, 1, bias)
        self.SN2 = PABUNet(sn2_blocks, self.SN2_GRIDS, sn2_feats, feats_step2, k, r, bias)
        self.PRU2 = PRU(sn2_feats, r)
        self.usau_2 = USAU(in_c, sn2_feats, out_c, 3, bias)
        self.channel_comp2 = conv(sn2_feats + sn3_feats, sn3_feats, 1, bias)
        self.SN3 = PAGChain(sn3_groups, self.SN3_GRIDS, sn3_feats, k, r, bias)
        self.PRU3 = PRU(sn3_feats, r)
        self.usau_3 = USAU(in_c, sn3_feats, out_c, 3, bias)

    def stages(self, img: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The reference's forward on an already padded image: ``[img3, img2, img1], [var3, var2, var1]``."""
        f1, f2, f3 = torch.split(self.ebd(img), self.splits, dim=1)
        x, img1, var1 = self.usau_1(self.PRU1(self.SN1(f1)), img)
        x = self.channel_comp1(torch.cat([x, f2], dim=1))
        x, img2, var2 = self.usau_2(self.PRU2(self.SN2(x)), img)
        x = self.channel_comp2(torch.cat([x, f3], dim=1))
        _, img3, var3 = self.usau_3(self.PRU3(self.SN3(x)), img, last=True)
        return [img3, img2, img1], [var3, var2, var1]

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> ModelOutput:
        padded, size = self.pad(x)
        images, variances = self.stages(cpu_channels_last(padded))
        images = [crop_to(t, size) for t in images]
        variances = [crop_to(t, size) for t in variances]
        extras = dict(zip(EXTRAS, images[1:] + variances))
        return ModelOutput(restored=images[0], extras=extras)

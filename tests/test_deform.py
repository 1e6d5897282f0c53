"""The CPU deformable conv (gathers + GEMM) is torchvision's ``deform_conv2d``: outputs and all four gradients."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from aio.models.blocks.deform import DeformConv, deform_conv2d_cpu


@pytest.mark.parametrize("shape, k, scale", [((2, 5, 9, 7), 3, 3.0), ((1, 4, 6, 8), 1, 1.5), ((2, 3, 5, 5), 5, 0.3)])
def test_cpu_deform_conv_equals_torchvision_forward_and_backward(shape, k, scale):
    torch.manual_seed(0)
    b, c, h, w = shape
    pad = k // 2
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    # large offsets: many taps land outside the image or straddle its border
    offset = (torch.randn(b, 2 * k * k, h, w, dtype=torch.float64) * scale).requires_grad_()
    mask = torch.rand(b, k * k, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, c, k, k, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    inputs = (x, offset, mask, weight, bias)
    y_ref = deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask)
    g_ref = torch.autograd.grad(y_ref.square().sum(), inputs)
    y = deform_conv2d_cpu(x, offset, weight, bias, pad, mask)
    g = torch.autograd.grad(y.square().sum(), inputs)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for name, a, e in zip(("x", "offset", "mask", "weight", "bias"), g, g_ref):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=f"grad of {name}")


def test_deform_conv_module_runs_the_cpu_path_in_fp32_and_under_bf16_autocast():
    torch.manual_seed(0)
    conv = DeformConv(4, 4)
    torch.nn.init.normal_(conv.conv_offset_mask.weight, std=0.3)
    x, guide = torch.rand(2, 4, 6, 6), torch.rand(2, 4, 6, 6)
    out = conv.conv_offset_mask(torch.cat([x, guide], 1))
    expected = deform_conv2d(x, out[:, :18], conv.weight, None, padding=1, mask=torch.sigmoid(out[:, 18:]))
    torch.testing.assert_close(conv(x, guide), expected, rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.bfloat16(), guide.bfloat16())
    assert y.dtype == torch.bfloat16 and y.shape == x.shape

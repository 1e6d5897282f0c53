"""aio.data.degradations: shapes, ranges, reproducibility, physical order and region-wise mixing."""

from __future__ import annotations

import pytest
import torch

from aio.data import degradations as D


def _x(b=3, h=40, w=48, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


@pytest.mark.parametrize("kind", sorted(D.OPS))
def test_op_shape_range_reproducible(kind):
    x = _x()
    deg = D.Degradation(kind)
    y1 = deg(x, D.make_generator(7))
    y2 = deg(x, D.make_generator(7))
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert torch.isfinite(y1).all() and y1.min() >= 0 and y1.max() <= 1
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, x)


@pytest.mark.parametrize("kind", ["gaussian_noise", "poisson_gaussian_noise", "rain", "snow", "haze", "low_light"])
def test_random_ops_depend_on_seed(kind):
    x = _x()
    deg = D.Degradation(kind)
    assert not torch.equal(deg(x, D.make_generator(1)), deg(x, D.make_generator(2)))


@pytest.mark.parametrize("name", sorted(D.RECIPES) + ["denoise_35"])
def test_recipes(name):
    x = _x(b=2, h=32, w=32)
    y = D.get_recipe(name)(x, D.make_generator(0))
    assert y.shape == x.shape and torch.isfinite(y).all() and 0 <= y.min() and y.max() <= 1


def test_gaussian_sigma_in_8bit_units():
    x = torch.full((1, 3, 128, 128), 0.5)
    y = D.get_recipe("denoise_25")(x, D.make_generator(0))
    assert abs((y - x).std().item() - 25 / 255) < 0.005


def test_haze_model_and_extremes():
    x = _x(b=1)
    depth = torch.full((1, 1, 40, 48), 0.5)
    y = D.haze(x, None, beta=1.0, airlight=0.9, depth=depth)
    t = torch.exp(torch.tensor(-0.5))
    assert torch.allclose(y, x * t + 0.9 * (1 - t), atol=1e-6)
    assert torch.allclose(D.haze(x, D.make_generator(0), beta=0.0), x)


def test_rain_and_snow_brighten():
    x = _x(b=2)
    assert (D.rain(x, D.make_generator(0), density=0.01) >= x - 1e-6).all()
    assert (D.snow(x, D.make_generator(0), veil=0.0) >= x - 1e-6).all()


def test_blur_kernels_preserve_constant():
    x = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(D.motion_blur(x, None, length=torch.tensor([5.0, 11.0]), angle=torch.tensor([0.0, 45.0])), x, atol=1e-5)
    assert torch.allclose(D.defocus_blur(x, None, radius=torch.tensor([1.0, 3.0])), x, atol=1e-5)


def test_bit_depth_levels():
    y = D.bit_depth(_x(), None, bits=4)
    assert torch.unique((y * 15).round()).numel() <= 16
    assert torch.allclose(y * 15, (y * 15).round(), atol=1e-5)


def test_per_image_parameters():
    x = torch.full((2, 3, 16, 16), 0.5)
    y = D.gaussian_noise(x, D.make_generator(0), sigma=torch.tensor([0.0, 50.0]))
    assert torch.equal(y[0], x[0]) and not torch.equal(y[1], x[1])


def test_composite_physical_order():
    comp = D.build([{"type": "jpeg"}, {"type": "gaussian_noise"}, {"type": "low_light"}, {"type": "rain"},
                    {"type": "haze"}])
    assert [d.type for d in comp.parts] == ["haze", "rain", "low_light", "gaussian_noise", "jpeg"]
    assert [d.type for d in D.get_recipe("low_haze_snow").parts] == ["haze", "snow", "low_light"]


def test_spec_errors_and_overrides():
    with pytest.raises(ValueError, match="unknown degradation"):
        D.build({"type": "fog"})
    with pytest.raises(ValueError, match="no parameter"):
        D.build({"type": "haze", "bta": 1.0})
    with pytest.raises(ValueError, match="dataset.recipes"):
        D.get_recipe("deblobbing")
    r = D.get_recipe("derain", {"derain": [{"type": "bit_depth", "bits": 2}]})
    assert r.parts[0].type == "bit_depth"


def test_degrade_batch_groups_tasks():
    x = _x(b=4)
    recipes = [D.build({"type": "brightness", "factor": 0.5}), D.build({"type": "bit_depth", "bits": 2})]
    task = torch.tensor([1, 0, 1, 0])
    y = D.degrade_batch(x, task, recipes)
    assert torch.allclose(y[1], x[1] * 0.5) and torch.allclose(y[0], D.bit_depth(x[:1], None, bits=2)[0])


def test_region_mix_label_map_matches_regions():
    x = torch.rand(4, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    factors = [0.2, 0.5, 0.9]
    recipes = [D.build({"type": "brightness", "factor": f}) for f in factors]
    mixed, label = D.region_mix(x, recipes, D.make_generator(5), boxes=3)
    assert mixed.shape == x.shape and label.shape == (4, 40, 56) and label.dtype == torch.long
    expected = x * torch.tensor(factors)[label].unsqueeze(1)
    assert torch.allclose(mixed, expected, atol=1e-6)
    assert any(label[b].unique().numel() > 1 for b in range(4))  # regions really differ
    # each painted region is a rectangle: the label map is piecewise constant with few distinct values
    assert label.min() >= 0 and label.max() < 3
    m2, l2 = D.region_mix(x, recipes, D.make_generator(5), boxes=3)
    assert torch.equal(m2, mixed) and torch.equal(l2, label)

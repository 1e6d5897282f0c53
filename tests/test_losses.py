"""Losses: values on known inputs, gradients, reduction, term reporting, config files, VGG weights."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from aio.losses import LOSSES, PerceptualWeightsError, build_loss
from aio.paths import CONF_DIR

NAMES = ["l1", "charbonnier", "fft", "edge", "perceptual", "mixed", "gfl", "gfl_banded"]
MODEL_OUTPUT_LOSSES = ["dsrir", "abair"]  # take the whole ModelOutput: tested in their own files


def _cfg(name: str, **kw):
    cfg = OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml")
    if "perceptual" in cfg:
        cfg.perceptual.weights = "random"
    for k, v in kw.items():
        cfg[k] = v
    return cfg


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 48, 40, generator=g)
    p = (t + 0.1 * torch.randn(2, 3, 48, 40, generator=g)).clamp(0, 1)
    return p, t


def test_config_files_cover_registry():
    assert sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml")) == sorted(NAMES + MODEL_OUTPUT_LOSSES) == sorted(LOSSES)


@pytest.mark.parametrize("name", NAMES)
def test_identical_images_and_gradients(name, images):
    p, t = images
    loss = build_loss(_cfg(name))
    total, terms = loss(t.clone(), t)
    eps_floor = 1e-3 * (3 if name == "gfl_banded" else 1)  # Charbonnier terms equal eps at zero error
    assert 0 <= total.item() <= eps_floor + 1e-6
    pred = p.clone().requires_grad_(True)
    total, terms = loss(pred, t)
    assert total.ndim == 0 and torch.isfinite(total) and total.item() > eps_floor
    total.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert terms and all(v.ndim == 0 and not v.requires_grad for v in terms.values())
    assert set(terms) <= {"l_pix", "l_percep", "l_edge", "l_freq", "l_lap", "l_gfl"}
    assert math.isclose(sum(v.item() for v in terms.values()), total.item(), rel_tol=1e-5)


def test_known_values():
    p = torch.zeros(1, 3, 8, 8)
    t = torch.full((1, 3, 8, 8), 0.5)
    assert build_loss({"name": "l1"})(p, t)[0].item() == pytest.approx(0.5)
    assert build_loss({"name": "charbonnier"})(p, t)[0].item() == pytest.approx(math.sqrt(0.25 + 1e-6))
    # mean reduction: doubling the batch with the same content leaves the value unchanged
    a = build_loss({"name": "l1"})(torch.cat([p, p]), torch.cat([t, t]))[0]
    assert a.item() == pytest.approx(0.5)
    # FFT amplitude of a constant offset lives in the DC bin only: |dc| = 0.5 * sqrt(64) / n_bins
    l_freq = build_loss({"name": "fft"})(p, t)[0].item()
    assert l_freq == pytest.approx(0.5 * 8 / (8 * 5))
    # Sobel gradients of constant images are zero
    assert build_loss({"name": "edge"})(p, t)[0].item() == pytest.approx(0.0, abs=1e-7)


def test_fft_phase_and_pixel_terms(images):
    """Values against a direct numpy computation: amplitude L1 + 0.5 x wrapped phase L1, + 1.0 x pixel L1."""
    import numpy as np

    p, t = images
    total, terms = build_loss(_cfg("fft", weight=2.0, phase_weight=0.5, pixel_weight=1.0))(p, t)
    assert set(terms) == {"l_freq", "l_pix"}
    fp, ft = np.fft.rfft2(p.double().numpy(), norm="ortho"), np.fft.rfft2(t.double().numpy(), norm="ortho")
    dphi = np.angle(fp) - np.angle(ft)
    dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
    want_freq = 2.0 * (np.abs(np.abs(fp) - np.abs(ft)).mean() + 0.5 * np.abs(dphi).mean())
    want_pix = np.abs(p.double().numpy() - t.double().numpy()).mean()
    assert terms["l_freq"].item() == pytest.approx(want_freq, rel=1e-5)
    assert terms["l_pix"].item() == pytest.approx(want_pix, rel=1e-5)
    assert total.item() == pytest.approx(want_freq + want_pix, rel=1e-5)
    without_phase = build_loss(_cfg("fft", weight=2.0, phase_weight=0.0))(p, t)[0].item()
    assert without_phase == pytest.approx(2.0 * np.abs(np.abs(fp) - np.abs(ft)).mean(), rel=1e-5)


def test_edge_with_pixel_term_matches_a_direct_sobel(images):
    """L1 between normalised Sobel gradients (replicate border; sign conventions cancel in the L1) + pixel L1."""
    import torch.nn.functional as F

    p, t = images
    total, terms = build_loss(_cfg("edge", weight=0.5, pixel_weight=2.0))(p, t)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64) / 8
    k = torch.stack([kx, kx.T])[:, None]  # [2, 1, 3, 3]

    def grads(x):
        b, c, h, w = x.shape
        xp = F.pad(x.double().reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
        return F.conv2d(xp, k)

    want_edge = 0.5 * (grads(p) - grads(t)).abs().mean().item()
    want_pix = 2.0 * (p.double() - t.double()).abs().mean().item()
    assert terms["l_edge"].item() == pytest.approx(want_edge, rel=1e-5)
    assert terms["l_pix"].item() == pytest.approx(want_pix, rel=1e-5)
    assert total.item() == pytest.approx(want_edge + want_pix, rel=1e-5)


@pytest.mark.parametrize("name", ["l1", "charbonnier", "fft", "edge", "gfl"])
def test_bf16_autocast_matches_fp32(name, images):
    """Losses computed under bf16 autocast from bf16 predictions agree with fp32 (bf16 has ~3 digits)."""
    p, t = images
    loss = build_loss(_cfg(name))
    ref = loss(p, t)[0].item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(p.bfloat16(), t)[0]
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref, rel=2e-2)


def test_mixed_reports_each_term(images):
    p, t = images
    loss = build_loss(_cfg("mixed"))
    total, terms = loss(p, t)
    assert set(terms) == {"l_pix", "l_percep", "l_edge"}
    assert loss.random_init is True


def test_bf16_autocast_inputs(images):
    p, t = images
    for name in ("fft", "gfl", "gfl_banded", "mixed"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            total, _ = build_loss(_cfg(name))(p.bfloat16(), t.bfloat16())
        assert total.dtype == torch.float32 and torch.isfinite(total)


@pytest.mark.parametrize("name", ["perceptual", "mixed"])
def test_vgg_term_is_fp32_under_bf16_autocast(name, images):
    """The VGG term runs in fp32 inside bf16 autocast (``scale=demo``/``paper`` with ``trainer.amp=bf16``):
    the loss matches the fp32 computation on the same values, and its gradient is finite and fp32-close."""
    p, t = images
    loss = build_loss(_cfg(name))
    pb = p.bfloat16().float()  # the values a bf16 network would output
    ref_in = pb.clone().requires_grad_(True)
    ref = loss(ref_in, t)[0]
    ref.backward()
    x = pb.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(x.bfloat16(), t)[0]
    got.backward()
    assert got.dtype == torch.float32 and torch.isfinite(x.grad).all()
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    # the gradient passes back through the bf16 cast, so it carries bf16's ~3 digits
    assert torch.allclose(x.grad, ref_in.grad, rtol=1e-2, atol=1e-3 * ref_in.grad.abs().max().item())


def test_gfl_gradual_band_and_adaptive_weights(images):
    p, t = images
    loss = build_loss(_cfg("gfl_banded", ramp_steps=4, start_radius=0.25))
    loss.train()
    assert loss.current_radius == pytest.approx(0.25)
    radii = []
    for _ in range(5):
        pred = p.clone().requires_grad_(True)
        total, terms = loss(pred, t)
        total.backward()
        radii.append(loss.current_radius)
    assert radii[-1] == pytest.approx(1.0) and radii == sorted(radii)
    # adaptive rescaling: each frequency-domain term matches the spatial term (weights 1)
    assert terms["l_lap"].item() == pytest.approx(terms["l_pix"].item(), rel=1e-4)
    assert terms["l_freq"].item() == pytest.approx(terms["l_pix"].item(), rel=1e-4)
    loss.set_progress(0.0)
    assert loss.current_radius == pytest.approx(0.25)
    fixed = build_loss(_cfg("gfl_banded", adaptive=False))
    _, t2 = fixed(p, t)
    assert t2["l_freq"].item() != pytest.approx(t2["l_pix"].item(), rel=1e-3)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="choose from") as e:
        build_loss({"name": "nope"})
    assert "\n" not in str(e.value) and "gfl" in str(e.value)


def test_perceptual_missing_and_wrong_weights(tmp_path):
    with pytest.raises(PerceptualWeightsError, match=r"loss\.perceptual\.weights") as e:
        build_loss({"name": "perceptual"})
    assert "\n" not in str(e.value)
    with pytest.raises(PerceptualWeightsError, match=r"loss\.perceptual\.weights.*not found"):
        build_loss({"name": "perceptual", "perceptual": {"weights": str(tmp_path / "missing.pth")}})
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(PerceptualWeightsError, match=r"loss\.perceptual\.weights") as e:
        build_loss({"name": "mixed", "perceptual": {"weights": str(junk)}})
    assert "\n" not in str(e.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    with pytest.raises(PerceptualWeightsError, match=r"does not match"):
        build_loss({"name": "perceptual", "perceptual": {"weights": str(wrong)}})


def test_perceptual_loads_local_state_dict(tmp_path, images):
    layers = {"relu2_2": 1.0}
    ref = build_loss({"name": "perceptual", "perceptual": {"weights": "random", "layers": layers}})
    torch.manual_seed(1)
    sd = {f"features.{k}": torch.randn_like(v) for k, v in ref.vgg.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    loss = build_loss({"name": "perceptual", "perceptual": {"weights": str(path), "layers": layers}})
    assert loss.random_init is False and len(loss.vgg) == 9
    assert torch.equal(loss.vgg[0].weight, sd["features.0.weight"])
    assert all(not q.requires_grad for q in loss.vgg.parameters())
    p, t = images
    total, terms = loss(p, t)
    assert set(terms) == {"l_percep"} and total.item() > 0
    # a features-only file (keys "N.weight") works too
    torch.save({k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}, tmp_path / "f.pth")
    loss2 = build_loss({"name": "perceptual", "perceptual": {"weights": str(tmp_path / "f.pth"), "layers": layers}})
    assert loss2(p, t)[0].item() == pytest.approx(total.item())


def test_gfl_as_published_one_charbonnier_and_its_curriculum():
    """The published formula written out for one image: the masked FFT columns follow the curriculum."""
    g = torch.Generator().manual_seed(1)
    t = torch.rand(1, 3, 16, 24, generator=g)
    p = t + 0.05 * torch.randn(1, 3, 16, 24, generator=g)
    loss = build_loss(_cfg("gfl", start_frequency=4, end_frequency=20))
    kernel = loss.kernel[0, 0]

    def lap(x):
        blur = lambda z: torch.nn.functional.conv2d(torch.nn.functional.pad(z, (2, 2, 2, 2), mode="replicate"),
                                                    kernel.expand(3, 1, 5, 5), groups=3)
        low = blur(x)
        up = torch.zeros_like(low)
        up[..., ::2, ::2] = 4 * low[..., ::2, ::2]
        return x - blur(up)

    def by_hand(end):
        keep = torch.zeros(24)
        keep[:4] = 1
        keep[end:] = 1
        d = (torch.fft.fft2(p, norm="ortho") - torch.fft.fft2(t, norm="ortho")) * keep
        return torch.sqrt((p - t) ** 2 + d.abs() ** 2 + (lap(p) - lap(t)) ** 2 + 1e-6).mean()

    for s, end in ((0.0, 4), (0.5, 12), (1.0, 20)):
        loss.set_progress(s)
        assert loss.current_end == end
        total, terms = loss(p, t)
        assert total.item() == pytest.approx(by_hand(end).item(), rel=1e-6) and set(terms) == {"l_gfl"}
    full, _ = (loss.set_progress(0.0), loss(p, t))[1]
    loss.set_progress(1.0)
    assert loss(p, t)[0] < full  # later in the curriculum fewer frequencies count
    assert float(loss.state_dict()["progress"]) == 1.0  # the position is saved with the checkpoint

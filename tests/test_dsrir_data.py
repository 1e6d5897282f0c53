"""DSRIR data and scores: blind training noise, the 5,000-pair OTS draw, Urban100 in the checker, the presets,
and the ``dsrir`` metric protocol against scikit-image computed the reference's way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aio.data import build_train_dataset, build_val_sets, check_dataset
from aio.data.config import load_preset
from aio.data.fixtures import _img, make_aio_tree, save
from aio.data.layouts import crop_to_multiple, train_listing
from aio.eval import evaluate_sets
from aio.metrics.protocols import get_protocol, skimage_psnr, skimage_ssim


def _noise_sigma(item) -> float:
    return float((item["input"] - item["target"]).std()) * 255


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = make_aio_tree(tmp_path_factory.mktemp("dsrir-data") / "aio", size=(45, 61))
    rng = np.random.default_rng(3)
    for i in range(3):
        save(root / f"test/denoise/urban100/img_{i:03d}.png", _img(rng, 45, 61))
    grey = root / "grey"
    for i in range(2):
        save(grey / f"g{i}.png", np.full((96, 96, 3), 128, np.uint8))
    return root


def test_blind_training_noise_and_fixed_test_noise(tree):
    cfg = load_preset("synthetic_dsrir_aio3", {"root": str(tree / "grey"), "patch_size": 32, "epoch_size": 24,
                                               "val": {"crops_per_task": 2, "crop_size": 32, "holdout": 0.34}})
    ds = build_train_dataset(cfg)
    denoise = [i for i in range(len(ds)) if ds.task_names[ds.task_of(i)].startswith("denoise")]
    sigmas = [_noise_sigma(ds.get_item(i)) for i in denoise]
    assert len(sigmas) == 72 and min(sigmas) < 10 and max(sigmas) > 40 and max(sigmas) < 57
    val = build_val_sets(cfg)
    assert _noise_sigma(val["denoise_50"][0]) == pytest.approx(50, rel=0.1)
    assert _noise_sigma(val["denoise_15"][1]) == pytest.approx(15, rel=0.1)
    assert val["derain"].protocol["test_y_channel"] and not val["dehaze"].protocol["test_y_channel"]
    assert ds.counts == [24, 24, 24, 72, 72]  # the three blind denoise tasks balance derain x3 and dehaze x3
    fixed = build_train_dataset(load_preset("synthetic_dsrir_aio3", {"root": str(tree / "grey"), "patch_size": 32,
                                                                     "epoch_size": 24, "noise_sigma_range": None}))
    assert _noise_sigma(fixed.get_item(48)) == pytest.approx(50, rel=0.1)  # denoise_50 keeps its own sigma


def test_sample_pairs_keeps_one_input_per_drawn_target(tree):
    cfg = load_preset("dsrir_aio3", {"root": str(tree), "sample_pairs": {"dehaze": 1}, "cache": False})
    full = load_preset("dsrir_aio3", {"root": str(tree), "cache": False})
    full.sample_pairs = {}
    all_pairs = train_listing(full, "dehaze").samples
    assert len(all_pairs) == 3 and len({s.target for s in all_pairs}) == 2
    drawn = train_listing(cfg, "dehaze").samples
    assert len(drawn) == 1 and drawn[0] in all_pairs
    assert train_listing(cfg, "dehaze").samples == drawn  # seeded: the same draw every time
    two = train_listing(load_preset("dsrir_aio3", {"root": str(tree), "sample_pairs": {"dehaze": 2},
                                                   "cache": False}), "dehaze").samples
    assert len({s.target for s in two}) == 2
    many = train_listing(load_preset("dsrir_aio3", {"root": str(tree), "sample_pairs": {"dehaze": 5000},
                                                    "cache": False}), "dehaze")
    assert len(many.samples) == 2 and any(p.kind == "fewer targets than sampled" for p in many.problems)


def test_checker_reports_urban100_and_published_counts(tree):
    cfg = load_preset("dsrir_aio3", {"root": str(tree), "cache": False})
    report = check_dataset(cfg)
    text = report.render()
    assert report.ok, text
    rows = {r.name: r for r in report.rows if r.split == "test"}
    assert {"Urban100_s15", "Urban100_s25", "Urban100_s50", "BSD68_s15", "Rain100L", "SOTS"} <= set(rows)
    assert rows["Urban100_s25"].count == 3
    assert "3 images, the published Urban100_s15 has 100" in text  # one warning per folder
    assert "dehaze" in {r.task for r in report.rows if r.split == "train"}


def test_dsrir_test_sets_use_the_protocol_and_crop_to_a_multiple_of_8(tree):
    cfg = load_preset("dsrir_aio3", {"root": str(tree), "cache": False})
    sets = build_val_sets(cfg)
    assert set(sets) == {"BSD68_s15", "BSD68_s25", "BSD68_s50", "Urban100_s15", "Urban100_s25", "Urban100_s50",
                         "Rain100L", "SOTS"}
    assert sets["Rain100L"].protocol == {"name": "dsrir", "crop_border": 0, "test_y_channel": True,
                                         "image_multiple": 8}
    assert not sets["SOTS"].protocol["test_y_channel"]
    item = sets["Urban100_s50"][0]
    assert item["target"].shape == (3, 40, 56) and item["input"].shape == (3, 40, 56)
    full = torch.arange(45 * 61.0).view(1, 45, 61)
    assert torch.equal(crop_to_multiple(full, 8), full[:, 2:42, 2:58])  # the reference's crop_img(base=8)


def _ref_rgb2y(a: np.ndarray) -> np.ndarray:
    """BasicSR's float rgb2ycbcr(y_only=True) as the reference imports it (float32 in, float32 out)."""
    return ((a @ np.array([65.481, 128.553, 24.966]) + 16.0) / 255.0).astype(np.float32)


@pytest.mark.parametrize("y_channel", [False, True], ids=["rgb", "y"])
def test_protocol_matches_skimage_the_reference_way(y_channel):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 24, 32, generator=g)
    restored = clean + 0.08 * torch.randn(2, 3, 24, 32, generator=g)  # unclipped, as a network's output
    ours_p = skimage_psnr(restored, clean, test_y_channel=y_channel)
    ours_s = skimage_ssim(restored, clean, test_y_channel=y_channel)
    for b in range(2):
        re = np.clip(restored[b].numpy(), 0, 1).transpose(1, 2, 0)
        cl = np.clip(clean[b].numpy(), 0, 1).transpose(1, 2, 0)
        if y_channel:
            re, cl = _ref_rgb2y(re), _ref_rgb2y(cl)
        assert ours_p[b].item() == pytest.approx(peak_signal_noise_ratio(cl, re, data_range=1), abs=1e-4)
        assert ours_s[b].item() == pytest.approx(structural_similarity(cl, re, data_range=1, channel_axis=-1),
                                                 abs=1e-5)


class _Identity(torch.nn.Module):
    def forward(self, x, task=None):
        return x


def test_evaluation_scores_sets_with_their_protocol(tree):
    cfg = load_preset("dsrir_aio3", {"root": str(tree), "cache": False})
    sets = build_val_sets(cfg)
    result = evaluate_sets(_Identity(), {k: sets[k] for k in ("Rain100L", "SOTS")})
    for name in ("Rain100L", "SOTS"):
        ds, proto = sets[name], sets[name].protocol
        item = ds[0]
        p = [skimage_psnr(ds[i]["input"], ds[i]["target"], **proto).item() for i in range(len(ds))]
        assert result.per_set[name]["psnr"] == pytest.approx(sum(p) / len(p), abs=1e-9)
        assert item["input"].shape[-1] % 8 == 0
    assert get_protocol("dsrir").metrics["ssim"] is skimage_ssim
    with pytest.raises(ValueError, match="dataset.metric_protocol='nope' is unknown"):
        get_protocol("nope")

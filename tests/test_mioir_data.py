"""The MiO setting (issue 13): mio7 on the reference's folder layout and synthetic_mio7 on our engine, both
through ``aio-data check``; the SR/blur/dark degradations at the reference's sizes and ranges."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from aio.cli.data import main as data_main
from aio.data import build_train_dataset, build_val_sets, check_dataset
from aio.data import degradations as D
from aio.data.config import load_preset
from aio.data.mio import MIO_TASKS, make_mio_tree


def test_mio7_fixture_tree_passes_check_and_loads(tmp_path, capsys):
    root = make_mio_tree(tmp_path / "mio", n_train=2, n_test=1)
    assert data_main(["check", "dataset=mio7", f"dataset.root={root}"]) == 0
    out = capsys.readouterr().out
    for task in MIO_TASKS:
        assert f"train  {task}" in out
    assert "optional set absent" in out and out.rstrip().endswith("OK")
    cfg = load_preset("mio7", {"root": str(root), "patch_size": 32})
    train = build_train_dataset(cfg)
    assert train.task_names == list(MIO_TASKS) and len(train) == 14
    item = train[train.offsets[MIO_TASKS.index("rain")]]
    assert item["task"] == MIO_TASKS.index("rain") and item["input"].shape == (3, 32, 32)
    assert torch.allclose(item["input"], item["target"] / 2, atol=1 / 255 + 1e-6)  # the pair is aligned
    sets = build_val_sets(cfg)
    assert sorted(sets) == sorted(MIO_TASKS)
    assert sets["jpeg"].protocol == {"crop_border": 4, "test_y_channel": False} and sets["jpeg"][0]["task"] == 3


def test_mio7_check_reports_missing_pairs(tmp_path):
    root = make_mio_tree(tmp_path / "mio", n_train=2, n_test=1, outbig=True)
    (root / "DF2K/GT_sub300/0001_s001.png").unlink()
    (root / "CL_test/single_indis/haze").rename(root / "CL_test/single_indis/hazy")
    report = check_dataset(load_preset("mio7", {"root": str(root)}))
    assert not report.ok
    text = report.render()
    assert "unpaired input" in text and "0001_s001.png" in text
    assert "missing folder" in text and "single_indis/haze" in text
    assert "optional set absent" not in text  # the outbig sets are there this time
    assert check_dataset(load_preset("mio7")).render().count("root not set") == 1


def test_synthetic_mio7_checks_and_uses_the_reference_ranges(capsys):
    assert data_main(["check", "dataset=synthetic_mio7", "dataset.images=[astronaut]"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK") and all(f"val    {t}" in out for t in MIO_TASKS)
    cfg = load_preset("synthetic_mio7", {"images": ["astronaut"], "patch_size": 64, "epoch_size": 2})
    ds = build_train_dataset(cfg)
    assert ds.task_names == list(MIO_TASKS)
    recipes = OmegaConf.to_container(cfg.recipes)
    assert recipes["noise"][0]["sigma"] == [15.0, 50.0] and recipes["jpeg"][0]["quality"] == [30.0, 70.0]
    assert recipes["dark"][0]["gamma"] == [1.0, 3.0] and recipes["blur"][0]["sigma"] == [1.0, 3.0]
    item = ds[ds.offsets[0]]  # sr: input at the target's size
    assert item["input"].shape == item["target"].shape == (3, 64, 64)


def test_sr_dark_blur_degradations_match_the_reference_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 48, generator=g)
    sr = D.get_recipe("sr", {"sr": [{"type": "bicubic_down_up", "scale": 4.0}]})(x, g)
    lr = torch.nn.functional.interpolate(x, scale_factor=0.25, mode="bicubic")
    ref = torch.nn.functional.interpolate(lr, size=(32, 48), mode="bicubic").clamp(0, 1)
    assert torch.equal(sr, ref)
    dark = D.build({"type": "low_light", "gamma": 2.0, "gain": 1.0, "peak": 0.0})(x, g)
    assert torch.allclose(dark, x ** 2)
    # a 7x7 window (kernel_radius 3) truncates a sigma-3 Gaussian: flat images stay flat, others blur
    flat = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(D.gaussian_blur(flat, sigma=3.0, kernel_radius=3.0), flat, atol=1e-6)
    small, big = (D.gaussian_blur(x, sigma=3.0, kernel_radius=r) for r in (3.0, 10.0))
    assert (small - x).abs().mean() < (big - x).abs().mean()

"""Synthetic presets: reproducibility, disjoint train/validation regions, repeat, mixing, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import aio.data as ad
from aio.data.config import load_preset
from aio.data.fixtures import save


def _cfg(name="synthetic", **over):
    base = {"epoch_size": 8, "patch_size": 32, "val": {"crops_per_task": 2, "crop_size": 32}}
    base.update(over)
    return load_preset(name, base)


def _same(a, b):
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_default_items_follow_contract():
    ds = ad.build_train_dataset(_cfg())
    assert ds.task_names == ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"]
    assert len(ds) == 5 * 8
    for i in (0, 9, 17, 25, 39):
        it = ds[i]
        assert it["input"].shape == it["target"].shape == (3, 32, 32)
        assert it["input"].dtype == torch.float32
        assert 0 <= it["input"].min() and it["input"].max() <= 1
        assert it["task"] == i // 8 and isinstance(it["name"], str)


def test_fixed_seed_reproduces_batch_exactly():
    a = ad.build_train_dataset(_cfg(seed=3))
    b = ad.build_train_dataset(_cfg(seed=3))
    idx = [0, 11, 23, 38]
    assert all(_same(a[i], b[i]) for i in idx)
    assert all(_same(a.get_item(i, 2), b.get_item(i, 2)) for i in idx)
    assert not torch.equal(a.get_item(5, 0)["input"], a.get_item(5, 1)["input"])  # new epoch, new draw
    c = ad.build_train_dataset(_cfg(seed=4))
    assert not torch.equal(a[5]["input"], c[5]["input"])
    a.set_epoch(2)
    assert _same(a[11], b.get_item(11, 2))


def test_dataloader_workers_match_main_process():
    ds = ad.build_train_dataset(_cfg())
    kw = dict(batch_size=4, shuffle=False)
    b0 = next(iter(DataLoader(ds, num_workers=0, **kw)))
    b2 = next(iter(DataLoader(ds, num_workers=2, **kw)))
    assert torch.equal(b0["input"], b2["input"]) and torch.equal(b0["task"], b2["task"])


def test_train_and_val_regions_are_disjoint(tmp_path):
    # left 3/4 black, right 1/4 white: training targets must never see white, validation only white
    a = np.zeros((64, 200, 3), np.uint8)
    a[:, 150:] = 255
    save(tmp_path / "img.png", a)
    cfg = _cfg(root=str(tmp_path), tasks=["denoise_25", "dehaze"], epoch_size=40,
               val={"holdout": 0.25, "crop_size": 32, "crops_per_task": 3})
    ds = ad.build_train_dataset(cfg)
    assert max(float(ds[i]["target"].max()) for i in range(len(ds))) == 0.0
    for vs in ad.build_val_sets(cfg).values():
        assert all(float(vs[i]["target"].min()) == 1.0 for i in range(len(vs)))


def test_val_sets_deterministic_and_described():
    cfg = _cfg()
    v1, v2 = ad.build_val_sets(cfg), ad.build_val_sets(cfg)
    assert list(v1) == ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"]
    for name, s in v1.items():
        assert s.task_name == name
        assert s.protocol == {"crop_border": 0, "test_y_channel": False}
        assert len(s) == 2
        for i in range(len(s)):
            assert _same(s[i], v2[name][i])
            assert s[i]["input"].shape == (3, 32, 32)
            assert s[i]["task"] == cfg.tasks.index(name)
    # validation does not depend on the training seed
    v3 = ad.build_val_sets(_cfg(seed=99))
    assert torch.equal(v3["derain"][0]["input"], v1["derain"][0]["input"])


def test_repeat_factors():
    ds = ad.build_train_dataset(_cfg(repeat={"derain": 3}))
    assert ds.counts == [8, 8, 8, 24, 8] and len(ds) == 56
    assert ds[8 * 3 + 23]["task"] == 3 and ds[8 * 3 + 24]["task"] == 4
    with pytest.raises(ValueError, match="unknown task"):
        ad.build_train_dataset(_cfg(repeat={"deraining": 2}))


def test_region_mixing_items():
    ds = ad.build_train_dataset(_cfg(mix_prob=1.0))
    it = ds[3]
    assert it["label_map"].shape == (32, 32) and it["label_map"].dtype == torch.long
    assert it["task"] == int(torch.bincount(it["label_map"].flatten()).argmax())
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["label_map"].shape == (4, 32, 32)


@pytest.mark.parametrize("preset,n", [("synthetic_aio3", 5), ("synthetic_aio5", 5), ("synthetic_cdd11", 11)])
def test_presets_build(preset, n):
    cfg = _cfg(preset)
    ds = ad.build_train_dataset(cfg)
    assert len(ds.task_names) == n
    it = ds[len(ds) - 1]
    assert it["task"] == n - 1 and torch.isfinite(it["input"]).all()
    assert list(ad.build_val_sets(cfg)) == ds.task_names


def test_check_synthetic(tmp_path):
    rep = ad.check_dataset(_cfg())
    assert rep.ok and "scikit-image photos" in rep.render()
    rep = ad.check_dataset(_cfg(root=str(tmp_path / "nowhere")))
    assert not rep.ok and "nowhere" in rep.render()
    (tmp_path / "bad.png").write_bytes(b"nope")
    save(tmp_path / "ok.png", np.zeros((40, 40, 3), np.uint8))
    rep = ad.check_dataset(_cfg(root=str(tmp_path)))
    assert not rep.ok and "bad.png" in rep.render()
    assert ad.check_dataset(_cfg(root=str(tmp_path), skip_bad=True)).ok
    rep = ad.check_dataset(_cfg(tasks=["denoise_25", "defogging"]))
    assert not rep.ok and "defogging" in rep.render()


def test_skip_bad_clean_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    save(tmp_path / "ok.png", np.full((40, 40, 3), 128, np.uint8))
    ds = ad.build_train_dataset(_cfg(root=str(tmp_path), skip_bad=True, tasks=["denoise_25"]))
    with pytest.warns(UserWarning, match="bad.png"):
        items = [ds[i] for i in range(len(ds))]
    assert all(it["target"].shape == (3, 32, 32) for it in items)
    strict = ad.build_train_dataset(_cfg(root=str(tmp_path), tasks=["denoise_25"]))
    with pytest.raises(OSError, match="bad.png"):
        [strict[i] for i in range(len(strict))]

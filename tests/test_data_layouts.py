"""Real presets on the public folder layouts: listing, pairing, labels, crops, test sets, the checker."""

from __future__ import annotations

import pytest
import torch

import aio.data as ad
from aio.data import layouts
from aio.data.config import load_preset
from aio.data.fixtures import CDD11_CATEGORIES, make_aio_tree, make_cdd11_tree, save


@pytest.fixture
def aio_root(tmp_path):
    return make_aio_tree(tmp_path / "aio")


@pytest.fixture
def broken_root(tmp_path):
    return make_aio_tree(tmp_path / "broken", broken=True)


def _cfg(name, root, **over):
    base = {"root": str(root) if root is not None else None, "patch_size": 32, "cache": False}
    base.update(over)
    return load_preset(name, base)


def test_aio3_counts_and_labels(aio_root):
    ds = ad.build_train_dataset(_cfg("aio3", aio_root, repeat={"derain": 2}))
    assert ds.task_names == ["denoise_15", "denoise_25", "denoise_50", "derain", "dehaze"]
    # 4 clean images (one grey, one 16-bit, one in a sub-folder) per sigma, 3 derain x2, 3 hazy
    assert ds.counts == [4, 4, 4, 6, 3] and len(ds) == 21
    for i in range(len(ds)):
        it = ds[i]
        assert it["input"].shape == it["target"].shape == (3, 32, 32)
    tasks = [ds[i]["task"] for i in range(len(ds))]
    assert tasks == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 6 + [4] * 3


def test_pairs_are_aligned_after_crop_and_flip(aio_root):
    ds = ad.build_train_dataset(_cfg("aio5", aio_root))
    for i in range(len(ds)):
        it = ds.get_item(i, seed_offset=i)
        task = ds.task_names[it["task"]]
        x, y = it["input"] * 255, it["target"] * 255
        if task in ("derain", "dehaze"):  # input = target + 25 (clipped), dehaze through JPEG
            tol = 1.01 if task == "derain" else 12
            assert ((x - torch.clamp(y + 25, max=255)).abs().mean()) < tol
        elif task in ("deblur", "lowlight"):  # input = target // 2
            assert ((x - torch.floor(y / 2)).abs().max()) <= 1.01
        else:  # denoise: noisy around the clean target
            assert 5 < (x - y).std() < 40


def test_dehaze_pairs_by_id_and_derain_by_number(aio_root):
    lst = layouts.train_listing(_cfg("aio3", aio_root), "dehaze")
    pairs = sorted((s.input.split("/")[-1], s.target.split("/")[-1]) for s in lst.samples)
    assert pairs == [("0001_0.8_0.1.jpg", "0001.png"), ("0001_0.9_0.2.jpg", "0001.png"),
                     ("0002_0.8_0.1.jpg", "0002.png")]
    lst = layouts.train_listing(_cfg("aio3", aio_root), "derain")
    assert sorted((s.input.split("/")[-1], s.target.split("/")[-1]) for s in lst.samples) == [
        (f"rain-{i}.png", f"norain-{i}.png") for i in (1, 2, 3)]
    assert not lst.problems


def test_real_items_reproducible(aio_root):
    a = ad.build_train_dataset(_cfg("aio3", aio_root, seed=1))
    b = ad.build_train_dataset(_cfg("aio3", aio_root, seed=1))
    for i in (0, 5, 13, 20):
        assert torch.equal(a[i]["input"], b[i]["input"]) and torch.equal(a[i]["target"], b[i]["target"])
    assert not torch.equal(a.get_item(0, 0)["input"], a.get_item(0, 1)["input"])


def test_val_set_names_and_determinism(aio_root):
    v3 = ad.build_val_sets(_cfg("aio3", aio_root))
    assert list(v3) == ["BSD68_s15", "BSD68_s25", "BSD68_s50", "Rain100L", "SOTS"]
    again = ad.build_val_sets(_cfg("aio3", aio_root, seed=5))
    for name, s in v3.items():
        assert s.protocol == {"crop_border": 0, "test_y_channel": False}
        assert len(s) == 2
        for i in range(len(s)):
            assert torch.equal(s[i]["input"], again[name][i]["input"])
            assert s[i]["input"].shape == (3, 48, 64)  # full images
    assert v3["BSD68_s15"].task_name == "denoise_15" and v3["SOTS"].task_name == "dehaze"
    n15 = (v3["BSD68_s15"][0]["input"] - v3["BSD68_s15"][0]["target"]).std() * 255
    n50 = (v3["BSD68_s50"][0]["input"] - v3["BSD68_s50"][0]["target"]).std() * 255
    assert 10 < n15 < 18 and 35 < n50 < 55
    v5 = ad.build_val_sets(_cfg("aio5", aio_root, val={"center_crop": 32}))
    assert list(v5) == ["BSD68_s25", "Rain100L", "SOTS", "GoPro", "LOLv1"]
    assert v5["GoPro"][0]["target"].shape == (3, 32, 32)
    assert v5["LOLv1"][0]["task"] == 4


def test_cdd11(tmp_path):
    root = make_cdd11_tree(tmp_path / "cdd", n_train=2, n_test=1)
    cfg = _cfg("cdd11", root)
    ds = ad.build_train_dataset(cfg)
    assert ds.task_names == CDD11_CATEGORIES and len(ds) == 22
    it = ds[21]
    assert it["task"] == 10 and it["name"].startswith("low_haze_snow/")
    assert ((it["input"] * 255 - torch.floor(it["target"] * 255 / 2)).abs().max()) <= 1.01
    vs = ad.build_val_sets(cfg)
    assert list(vs) == CDD11_CATEGORIES and all(len(s) == 1 for s in vs.values())
    assert ad.check_dataset(cfg).ok


def test_check_reports_every_problem(broken_root):
    rep = ad.check_dataset(_cfg("aio5", broken_root))
    text = rep.render()
    assert not rep.ok
    kinds = {(p.kind, p.path.split("/")[-1]) for p in rep.errors}
    assert ("unpaired input", "rain-4.png") in kinds
    assert ("unreadable", "corrupt.png") in kinds
    assert ("size mismatch", "x3.png") in kinds
    for needle in ("rain-4.png", "corrupt.png", "x3.png", "BSD68_s25", "LOLv1", "denoise_25"):
        assert needle in text
    # every file reported once even though three tasks share Train/Denoise
    assert sum("corrupt.png" in p.path for p in ad.check_dataset(_cfg("aio3", broken_root)).problems) == 1
    lenient = ad.check_dataset(_cfg("aio5", broken_root, skip_bad=True))
    assert lenient.ok and len(lenient.problems) >= 3


def test_check_missing_and_empty_folders(aio_root):
    import shutil

    shutil.rmtree(aio_root / "Train" / "Dehaze" / "original")
    for f in (aio_root / "test/derain/Rain100L/target").iterdir():
        f.unlink()
    rep = ad.check_dataset(_cfg("aio3", aio_root))
    errs = {(p.kind, p.path.replace(str(aio_root), "")) for p in rep.errors}
    assert ("missing folder", "/Train/Dehaze/original") in errs
    assert ("empty folder", "/test/derain/Rain100L/target") in errs
    assert ad.check_dataset(_cfg("aio3", aio_root), verify=False).ok is False


def test_skip_bad_training(broken_root):
    with pytest.raises(FileNotFoundError, match="rain-4.png"):
        ad.build_train_dataset(_cfg("aio5", broken_root))
    ds = ad.build_train_dataset(_cfg("aio5", broken_root, skip_bad=True))
    with pytest.warns(UserWarning):
        items = [ds[i] for i in range(len(ds))]
    assert all(it["input"].shape == (3, 32, 32) for it in items)


def test_corrupt_file_error_names_it(tmp_path):
    root = make_aio_tree(tmp_path / "r")
    (root / "Train/Derain/rainy/rain-2.png").write_bytes(b"broken")
    ds = ad.build_train_dataset(_cfg("aio3", root, tasks=["derain"], test_sets={}))
    with pytest.raises(OSError, match="rain-2.png"):
        [ds[i] for i in range(len(ds))]


def test_root_not_set_is_one_line(tmp_path):
    cfg = _cfg("aio3", None)
    with pytest.raises(layouts.RootNotSetError) as e:
        ad.build_train_dataset(cfg)
    msg = str(e.value)
    assert "dataset.root" in msg and "\n" not in msg and "dataset.root=" in msg
    rep = ad.check_dataset(cfg)
    assert not rep.ok and "dataset.root" in rep.render()


def test_file_list_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AIO_OUTPUTS", str(tmp_path / "out"))
    folder = tmp_path / "imgs"
    import numpy as np

    for i in range(3):
        save(folder / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    first = layouts.list_images(folder, cache=True)
    assert len(first) == 3 and list((tmp_path / "out" / "cache" / "data").glob("*.json"))
    calls = []
    real = layouts._list_images
    monkeypatch.setattr(layouts, "_list_images", lambda *a: calls.append(a) or real(*a))
    assert layouts.list_images(folder, cache=True) == first and not calls  # served from the cache
    import os

    save(folder / "3.png", np.zeros((8, 8, 3), np.uint8))
    st = folder.stat()
    os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # coarse-mtime filesystems
    assert len(layouts.list_images(folder, cache=True)) == 4 and calls

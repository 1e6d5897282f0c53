"""dataset=folder: any paired test/training set on disk, paired by file name with the checker's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aio.data import build_train_dataset, build_val_sets, check_dataset
from conftest import compose_train


@pytest.fixture
def pairs(tmp_path):
    rng = np.random.default_rng(0)
    inp, tgt = tmp_path / "degraded", tmp_path / "clean"
    inp.mkdir()
    tgt.mkdir()
    for name, ext_in in (("a", "png"), ("b", "jpg")):
        clean = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(clean).save(tgt / f"{name}.png")
        Image.fromarray((clean // 2).astype(np.uint8)).save(inp / f"{name}.{ext_in}", quality=100)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tgt / "c.png")  # no input
    return inp, tgt


def _cfg(inp, tgt, *extra):
    return compose_train(["dataset=folder", f"dataset.input={inp}", f"dataset.target={tgt}", *extra]).dataset


def test_pairs_by_stem_with_the_checkers_rules(pairs):
    inp, tgt = pairs
    cfg = _cfg(inp, tgt, "dataset.task=derain")
    report = check_dataset(cfg)
    assert report.ok and {p.kind for p in report.problems} == {"unpaired target", "smaller than patch"}
    assert [p.path for p in report.problems if p.kind == "unpaired target"] == [str(tgt / "c.png")]
    sets = build_val_sets(cfg)
    assert list(sets) == ["folder"]
    ds = sets["folder"]
    assert [ds[i]["name"] for i in range(len(ds))] == ["a", "b"] and ds.task_name == "derain"
    assert ds.protocol == {"crop_border": 0, "test_y_channel": False}
    it = ds[0]  # a.png: lossless, input = target // 2
    assert torch.equal((it["input"] * 255).round(), torch.floor((it["target"] * 255).round() / 2))
    # an input without target: an error naming it, or skipped with dataset.skip_bad=true
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(inp / "orphan.png")
    report = check_dataset(cfg)
    assert not report.ok and "orphan.png" in report.render()
    with pytest.raises(FileNotFoundError, match="orphan.png"):
        build_val_sets(cfg)
    assert len(build_val_sets(_cfg(inp, tgt, "dataset.skip_bad=true"))["folder"]) == 2


def test_unset_folders_are_a_clear_error():
    cfg = compose_train(["dataset=folder"]).dataset
    with pytest.raises(ValueError, match=r"dataset.input is not set: dataset=folder needs dataset.input="):
        build_val_sets(cfg)
    assert "dataset.input is not set" in check_dataset(cfg).render()


def test_trains_on_folder_pairs(pairs):
    inp, tgt = pairs
    ds = build_train_dataset(_cfg(inp, tgt, "dataset.patch_size=32", "dataset.task=derain"))
    assert ds.task_names == ["derain"] and len(ds) == 2
    item = ds.get_item(0)
    assert item["input"].shape == (3, 32, 32) and item["task"] == 0


def test_aio_eval_on_a_folder_with_the_checkpoints_task_label(pairs, tmp_path):
    from aio.cli.eval import evaluate_checkpoint
    from aio.metrics import psnr
    from aio.train.checkpoint import load_model
    from test_eval import _compose, _tiny_checkpoint

    inp, tgt = pairs
    ckpt = _tiny_checkpoint(tmp_path)  # trained on tasks [denoise_25, derain]
    over = [f"checkpoint={ckpt}", "logger=none", "eval.progress=false", "dataset=folder", f"dataset.input={inp}",
            f"dataset.target={tgt}", "dataset.task=derain"]
    keys = ["dataset", "dataset.input", "dataset.target", "dataset.task"]
    res = evaluate_checkpoint(_compose("eval", over), tmp_path / "eval", override_keys=keys)
    model, _ = load_model(str(ckpt))
    vals = []
    with torch.inference_mode():
        from aio.data.images import read_image

        for name in ("a", "b"):
            x = read_image(next(inp.glob(f"{name}.*")))[None]
            y = model.eval()(x, task=torch.tensor([1])).clamp(0, 1)  # derain = index 1 of the checkpoint
            vals.append(float(psnr(y, read_image(tgt / f"{name}.png")[None])[0]))
    assert res.per_set["folder"]["psnr"] == pytest.approx(sum(vals) / 2, abs=1e-4) and res.per_set["folder"]["n"] == 2
    with pytest.raises(ValueError, match=r"dataset.task=dehaze is not a task of the checkpoint; choose from "
                                         r"\['denoise_25', 'derain'\]"):
        evaluate_checkpoint(_compose("eval", over[:-1] + ["dataset.task=dehaze"]), tmp_path / "e2", override_keys=keys)

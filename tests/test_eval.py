"""Evaluation: tiling, TTA, the evaluation loop, sample grids, and aio-eval / aio-restore end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from aio.eval import EvalResult, evaluate_sets, save_sample_grid, tiled_forward, tta_forward
from aio.metrics import psnr, ssim

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1), nn.Sigmoid())


class TaskConv(nn.Module):
    """A small conv model with the aio forward signature; records the input sizes it sees."""

    def __init__(self):
        super().__init__()
        self.net = _conv_net()
        self.seen: list[tuple[int, int]] = []

    def forward(self, x, task=None):
        self.seen.append(tuple(x.shape[-2:]))
        return self.net(x)


class Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, task=None):
        assert not self.training
        return x * self.scale


# -- tiling -----------------------------------------------------------------------------------------------
def test_tiled_matches_untiled_and_bounds_tile_size():
    model = TaskConv().eval()
    x = torch.rand(1, 3, 300, 260)
    with torch.no_grad():
        full = model(x)
        model.seen.clear()
        tiled = tiled_forward(model, x, tile=128, overlap=32, task=torch.tensor([0]))
    assert tiled.shape == full.shape
    assert all(h <= 128 and w <= 128 for h, w in model.seen) and len(model.seen) == 9
    delta = abs(psnr(tiled, x).item() - psnr(full, x).item())
    assert delta < 0.05, delta
    assert (tiled - full).abs().max() < 1e-4  # overlap wider than the receptive field: seamless
    # without overlap, seams appear but the image stays close
    with torch.no_grad():
        seams = tiled_forward(model, x, tile=100, overlap=0)
    assert (seams - full).abs().max() > 1e-4


def test_tiled_small_image_is_one_call_and_output_device():
    model = TaskConv().eval()
    x = torch.rand(1, 3, 40, 50)
    with torch.no_grad():
        y = tiled_forward(model, x, tile=64, overlap=16, out_device="cpu")
    assert model.seen == [(40, 50)] and torch.allclose(y, model.net(x))
    with pytest.raises(ValueError, match="changed the tile size"):
        tiled_forward(lambda t: t[..., ::2, ::2], torch.rand(1, 3, 80, 80), tile=32, overlap=8)


# -- TTA ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["x8", "flip"])
def test_tta_equals_plain_for_equivariant_models(mode):
    x = torch.rand(2, 3, 37, 53)  # non-square: rotations change the shape
    assert torch.allclose(tta_forward(lambda t, task=None: t, x, mode), x, atol=1e-6)
    blur = nn.Conv2d(3, 3, 3, padding=1, bias=False, groups=3)
    with torch.no_grad():
        k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        blur.weight.copy_(k.expand(3, 1, 3, 3))
        assert torch.allclose(tta_forward(blur, x, mode), blur(x), atol=1e-6)
        net = _conv_net(1)
        assert not torch.allclose(tta_forward(net, x, mode), net(x), atol=1e-4)
    with pytest.raises(ValueError, match="tta"):
        tta_forward(blur, x, "x16")


# -- evaluation loop ------------------------------------------------------------------------------------
class _Set(torch.utils.data.Dataset):
    def __init__(self, n, size, protocol=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            clean = torch.rand(3, size[0] + i, size[1], generator=g)
            noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
            self.items.append({"input": noisy, "target": clean, "task": i % 2, "name": f"sub/img_{i}.jpg"})
        if protocol is not None:
            self.protocol = protocol

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_evaluate_sets_identity(tmp_path):
    sets = {"rgb": _Set(3, (32, 40)), "y": _Set(2, (40, 36), {"crop_border": 4, "test_y_channel": True}, seed=1)}
    model = Identity().train()
    res = evaluate_sets(model, sets, device="cpu", save_dir=tmp_path / "out", num_samples=3)
    assert isinstance(res, EvalResult) and model.training  # train mode restored
    assert set(res.per_set) == {"rgb", "y"}
    for name, ds in sets.items():
        s = res.per_set[name]
        assert set(s) == {"psnr", "ssim", "psnr_input", "ssim_input", "n"} and s["n"] == len(ds)
        assert s["psnr"] == pytest.approx(s["psnr_input"]) and s["ssim"] == pytest.approx(s["ssim_input"])
        kw = getattr(ds, "protocol", {})
        ref = np.mean([psnr(it["input"], it["target"], **kw).item() for it in ds.items])
        assert s["psnr"] == pytest.approx(ref)
        ref_s = np.mean([ssim(it["input"], it["target"], **kw).item() for it in ds.items])
        assert s["ssim"] == pytest.approx(ref_s)
    assert res.average["psnr"] == pytest.approx((res.per_set["rgb"]["psnr"] + res.per_set["y"]["psnr"]) / 2)
    assert res.average["n"] == 5
    assert len(res.samples) == 3 and all(len(t) == 3 and t[0].shape[0] == 3 for t in res.samples)
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["rgb/sub/img_0.png", "rgb/sub/img_1.png", "rgb/sub/img_2.png", "y/sub/img_0.png", "y/sub/img_1.png"]
    saved = np.asarray(Image.open(tmp_path / "out" / "rgb/sub/img_1.png"))
    expect = (sets["rgb"].items[1]["input"].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(saved, expect)
    df = res.to_frame()
    assert list(df.index) == ["rgb", "y", "average"]
    assert list(df.columns) == ["psnr", "psnr_input", "ssim", "ssim_input", "n"]
    flat = res.flat("val/")
    assert "val/rgb/psnr" in flat and "val/average/ssim" in flat


def test_evaluate_sets_tiling_tta_and_extra_metrics():
    sets = {"a": _Set(2, (72, 64))}
    model = TaskConv()
    plain = evaluate_sets(model, sets, device="cpu")
    model.seen.clear()
    tiled = evaluate_sets(model, sets, device="cpu", tile=48, tile_overlap=16, tta="flip",
                          metrics=("psnr", "ssim", "gmsd"))
    # measured: tiles + flip TTA move this PSNR by 6e-4 dB, bf16 by 2e-3 dB; bounds are 10x that, not 0.5-1 dB
    assert abs(plain.per_set["a"]["psnr"] - tiled.per_set["a"]["psnr"]) < 0.01
    only_tiles = evaluate_sets(model, sets, device="cpu", tile=48, tile_overlap=16)
    assert only_tiles.per_set["a"]["psnr"] == pytest.approx(plain.per_set["a"]["psnr"], abs=1e-6)
    assert "gmsd" in tiled.per_set["a"] and "gmsd_input" in tiled.per_set["a"]
    assert max(max(s) for s in model.seen) <= 48
    bf = evaluate_sets(model, sets, device="cpu", amp_dtype=torch.bfloat16)
    assert abs(bf.per_set["a"]["psnr"] - plain.per_set["a"]["psnr"]) < 0.02  # bf16 rounding only


def test_save_sample_grid_mixed_sizes(tmp_path):
    samples = [(torch.rand(3, 20, 30), torch.rand(3, 20, 30), torch.rand(3, 20, 30)),
               (torch.rand(3, 26, 18), torch.rand(3, 26, 18), torch.rand(3, 26, 18))]
    path = save_sample_grid(samples, tmp_path / "grid.png", padding=2)
    w, h = Image.open(path).size
    assert (w, h) == (3 * 30 + 4 * 2, 2 * 26 + 3 * 2)
    path = save_sample_grid(samples, tmp_path / "crop.png", crop=16, padding=0)
    assert Image.open(path).size == (48, 32)


# -- command line -----------------------------------------------------------------------------------------
def _tiny_checkpoint(tmp_path: Path, mlflow_run_id: str | None = None, ema_seed: int | None = None) -> Path:
    """A checkpoint as the trainer writes it (docs/design.md), for the tiny Restormer on synthetic data;
    ``ema_seed``: EMA weights of another initialisation (so "evaluates with the EMA" can fail)."""
    from omegaconf import OmegaConf

    from aio.models import model_from_config
    from aio.train.checkpoint import save_checkpoint
    from conftest import compose_train

    cfg = compose_train(["debug=tiny", "logger=none", "dataset.images=[astronaut,coffee]",
                         "dataset.tasks=[denoise_25,derain]", "dataset.val.crops_per_task=1",
                         "dataset.val.crop_size=40"])
    torch.manual_seed(0)
    model = model_from_config(cfg.model)
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "dataset", "loss", "trainer")}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ema = state
    if ema_seed is not None:
        torch.manual_seed(ema_seed)
        ema = {k: v.clone() for k, v in model_from_config(cfg.model).state_dict().items()}
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": state, "ema": ema, "optimizer": {}, "scheduler": {}, "scaler": {},
                           "step": 7, "rng": {}, "config": config, "mlflow_run_id": mlflow_run_id,
                           "aio_version": "0.1.0"})
    return path


def _compose(name: str, overrides: list[str]):
    from conftest import compose_train

    return compose_train(overrides, config_name=name)


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, AIO_OUTPUTS=str(tmp_path / "outputs"), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_aio_eval_end_to_end(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path)
    r = _run([str(BIN / "aio-eval"), f"checkpoint={ckpt.parent.parent}", "logger=none",
              "eval.save_images=true", "eval.num_samples=2", "eval.tile=32", "eval.tile_overlap=8",
              f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    import re

    assert not re.search(r"\b0/\d", r.stdout + r.stderr), "a progress bar's first redraw ('0/3') reached the log"
    assert "checkpoint" in r.stdout and "denoise_25" in r.stdout and "average" in r.stdout
    import pandas as pd

    df = pd.read_csv(tmp_path / "eval" / "results.csv", index_col=0)
    assert list(df.index) == ["denoise_25", "derain", "average"]
    assert np.isfinite(df[["psnr", "ssim", "psnr_input", "ssim_input"]].to_numpy()).all()
    assert (tmp_path / "eval" / "samples.png").is_file()
    assert len(list((tmp_path / "eval" / "images").rglob("*.png"))) == 2
    # user errors are one-line ValueErrors (printed as "aio-eval: error: ..." by the script)
    from aio.cli.eval import evaluate_checkpoint

    cfg = _compose("eval", [f"checkpoint={ckpt}", "logger=none", "eval.sets=[nope]"])
    with pytest.raises(ValueError, match=r"eval\.sets: unknown \['nope'\]"):
        evaluate_checkpoint(cfg, tmp_path / "eval2", override_keys=[])
    cfg = _compose("eval", [f"checkpoint={ckpt}", "logger=none", "cpu_malloc=tcmalloc"])
    with pytest.raises(ValueError, match="^cpu_malloc=tcmalloc is not one of auto, cache, system$"):
        evaluate_checkpoint(cfg, tmp_path / "eval3", override_keys=[])
    assert not (tmp_path / "eval3").exists()


def test_aio_eval_uses_the_ema_weights(tmp_path):
    """Model and EMA weights differ: aio-eval's PSNR is the EMA model's, computed directly, not the raw one's."""
    from aio.cli.eval import evaluate_checkpoint
    from aio.data import build_val_sets
    from aio.train.checkpoint import load_model

    ckpt = _tiny_checkpoint(tmp_path, ema_seed=1)
    cfg = _compose("eval", [f"checkpoint={ckpt}", "logger=none", "eval.progress=false"])
    got = evaluate_checkpoint(cfg, tmp_path / "eval", override_keys=[]).per_set

    sets = build_val_sets(load_model(str(ckpt))[1].dataset)

    def direct(use_ema: bool) -> dict[str, float]:
        model, _ = load_model(str(ckpt), use_ema=use_ema)
        out = {}
        with torch.inference_mode():
            for name, ds in sets.items():
                vals = [float(psnr(model.eval()(it["input"][None], task=torch.tensor([it["task"]])).clamp(0, 1),
                                   it["target"][None])[0]) for it in (ds[i] for i in range(len(ds)))]
                out[name] = sum(vals) / len(vals)
        return out

    ema, raw = direct(True), direct(False)
    for name in ema:
        assert got[name]["psnr"] == pytest.approx(ema[name], abs=1e-4)
        assert abs(ema[name] - raw[name]) > 0.01  # the two paths are distinguishable


@pytest.mark.slow
def test_aio_eval_logs_into_the_training_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("aio")
    run_id = client.create_run(exp, run_name="train").info.run_id
    ckpt = _tiny_checkpoint(tmp_path, mlflow_run_id=run_id)
    r = _run([str(BIN / "aio-eval"), f"checkpoint={ckpt}", f"logger.tracking_uri={uri}", "eval.progress=false",
              f"logger.artifact_location={tmp_path / 'art'}", f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = client.get_run(run_id).data.metrics
    assert {"test/denoise_25/psnr", "test/derain/ssim", "test/avg/psnr", "test/avg/psnr_input"} <= set(metrics)
    # an unknown run id -> a new run named eval
    ckpt2 = _tiny_checkpoint(tmp_path / "other", mlflow_run_id="0" * 32)
    r = _run([str(BIN / "aio-eval"), f"checkpoint={ckpt2}", f"logger.tracking_uri={uri}", "eval.progress=false",
              f"logger.artifact_location={tmp_path / 'art'}", f"hydra.run.dir={tmp_path / 'eval2'}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = client.search_runs([exp], filter_string="attributes.run_name = 'eval'")
    assert len(runs) == 1 and "test/avg/psnr" in runs[0].data.metrics


def test_aio_restore_end_to_end(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(src / "big.png")
    Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(src / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 255, (21, 17, 4), dtype=np.uint8), mode="RGBA").save(src / "sub" / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(src / "photo.jpg")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    r = _run([str(BIN / "aio-restore"), f"checkpoint={ckpt}", f"input={src}", f"output={out}", "tile=48",
              "tile_overlap=8", "task=derain"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["big.png", "photo.jpg", "sub/gray.png", "sub/rgba.png"]
    for name, size, mode in [("big.png", (90, 70), "RGB"), ("sub/gray.png", (24, 20), "L"),
                             ("sub/rgba.png", (17, 21), "RGBA")]:
        im = Image.open(out / name)
        assert im.size == size and im.mode == mode
    # the written pixels are the model's output (EMA weights, tiled as asked), rounded to 8 bits
    from aio.data.images import read_image
    from aio.eval.evaluate import restore_image
    from aio.train.checkpoint import load_model

    model, _ = load_model(str(ckpt), use_ema=True)
    with torch.inference_mode():
        want = restore_image(model.eval(), read_image(src / "big.png")[None], task=torch.tensor([1]), tile=48,
                             tile_overlap=8)[0]
    got_px = torch.from_numpy(np.asarray(Image.open(out / "big.png"), dtype=np.float32)).permute(2, 0, 1)
    assert (got_px - (want.clamp(0, 1) * 255).round()).abs().max() <= 1
    from aio.cli.restore import run_restore

    cfg = _compose("restore", [f"checkpoint={ckpt}", f"input={tmp_path / 'missing'}", f"output={out}"])
    with pytest.raises(FileNotFoundError, match="missing"):
        run_restore(cfg)
    cfg = _compose("restore", [f"checkpoint={ckpt}", f"input={src}", f"output={out}", "task=dehaze"])
    with pytest.raises(ValueError, match="task='dehaze'"):
        run_restore(cfg)
    cfg = _compose("restore", [f"checkpoint={ckpt}", f"input={src}", f"output={out}", "cpu_malloc=jemalloc"])
    with pytest.raises(ValueError, match="^cpu_malloc=jemalloc is not one of auto, cache, system$"):
        run_restore(cfg)


def test_row_overrides_pick_each_rows_checkpoint_and_blend(tmp_path):
    """``row=<key>`` (sweeps/abair_table1.yaml): the row's entry of ``row_overrides`` replaces the top-level
    checkpoint / abair.blend and names the row; a row without its checkpoint, or an unknown row, is a one-line
    error naming the key to set."""
    from aio.cli.eval import apply_row

    base = ["sweep=abair_table1", "checkpoint=/abair/phase3", "logger=none"]
    oh = apply_row(_compose("eval", [*base, "row=oh"]))
    assert (oh.checkpoint, oh.abair.blend) == ("/abair/phase3", "oh")
    other = apply_row(_compose("eval", [*base, "row=promptir", "row_overrides.promptir.checkpoint=/runs/promptir"]))
    assert (other.checkpoint, other.abair.blend) == ("/runs/promptir", None)
    assert {"key": "promptir", "label": "PromptIR"} in [dict(r) for r in other.sweep.rows]
    added = apply_row(_compose("eval", [*base, "row=mine", "+row_overrides.mine.checkpoint=/runs/mine"]))
    assert added.checkpoint == "/runs/mine" and "mine" not in [r.key for r in added.sweep.rows]  # labelled "mine"
    with pytest.raises(ValueError, match=r"row=restormer needs its checkpoint: give row_overrides\.restormer\.checkpoint="):
        apply_row(_compose("eval", [*base, "row=restormer"]))
    with pytest.raises(ValueError, match=r"row=nope is not a key of row_overrides \(oh, sw, oracle, restormer"):
        apply_row(_compose("eval", [*base, "row=nope"]))
    plain = _compose("eval", ["checkpoint=/x", "logger=none"])
    assert apply_row(plain) is plain

"""aio-restore writes each result in its input's mode and reports what it skipped or converted (issue 17)."""

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

from aio.data.images import read_image, write_png16
from aio.eval import restore_path

REPO = Path(__file__).resolve().parents[1]


class Tint(nn.Module):
    """A 'restoration' that tints: makes grey inputs come back coloured unless the output rule holds."""

    def forward(self, x, task=None):
        return (x * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)).clamp(0, 1)


def _luma(rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@pytest.fixture
def sources(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(src / "gray.png")
    rgba = rng.integers(0, 255, (21, 17, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(src / "rgba.png")
    g16 = rng.integers(0, 65535, (16, 18), dtype=np.uint16)
    Image.fromarray(g16).save(src / "gray16.png")  # Pillow writes I;16 as a 16-bit grey PNG
    c16 = rng.integers(0, 65535, (12, 10, 3), dtype=np.uint16)
    write_png16(src / "rgb16.png", c16)
    return src, {"rgba": rgba, "g16": g16}


def test_modes_are_kept(sources, tmp_path):
    src, raw = sources
    out = tmp_path / "out"
    report = restore_path(Tint(), src, out, tile=None, progress=False, echo=lambda s: None)
    assert report.summary() == "restored 4, skipped 0"
    gray = Image.open(out / "gray.png")
    assert gray.mode == "L"  # grey in -> grey out (was RGB, tinted)
    x = read_image(src / "gray.png").permute(1, 2, 0).numpy()
    want = np.round(_luma(Tint()(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()) * 255)
    assert np.abs(np.asarray(gray, dtype=np.float64) - want).max() <= 1
    rgba = Image.open(out / "rgba.png")
    assert rgba.mode == "RGBA" and (np.asarray(rgba)[..., 3] == raw["rgba"][..., 3]).all()  # alpha carried
    g16 = Image.open(out / "gray16.png")
    assert g16.mode.startswith("I") and np.asarray(g16).max() > 255  # 16-bit in -> 16-bit out
    head = (out / "rgb16.png").read_bytes()[:26]
    assert head[24] == 16 and head[25] == 2  # IHDR: bit depth 16, colour type RGB
    assert any("rgb16.png" in str(f) and "8-bit precision" in n for f, n in report.notes)


def test_conversions_are_said_per_file(sources, tmp_path):
    src, _ = sources
    lines: list[str] = []
    report = restore_path(Tint(), src / "rgba.png", tmp_path / "o", tile=None, ext="jpg", progress=False,
                          echo=lines.append)
    assert Image.open(tmp_path / "o" / "rgba.jpg").mode == "RGB"
    assert lines == [f"{src / 'rgba.png'}: alpha dropped: JPEG has no alpha channel"]
    assert report.notes == [(src / "rgba.png", "alpha dropped: JPEG has no alpha channel")]


def test_write_png16_round_trips_grey():
    import tempfile

    a = np.arange(0, 65535, 257, dtype=np.uint16).reshape(15, 17)
    with tempfile.TemporaryDirectory() as d:
        write_png16(Path(d) / "a.png", a)
        assert (np.asarray(Image.open(Path(d) / "a.png")).astype(np.uint16) == a).all()


def test_cli_corrupt_file_is_one_line_and_counted_and_no_stub_folders(tmp_path):
    from test_eval import _tiny_checkpoint

    ckpt = _tiny_checkpoint(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(src / f"ok{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    outputs = tmp_path / "outputs"
    env = dict(os.environ, AIO_OUTPUTS=str(outputs), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "aio.cli.restore", f"checkpoint={ckpt}", f"input={src}",
                        f"output={tmp_path / 'out'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    text = r.stdout + r.stderr
    assert "restored 3, skipped 1" in text
    broken = [ln for ln in text.splitlines() if "broken.png" in ln]
    assert len(broken) == 1 and broken[0].startswith(f"skipped {src / 'broken.png'}: ")
    assert "UserWarning" not in text and "warnings.warn" not in text
    assert not outputs.exists() or not any(outputs.rglob("*"))  # no stub folders under outputs/
    assert not (tmp_path / ".hydra").exists()
    # a failing call leaves nothing either
    r = subprocess.run([sys.executable, "-m", "aio.cli.restore", f"checkpoint={tmp_path / 'nope.pt'}",
                        f"input={src}", f"output={tmp_path / 'out2'}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert not outputs.exists() or not any(outputs.rglob("*"))

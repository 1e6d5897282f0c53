"""aio.data.images: every format reads as RGB float32 in [0, 1] by the documented rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aio.data.fixtures import save, save_png16
from aio.data.images import ImageReadError, read_image, write_image


def _rgb(h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["png", "bmp"])
def test_lossless_8bit(tmp_path, ext):
    a = _rgb()
    t = read_image(save(tmp_path / f"x.{ext}", a))
    assert t.dtype == torch.float32 and t.shape == (3, 6, 5)
    assert torch.equal((t * 255).round().byte().permute(1, 2, 0), torch.from_numpy(a))


def test_jpeg_reads_close(tmp_path):
    a = np.full((16, 16, 3), 120, np.uint8)
    t = read_image(save(tmp_path / "x.jpg", a))
    assert t.shape == (3, 16, 16) and (t - 120 / 255).abs().max() < 3 / 255


def test_gray_replicated(tmp_path):
    g = _rgb()[..., 0]
    t = read_image(save(tmp_path / "g.png", g))
    assert t.shape == (3, 6, 5)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    assert torch.allclose(t[0], torch.from_numpy(g).float() / 255)


def test_rgba_alpha_dropped(tmp_path):
    a = _rgb()
    rgba = np.concatenate([a, np.zeros((6, 5, 1), np.uint8)], -1)  # fully transparent
    t = read_image(save(tmp_path / "a.png", rgba))
    assert torch.allclose(t, torch.from_numpy(a).permute(2, 0, 1).float() / 255)


def test_palette(tmp_path):
    a = _rgb()
    Image.fromarray(a).convert("P").save(tmp_path / "p.png")
    t = read_image(tmp_path / "p.png")
    assert t.shape == (3, 6, 5) and 0 <= t.min() and t.max() <= 1


def test_16bit_gray_full_precision(tmp_path):
    g = np.array([[0, 1000, 65535], [32768, 5, 60000]], np.uint16)
    t = read_image(save_png16(tmp_path / "g16.png", g))
    assert t.shape == (3, 2, 3)
    assert torch.allclose(t[0], torch.from_numpy(g.astype(np.float32)) / 65535, atol=1e-6)


def test_16bit_rgb_scaled(tmp_path):
    a = (np.random.default_rng(1).random((4, 5, 3)) * 65535).astype(np.uint16)
    t = read_image(save_png16(tmp_path / "c16.png", a))
    ref = torch.from_numpy(a.astype(np.float32) / 65535).permute(2, 0, 1)
    assert (t - ref).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_corrupt_raises_with_path(tmp_path, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(p)


def test_missing_raises_with_path(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_error_pickles():
    import pickle

    e = pickle.loads(pickle.dumps(ImageReadError("/x/y.png", "truncated")))
    assert e.path == "/x/y.png" and "y.png" in str(e)


def test_write_roundtrip(tmp_path):
    a = torch.from_numpy(_rgb()).permute(2, 0, 1).float() / 255
    p = write_image(tmp_path / "sub" / "o.png", a)
    assert torch.equal(read_image(p), a)
    write_image(tmp_path / "g.png", a[:1])
    assert torch.equal(read_image(tmp_path / "g.png")[1], a[0])

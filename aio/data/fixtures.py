"""Tiny dataset trees in the public layouts, for tests and demos (no downloads).

``make_aio_tree(root)`` and ``make_cdd11_tree(root)`` write a few small images per folder. Paired inputs
are ``clip(target + 0.1)`` (derain/dehaze) or ``target * 0.5`` (deblur/low light), so an aligned crop
of a pair can be recognised. ``broken=True`` adds the usual problems: an input without target, a corrupt
file, an input/target size mismatch.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _img(rng, h=48, w=64) -> np.ndarray:
    """A smooth random colour image (uint8 [H,W,3])."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(xx * rng.uniform(2, 9) + yy * rng.uniform(2, 9) + rng.uniform(0, 6)) for _ in range(3)]
    a = (np.stack(chans, -1) * 0.4 + 0.5) * 255
    return np.clip(a, 0, 255).astype(np.uint8)


def save(path, a: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def save_png16(path, a: np.ndarray) -> Path:
    """Write a 16-bit PNG (grey [H,W] or RGB [H,W,3], uint16) with a minimal encoder (Pillow cannot
    write 16-bit RGB)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(a, dtype=np.uint16)
    h, w = a.shape[:2]
    colour = 2 if a.ndim == 3 else 0
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _plus(a, v=25):
    return np.clip(a.astype(np.int16) + v, 0, 255).astype(np.uint8)


def _half(a):
    return (a // 2).astype(np.uint8)


def make_aio_tree(root, broken: bool = False, seed: int = 0, size=(48, 64)) -> Path:
    """An AIO-3/AIO-5 tree: 3 clean denoise images (one grey, one 16-bit), 3 derain pairs, 3 hazy
    images of 2 scenes, 2 deblur and 2 low-light pairs, and test sets (2 images each)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    d = root / "Train" / "Denoise"
    save(d / "a.png", _img(rng, h, w))
    save(d / "sub" / "b.jpg", _img(rng, h, w))
    save(d / "gray.bmp", _img(rng, h, w)[..., 0])
    save_png16(d / "deep16.png", (rng.random((h, w, 3)) * 65535).astype(np.uint16))
    for i in (1, 2, 3):
        t = _img(rng, h, w)
        save(root / f"Train/Derain/gt/norain-{i}.png", t)
        save(root / f"Train/Derain/rainy/rain-{i}.png", _plus(t))
    for i, part in ((1, "part1"), (2, "part2")):
        t = _img(rng, h, w)
        save(root / f"Train/Dehaze/original/{i:04d}.png", t)
        save(root / f"Train/Dehaze/synthetic/{part}/{i:04d}_0.8_0.1.jpg", _plus(t))
        if i == 1:
            save(root / f"Train/Dehaze/synthetic/{part}/{i:04d}_0.9_0.2.jpg", _plus(t))
    for name in ("x1.png", "x2.png"):
        t = _img(rng, h, w)
        save(root / "Train/Deblur/sharp" / name, t)
        save(root / "Train/Deblur/blur" / name, _half(t))
        t = _img(rng, h, w)
        save(root / "Train/Enhance/gt" / name, t)
        save(root / "Train/Enhance/low" / name, _half(t))
    for i in (1, 2):
        save(root / f"test/denoise/bsd68/{i}.png", _img(rng, h, w))
        t = _img(rng, h, w)
        save(root / f"test/derain/Rain100L/target/{i}.png", t)
        save(root / f"test/derain/Rain100L/input/{i}.png", _plus(t))
        t = _img(rng, h, w)
        save(root / f"test/dehaze/target/{i:04d}.png", t)
        save(root / f"test/dehaze/input/{i:04d}_0.8_0.2.jpg", _plus(t))
        for sub in ("deblur/gopro", "enhance/lol"):
            t = _img(rng, h, w)
            save(root / f"test/{sub}/target/{i}.png", t)
            save(root / f"test/{sub}/input/{i}.png", _half(t))
    if broken:
        save(root / "Train/Derain/rainy/rain-4.png", _img(rng, h, w))  # no gt/norain-4.png
        (root / "Train/Denoise/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
        save(root / "Train/Deblur/sharp/x3.png", _img(rng, h, w))
        save(root / "Train/Deblur/blur/x3.png", _img(rng, h + 8, w))  # size mismatch
    return root


CDD11_CATEGORIES = ["low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain",
                    "haze_snow", "low_haze_rain", "low_haze_snow"]


def make_cdd11_tree(root, n_train: int = 2, n_test: int = 1, seed: int = 0, size=(48, 64)) -> Path:
    """A CDD-11 tree: ``{train,test}/{clear,<11 categories>}/<same names>``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            t = _img(rng, *size)
            save(root / split / "clear" / f"{i:03d}.png", t)
            for c in CDD11_CATEGORIES:
                save(root / split / c / f"{i:03d}.png", _half(t))
    return root

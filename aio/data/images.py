"""Reading and writing images as RGB float32 tensors in [0, 1].

Rules, applied identically to every file (inputs and targets alike):

* 8-bit images (PNG, JPEG, BMP, ...) are divided by 255; 16-bit grey PNGs (Pillow modes ``I;16*``/``I``)
  by 65535. 16-bit RGB PNGs are decoded by Pillow at 8-bit precision (scaled correctly, the low byte is
  lost: < 1/255 error). Float TIFFs (mode ``F``) are clipped to [0, 1].
* Greyscale (``L``, ``1``, ``I;16``, ``LA``) is replicated to 3 channels.
* Alpha is **dropped** (RGBA -> RGB, LA -> L), like OpenCV's ``IMREAD_COLOR`` that BasicSR-style
  pipelines use, so published pairs load the same way. Palette images are converted to RGB.
* EXIF orientation is ignored: pixels are used as stored, so an input and its target stay aligned.
* A file that cannot be decoded raises :class:`ImageReadError` naming the path (the dataset skips it
  with a warning instead when ``dataset.skip_bad=true``).

Writing a restored image back in its source's mode (``aio-restore``; :func:`read_image_with_source` /
:func:`write_like_source`):

* grey in -> grey out: the restored RGB is reduced to its ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``
  (the rule of Pillow's ``convert("L")``); the network always sees the grey replicated to RGB.
* alpha is carried through unchanged: the network restores the colour, the source's alpha channel is
  attached to the result (a format without alpha, e.g. ``ext=jpg``, drops it and says so).
* 16-bit in -> 16-bit out (PNG, written by :func:`write_png16`; TIFF through tifffile). 16-bit RGB PNGs are
  decoded at 8-bit precision (Pillow, above), so their 16-bit output carries the network's full precision
  but the input's low byte was lost; this is reported per file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image; the message names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (self.__class__, (self.path, self.reason))


def is_image_file(path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_array(im) -> np.ndarray:
    """A PIL image -> float32 array [H, W, 3] in [0, 1] following the module rules."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "F":
        a = np.asarray(im).astype(np.float32)
    else:
        if mode in ("RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBa"):
            im = im.convert("RGBA").convert("RGB") if mode in ("P", "PA") else im.convert("RGB")
        elif mode in ("LA", "1", "La"):
            im = im.convert("L")
        elif mode not in ("RGB", "L"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] > 3:
        a = a[:, :, :3]
    return np.clip(a, 0.0, 1.0)


def read_image_array(path) -> np.ndarray:
    """Read ``path`` as float32 ``[H, W, 3]`` in [0, 1] (see the module rules)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return np.ascontiguousarray(_to_array(im))
    except ImageReadError:
        raise
    except FileNotFoundError as e:
        raise ImageReadError(path, "no such file") from e
    except Exception as e:  # PIL raises many types for corrupt data
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from e


def read_image(path) -> torch.Tensor:
    """Read ``path`` as an RGB float32 tensor ``[3, H, W]`` in [0, 1] (see the module rules)."""
    return torch.from_numpy(read_image_array(path)).permute(2, 0, 1).contiguous()


def image_size(path) -> tuple[int, int]:
    """``(height, width)`` from the header, verifying the file structure; raises ImageReadError."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            im.verify()
        return h, w
    except FileNotFoundError as e:
        raise ImageReadError(path, "no such file") from e
    except Exception as e:
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from e


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """``[3,H,W]``/``[1,H,W]``/``[H,W]`` (or ``[1,3,H,W]``) float in [0,1] -> uint8 ``[H,W,3]`` or ``[H,W]``."""
    t = t.detach().float().cpu()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"write_image takes one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() == 3:
        if t.shape[0] == 1:
            t = t[0]
        else:
            t = t.permute(1, 2, 0)
    return (t.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


@dataclass
class SourceMode:
    """What :func:`write_like_source` needs to write a result in its source's mode."""

    gray: bool = False
    alpha: np.ndarray | None = None  # float32 [H, W] in [0, 1]
    bit_depth: int = 8
    notes: list[str] = field(default_factory=list)  # what was converted on reading


def _png_bit_depth(path: Path) -> int:
    """The bit depth in a PNG's IHDR chunk (8 for anything that is not a PNG)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return 8
    return head[24] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 24 else 8


def read_image_with_source(path) -> tuple[torch.Tensor, SourceMode]:
    """:func:`read_image` plus the source's mode (grey, alpha, bit depth) for :func:`write_like_source`."""
    from PIL import Image

    path = Path(path)
    tensor = read_image(path)
    with Image.open(path) as im:
        mode = im.mode
        if mode == "P" and "transparency" in im.info:
            im, mode = im.convert("RGBA"), "RGBA"
        alpha = None
        if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
    src = SourceMode(gray=mode in ("L", "1", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"), alpha=alpha)
    if mode.startswith("I") or _png_bit_depth(path) == 16:
        src.bit_depth = 16
        if not mode.startswith("I"):
            src.notes.append("16-bit colour PNG decoded at 8-bit precision (Pillow)")
    return tensor, src


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def write_png16(path, array: np.ndarray) -> Path:
    """Write a uint16 ``[H, W]`` or ``[H, W, C]`` (C = 2 grey+alpha, 3 RGB, 4 RGBA) array as a 16-bit PNG
    (Pillow cannot write 16-bit colour PNGs): one IDAT, filter 0, big-endian samples."""
    import struct
    import zlib

    a = np.asarray(array, dtype=np.uint16)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + row.tobytes() for row in a.astype(">u2").reshape(h, w * c))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return path


_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                ".tiff": "TIFF", ".webp": "WEBP"}


def write_like_source(path, rgb: torch.Tensor, src: SourceMode) -> list[str]:
    """Write a restored RGB ``[3, H, W]`` image in its source's mode (module rules); returns what could
    not be kept (e.g. ``"alpha dropped: JPEG has no alpha channel"``), empty when nothing was converted."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _PIL_FORMATS.get(path.suffix.lower(), "PNG")
    notes = list(src.notes)
    a = rgb.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    if src.gray:
        a = _luma(a)[:, :, None]
    alpha = src.alpha
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        notes.append(f"alpha dropped: {fmt} has no alpha channel")
        alpha = None
    if alpha is not None:
        a = np.concatenate([a, alpha[:, :, None]], axis=2)
    bits = src.bit_depth
    if bits == 16 and fmt not in ("PNG", "TIFF"):
        notes.append(f"written as 8-bit: {fmt} has no 16-bit mode")
        bits = 8
    if bits == 16:
        q = np.round(a * 65535.0).astype(np.uint16)
        if fmt == "TIFF":
            import tifffile

            tifffile.imwrite(path, q[:, :, 0] if q.shape[2] == 1 else q)
        else:
            write_png16(path, q)
        return notes
    q = np.round(a * 255.0).astype(np.uint8)
    q = q[:, :, 0] if q.shape[2] == 1 else q
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(q).save(path, format=fmt, **kw)
    return notes


def write_image(path, tensor: torch.Tensor) -> Path:
    """Write an image tensor in [0, 1] (``[3,H,W]``, ``[1,H,W]``, ``[H,W]``) as an 8-bit PNG (rounded)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(tensor)).save(path, format="PNG")
    return path

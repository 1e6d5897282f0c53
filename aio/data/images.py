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
"""

from __future__ import annotations

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


def write_image(path, tensor: torch.Tensor) -> Path:
    """Write an image tensor in [0, 1] (``[3,H,W]``, ``[1,H,W]``, ``[H,W]``) as an 8-bit PNG (rounded)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(tensor)).save(path, format="PNG")
    return path

"""Crops, flips/rotations and per-item seeding shared by the datasets.

Randomness never comes from a global RNG: every item draws from a ``torch.Generator`` seeded by
``derive_seed(dataset.seed, index, epoch)``, so an item is the same whichever DataLoader worker builds
it and whatever happened before.
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF_FFFF


def generator_for(*parts) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g


def randint(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator)) if n > 1 else 0


def pad_to(t: torch.Tensor, size: int) -> torch.Tensor:
    """Pad ``[C,H,W]`` (reflect when possible, else replicate) so both sides are at least ``size``."""
    h, w = t.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if not (ph or pw):
        return t
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(t[None], (0, pw, 0, ph), mode=mode)[0]


def crop_box(h: int, w: int, size: int, generator, x_range: tuple[int, int] | None = None):
    """A random ``size`` box ``(top, left)`` in an ``h x w`` image, optionally with its left edge within
    ``x_range = (x_min, x_max_exclusive_of_box)`` (the box stays inside ``[x_min, x_max)``)."""
    x_min, x_max = x_range if x_range is not None else (0, w)
    top = randint(max(1, h - size + 1), generator)
    left = x_min + randint(max(1, x_max - x_min - size + 1), generator)
    return top, left


def random_crop(tensors, size: int, generator):
    """The same random ``size`` crop of every ``[C,H,W]`` tensor (all the same size; padded if small)."""
    tensors = [pad_to(t, size) for t in tensors]
    h, w = tensors[0].shape[-2:]
    top, left = crop_box(h, w, size, generator)
    return [t[..., top:top + size, left:left + size] for t in tensors]


def augment(tensors, generator, mode: int | None = None):
    """The same of the 8 flip/90-degree-rotation variants applied to every tensor."""
    if mode is None:
        mode = randint(8, generator)
    out = []
    for t in tensors:
        if mode & 1:
            t = t.flip(-1)
        if mode & 2:
            t = t.flip(-2)
        if mode & 4:
            t = t.transpose(-1, -2)
        out.append(t.contiguous())
    return out


def center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return t[..., top:top + size, left:left + size]


@contextlib.contextmanager
def single_thread():
    """Run the body with one intra-op thread (restored afterwards).

    Per-item synthesis is many small tensor ops; with several OpenMP threads they spend most of their
    time in barriers (10x slower on a busy 2-core machine). DataLoader workers already run with one
    thread; this makes main-process loading (``num_workers=0``) behave the same.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class EpochSeededDataset(Dataset):
    """Base of the training datasets: item ``i`` is drawn with randomness seeded by ``(seed, i, epoch)``.

    ``dataset[i]`` uses the epoch set by :meth:`set_epoch`; ``get_item(i, seed_offset=e)`` reads any epoch
    without changing state (what the trainer's resumable sampler calls). Subclasses implement
    ``_get_item(index, seed_offset)`` for an index already checked to be in range.
    """

    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Call once per epoch to draw new crops, flips and degradations."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        return self.get_item(index, self.epoch)

    def get_item(self, index: int, seed_offset: int = 0) -> dict:
        """Item ``index`` with the randomness of epoch ``seed_offset`` (no state is changed)."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        with single_thread():
            return self._get_item(index, seed_offset)

    def _get_item(self, index: int, seed_offset: int) -> dict:
        raise NotImplementedError

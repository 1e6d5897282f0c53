"""A resumable, rank-aware stream of training batches, with an optional per-phase task mix.

Batch ``t`` depends only on ``(seed, t)``: a run resumed at step ``s`` draws exactly the batches an
uninterrupted run would have drawn, and ``world_size`` ranks each take their slice of the same global batch,
so a 2-process run sees the same samples as a 1-process run with the doubled batch.

Task mix (set per phase, see ``aio/train/phases.py``): ``active`` restricts the stream to the items of some
tasks (still one shuffled pass over those items after another); ``weights`` instead draws each sample's task
with the given probabilities and then an item of that task uniformly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler


class VirtualIndexDataset(Dataset):
    """Maps the sampler's virtual index ``epoch * n + i`` to item ``i`` with epoch-dependent randomness.

    Datasets with ``get_item(i, seed_offset=epoch)`` or ``set_epoch(epoch)`` (aio's presets) draw fresh
    crops/noise each epoch, reproducibly, in whichever worker reads the item; others are read with
    ``dataset[i]``.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        epoch, i = divmod(int(k), self.n)
        if hasattr(self.dataset, "get_item"):
            return self.dataset.get_item(i, seed_offset=epoch)
        if hasattr(self.dataset, "set_epoch"):  # runs in the worker that reads the item
            self.dataset.set_epoch(epoch)
        return self.dataset[i]


def task_ranges(dataset: Dataset) -> list[range]:
    """The index range of each task's items in ``dataset`` (aio's training sets keep tasks in blocks,
    ``dataset.offsets``); a dataset without ``offsets`` is one block."""
    offsets = getattr(dataset, "offsets", None)
    if offsets is None:
        return [range(len(dataset))]
    return [range(a, b) for a, b in zip(offsets[:-1], offsets[1:])]


class ResumableBatchSampler(Sampler[list[int]]):
    """Infinite batches over a shuffled index stream (a new permutation per pass over the data).

    Indices are *virtual*: ``epoch * n + i``. Wrap the dataset in :class:`VirtualIndexDataset` so item ``i``
    is read with randomness (crop, noise) that differs per epoch yet is reproducible.

    ``ranges`` (one index range per task, :func:`task_ranges`) with ``active`` (task indices) limits the
    stream to those tasks' items; with ``weights`` (one per range, >= 0) every position draws its task by
    weight. Without either the stream is the plain permutation stream over all ``n`` items.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_batch: int = 0, rank: int = 0, world_size: int = 1,
                 ranges: Sequence[range] | None = None, active: Sequence[int] | None = None,
                 weights: Sequence[float] | None = None):
        if n <= 0:
            raise ValueError("the training set is empty; check dataset.root and dataset.tasks")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)
        self.ranges = list(ranges) if ranges is not None else [range(n)]
        self.weights = None if weights is None else torch.tensor([float(w) for w in weights], dtype=torch.float64)
        if self.weights is not None and (len(self.weights) != len(self.ranges) or self.weights.sum() <= 0):
            raise ValueError(f"task weights {list(weights)} must give one value >= 0 per task, not all 0")
        self.pool: torch.Tensor | None = None  # the indices of the active tasks (None: all n)
        if active is not None and sorted(active) != list(range(len(self.ranges))):
            self.pool = torch.cat([torch.arange(self.ranges[t].start, self.ranges[t].stop) for t in sorted(active)])
            if len(self.pool) == 0:
                raise ValueError("the phase's tasks have no training items")

    def _index_at(self, position: int) -> int:
        if self.weights is not None:
            return self._weighted_index_at(position)
        m = self.n if self.pool is None else len(self.pool)
        epoch, j = divmod(position, m)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(m, generator=g), epoch
        i = int(self._perm[j]) if self.pool is None else int(self.pool[self._perm[j]])
        return epoch * self.n + i

    def _weighted_index_at(self, position: int) -> int:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * position + 1)
        task = int(torch.multinomial(self.weights, 1, generator=g))
        r = self.ranges[task]
        i = r.start + int(torch.randint(len(r), (1,), generator=g))
        return position * self.n + i  # the position as "epoch": every draw gets its own crop/noise

    def batch(self, t: int) -> list[int]:
        """This rank's share of global batch ``t``."""
        start = t * self.batch_size * self.world_size + self.rank * self.batch_size
        return [self._index_at(p) for p in range(start, start + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        t = self.start_batch
        while True:
            yield self.batch(t)
            t += 1

"""A resumable, rank-aware stream of training batches.

Batch ``t`` depends only on ``(seed, t)``: a run resumed at step ``s`` draws exactly the batches an
uninterrupted run would have drawn, and ``world_size`` ranks each take their slice of the same global batch,
so a 2-process run sees the same samples as a 1-process run with the doubled batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Infinite batches over a shuffled index stream (a new permutation per pass over the data).

    Indices are *virtual*: ``epoch * n + i``. Wrap the dataset in :class:`VirtualIndexDataset` so item ``i``
    is read with randomness (crop, noise) that differs per epoch yet is reproducible.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_batch: int = 0, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise ValueError("the training set is empty; check dataset.root and dataset.tasks")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _index_at(self, position: int) -> int:
        epoch, j = divmod(position, self.n)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        return epoch * self.n + int(self._perm[j])

    def batch(self, t: int) -> list[int]:
        """This rank's share of global batch ``t``."""
        start = t * self.batch_size * self.world_size + self.rank * self.batch_size
        return [self._index_at(p) for p in range(start, start + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        t = self.start_batch
        while True:
            yield self.batch(t)
            t += 1

"""A resumable, rank-sharded sampler: the data order depends only on (seed, epoch), never on wall time."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffles per epoch from (seed, epoch), shards over ranks like DistributedSampler, and can skip ahead.

    ``set_position(epoch, consumed)`` restarts mid-epoch after ``consumed`` indices of this rank, which is what
    makes ``--resume`` continue with exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, length: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.per_rank = -(-length // world_size)  # pad by repeating so every rank takes the same number of steps
        self.epoch = 0
        self.consumed = 0

    def set_position(self, epoch: int, consumed: int = 0) -> None:
        """Start at ``epoch`` after skipping ``consumed`` of this rank's indices."""
        self.epoch, self.consumed = int(epoch), int(consumed)

    def order(self, epoch: int) -> list[int]:
        """This rank's indices for ``epoch``."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            indices = torch.randperm(self.length, generator=gen).tolist()
        else:
            indices = list(range(self.length))
        total = self.per_rank * self.world_size
        indices = (indices * (total // self.length + 1))[:total]
        return indices[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        yield from self.order(self.epoch)[self.consumed:]

    def __len__(self) -> int:
        return self.per_rank - self.consumed

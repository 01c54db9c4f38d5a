"""Place-balanced batches (P places × K images), sharded across data-parallel ranks.

The order of places in an epoch depends only on (seed, epoch), never on the process, so
every rank draws the same permutation and takes its own slice of each global batch: the
ranks never see the same place in one step and need not talk to each other to agree.
Each item carries its own seed (seed, epoch, batch, place), which fixes the images drawn
and their augmentation independently of DataLoader workers, and lets a resumed run start
mid-epoch at exactly the batch where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class PlaceBatchSampler:
    """Yields lists of ``(place, item_seed)``: ``places_per_batch`` distinct places per rank and step.

    One epoch visits ``len(self) * places_per_batch * world_size`` distinct places (the
    remainder of the permutation is dropped, as in GSV-Cities).
    """

    def __init__(self, num_places: int, places_per_batch: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if places_per_batch < 2:
            raise ValueError(f"a batch needs at least 2 places (negatives), got {places_per_batch}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if num_places < places_per_batch * world_size:
            raise ValueError(f"{num_places} places cannot fill one batch of {places_per_batch} places "
                             f"× {world_size} process(es); lower --batch-places")
        self.num_places = num_places
        self.places_per_batch = places_per_batch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation; ``start_batch`` skips batches already trained (resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.num_places // (self.places_per_batch * self.world_size) - self.start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.num_places // (self.places_per_batch * self.world_size)

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, int, int, int]]]]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_places)
        global_batch = self.places_per_batch * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            chunk = perm[b * global_batch : (b + 1) * global_batch]
            mine = chunk[self.rank * self.places_per_batch : (self.rank + 1) * self.places_per_batch]
            yield [(int(p), (self.seed, self.epoch, b, int(p))) for p in mine]

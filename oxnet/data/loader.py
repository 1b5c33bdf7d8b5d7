"""The three-stream training loader: each iteration draws a batch from D_F, D_W and D_U."""
import logging
from typing import Dict, List

import numpy as np
import torch

STREAMS = ("full", "weak", "unlabeled")
logger = logging.getLogger(__name__)


def split_by_supervision(dataset_dicts) -> Dict[str, List[dict]]:
    """Group dataset dicts by their ``supervision`` level (missing means "full")."""
    streams = {name: [] for name in STREAMS}
    for d in dataset_dicts:
        level = d.get("supervision", "full")
        if level not in streams:
            raise ValueError(f"{d.get('file_name')}: unknown supervision level {level!r}")
        streams[level].append(d)
    return streams


def _identity(batch):
    return batch


class OmniBatches(torch.utils.data.Dataset):
    """Item ``t`` is this process's share of iteration ``t``'s batch, a list of mapped dicts.

    Each stream is an endless sequence of epochs, each a permutation seeded by (seed, stream,
    epoch); position ``t * B + j`` of stream s goes to process ``j // (B / world_size)``.
    NumPy's global generator is seeded per sample from (seed, stream, position) before the mapper
    runs. So a batch depends only on (seed, t), whatever the number of loader workers, and a run
    resumed at iteration t sees what an uninterrupted run would.
    """

    def __init__(self, streams: Dict[str, List[dict]], batch_sizes: Dict[str, int], mapper, seed=0,
                 rank=0, world_size=1):
        self.streams = {k: v for k, v in streams.items() if batch_sizes.get(k, 0) > 0 and v}
        self.batch_sizes = batch_sizes
        for name in self.streams:
            if batch_sizes[name] % world_size:
                raise ValueError(f"OXNET.BATCH.{name.upper()}={batch_sizes[name]} is not divisible by "
                                 f"the number of processes ({world_size})")
        if not self.streams:
            raise ValueError("no training images: every stream used by this method is empty or has batch size 0")
        self.mapper, self.seed, self.rank, self.world_size = mapper, seed, rank, world_size
        self._perms = {}

    def __len__(self):
        return 2 ** 62

    def _index(self, stream_id, name, position):
        n = len(self.streams[name])
        epoch, offset = divmod(position, n)
        key = (stream_id, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, stream_id, epoch]).permutation(n)
        return self._perms[key][offset]

    def __getitem__(self, t):
        batch = []
        for stream_id, name in enumerate(STREAMS):
            if name not in self.streams:
                continue
            size = self.batch_sizes[name]
            share = size // self.world_size
            for j in range(self.rank * share, (self.rank + 1) * share):
                position = t * size + j
                sample = self.streams[name][self._index(stream_id, name, position)]
                np.random.seed(np.random.SeedSequence([self.seed, stream_id, position]).generate_state(1)[0])
                batch.append(self.mapper(sample))
        return batch


class OmniTrainLoader:
    """Iterable over per-iteration batches from iteration ``start_iter`` on (set before iterating)."""

    def __init__(self, batches: OmniBatches, num_workers=0, start_iter=0):
        self.batches, self.num_workers, self.start_iter = batches, num_workers, start_iter

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            self.batches, batch_size=None, sampler=range(self.start_iter, len(self.batches)),
            num_workers=self.num_workers, collate_fn=_identity,
            persistent_workers=self.num_workers > 0, prefetch_factor=2 if self.num_workers else None)
        yield from loader

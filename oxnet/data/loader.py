"""The three-stream training loader: each iteration draws a batch from D_F, D_W and D_U.

An image that fails to decode during training (:class:`oxnet.data.io.ImageReadError`: a file corrupted
after the dataset was validated) is logged with its error, replaced by another image of the same stream
and counted; past ``max_failed_fraction`` of a stream's images the run stops with
:class:`TooManyBadImagesError` naming the files (``OXNET.DATA.MAX_FAILED_FRACTION``; 0 stops at the
first). ``python -m oxnet.data.validate FILE --decode`` finds such files before training.
"""

import logging

import numpy as np
import torch

from .io import ImageReadError

STREAMS = ("full", "weak", "unlabeled")
#: Images tried in place of one that fails to decode before the batch gives up.
MAX_SUBSTITUTES = 16
logger = logging.getLogger(__name__)


class TooManyBadImagesError(RuntimeError):
    """More training images failed to decode than ``OXNET.DATA.MAX_FAILED_FRACTION`` allows; the message
    names the files and their errors."""


class Batch(list):
    """One iteration's mapped dicts; ``failures`` lists ``(stream, file_name, error)`` of the images that
    failed to decode and were replaced (it travels with the batch out of loader worker processes)."""

    def __init__(self, items=(), failures=()):
        super().__init__(items)
        self.failures = list(failures)


def _allowed_failures(fraction, n):
    """How many distinct images of a stream of ``n`` may fail before the run stops."""
    return int(np.floor(fraction * n + 1e-9))


def _too_many(name, failed, n, fraction):
    shown = "; ".join(f"{f}: {e}" for f, e in list(failed.items())[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return TooManyBadImagesError(
        f"{len(failed)} of {n} {name} training images failed to decode, more than "
        f"OXNET.DATA.MAX_FAILED_FRACTION={fraction:g} allows ({_allowed_failures(fraction, n)}): "
        f"{shown}{more}. Check the files with `python -m oxnet.data.validate FILE.json --decode`."
    )


def split_by_supervision(dataset_dicts) -> dict[str, list[dict]]:
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

    A sample whose image fails to decode is replaced by an image of the same stream drawn from
    (seed, stream, position, attempt), so substitutes are reproducible too; the failure is recorded in
    the returned :class:`Batch`'s ``failures``. With ``max_failed_fraction`` 0 the first failure raises
    :class:`TooManyBadImagesError`; otherwise this process raises once the distinct failed files it has
    seen in a stream exceed that fraction (the loader, :class:`OmniTrainLoader`, applies the same limit
    to the failures of all its worker processes together).
    """

    def __init__(
        self,
        streams: dict[str, list[dict]],
        batch_sizes: dict[str, int],
        mapper,
        seed=0,
        rank=0,
        world_size=1,
        max_failed_fraction=0.0,
    ):
        self.streams = {k: v for k, v in streams.items() if batch_sizes.get(k, 0) > 0 and v}
        self.batch_sizes = batch_sizes
        for name in self.streams:
            if batch_sizes[name] % world_size:
                raise ValueError(
                    f"OXNET.BATCH.{name.upper()}={batch_sizes[name]} is not divisible by "
                    f"the number of processes ({world_size})"
                )
        if not self.streams:
            raise ValueError(
                "no training images: every stream used by this method is empty or has batch size 0"
            )
        self.mapper, self.seed, self.rank, self.world_size = mapper, seed, rank, world_size
        if not 0.0 <= float(max_failed_fraction) <= 1.0:
            raise ValueError(f"OXNET.DATA.MAX_FAILED_FRACTION must be in [0, 1], got {max_failed_fraction}")
        self.max_failed_fraction = float(max_failed_fraction)
        self.failed = {name: {} for name in STREAMS}  # this process's failed files: {stream: {file: error}}
        self._perms = {}

    def __len__(self):
        return 2**62

    def _index(self, stream_id, name, position):
        n = len(self.streams[name])
        epoch, offset = divmod(position, n)
        key = (stream_id, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, stream_id, epoch]).permutation(n)
        return self._perms[key][offset]

    def _map(self, stream_id, name, position, failures):
        """Map the sample at ``position`` of a stream, replacing images that fail to decode."""
        stream = self.streams[name]
        index = self._index(stream_id, name, position)
        for attempt in range(MAX_SUBSTITUTES + 1):
            sample = stream[index]
            np.random.seed(np.random.SeedSequence([self.seed, stream_id, position]).generate_state(1)[0])
            try:
                return self.mapper(sample)
            except ImageReadError as e:
                file_name, error = str(sample.get("file_name")), str(e)
                failures.append((name, file_name, error))
                if self.max_failed_fraction == 0:
                    raise TooManyBadImagesError(
                        f"training image {file_name} failed to decode ({error}); "
                        "OXNET.DATA.MAX_FAILED_FRACTION=0 stops at the first such image"
                    ) from e
                self.failed[name][file_name] = error
                if len(self.failed[name]) > _allowed_failures(self.max_failed_fraction, len(stream)):
                    raise _too_many(name, self.failed[name], len(stream), self.max_failed_fraction) from e
                rng = np.random.default_rng([self.seed, stream_id, position, attempt + 1])
                index = int(rng.integers(len(stream)))
        raise TooManyBadImagesError(
            f"{MAX_SUBSTITUTES + 1} {name} images in a row failed to decode (the last: {file_name}: {error})"
        )

    def __getitem__(self, t):
        batch = Batch()
        for stream_id, name in enumerate(STREAMS):
            if name not in self.streams:
                continue
            size = self.batch_sizes[name]
            share = size // self.world_size
            for j in range(self.rank * share, (self.rank + 1) * share):
                batch.append(self._map(stream_id, name, t * size + j, batch.failures))
        return batch


class OmniTrainLoader:
    """Iterable over per-iteration batches from iteration ``start_iter`` on (set before iterating).

    Images that failed to decode (see :class:`OmniBatches`) are counted here, in the training process,
    for all loader workers together: each distinct file is logged once (file and error) and kept in
    ``failed`` ({stream: {file: error}}); ``num_failed`` is their number, also written at every
    iteration to detectron2's EventStorage as ``data/failed_images`` (so to ``metrics.json``). Past
    ``OmniBatches.max_failed_fraction`` of a stream's images, iterating raises
    :class:`TooManyBadImagesError`.
    """

    def __init__(self, batches: OmniBatches, num_workers=0, start_iter=0):
        self.batches, self.num_workers, self.start_iter = batches, num_workers, start_iter
        self.failed = {name: {} for name in STREAMS}

    @property
    def num_failed(self):
        """Distinct training images that failed to decode so far."""
        return sum(len(v) for v in self.failed.values())

    def _count_failures(self, failures):
        fraction = self.batches.max_failed_fraction
        for name, file_name, error in failures:
            if file_name in self.failed[name]:
                continue
            self.failed[name][file_name] = error
            n = len(self.batches.streams[name])
            logger.warning(
                f"Training image {file_name} failed to decode and was replaced by another {name} "
                f"image ({len(self.failed[name])} of {n} {name} images failed so far): {error}"
            )
            if len(self.failed[name]) > _allowed_failures(fraction, n):
                raise _too_many(name, self.failed[name], n, fraction)
        from detectron2.utils import events

        if events._CURRENT_STORAGE_STACK:  # inside a trainer
            events.get_event_storage().put_scalar("data/failed_images", self.num_failed, smoothing_hint=False)

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            self.batches,
            batch_size=None,
            sampler=range(self.start_iter, len(self.batches)),
            num_workers=self.num_workers,
            collate_fn=_identity,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=2 if self.num_workers else None,
        )
        for batch in loader:
            self._count_failures(getattr(batch, "failures", ()))
            yield batch

"""Checkpoints that a killed job or a full disk cannot leave half-written."""

import errno
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from oxnet.utils.atomic import atomic_open
from oxnet.utils.safe_load import SafeLoadingMixin


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""


class AtomicCheckpointer(SafeLoadingMixin, DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``save`` and ``last_checkpoint`` tag are written atomically.

    fvcore writes ``model_XXXXXXX.pth`` in place, so a job killed while saving leaves a truncated
    file under the checkpoint's final name. Here each file is written to a temporary sibling and
    renamed when complete (:func:`oxnet.utils.atomic.atomic_open`); the tag is updated only after
    the checkpoint it names exists. Remote folders (``scheme://...``) keep fvcore's behaviour.
    A write that fails (a full disk: ``ENOSPC``) removes its temporary file, leaves the previous
    checkpoint and tag as they were and raises :class:`CheckpointWriteError`.

    Files are loaded without running code from them (:class:`oxnet.utils.safe_load.SafeLoadingMixin`;
    ``allow_pickle=True`` also reads detectron2 ``.pkl`` weights).
    """

    def _local(self):
        return "://" not in str(self.save_dir)

    def save(self, name, **kwargs):
        if not (self._local() and self.save_dir and self.save_to_disk):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        try:
            with atomic_open(path, "wb") as f:
                torch.save(data, f)
        except OSError as e:
            raise self._write_error(path, e) from e
        self.tag_last_checkpoint(basename)

    def _write_error(self, path, error):
        problem = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else str(error)
        tag = os.path.join(self.save_dir, "last_checkpoint")
        previous = None
        if os.path.isfile(tag):
            with open(tag) as f:
                previous = f.read().strip()
        kept = (
            f"the previous checkpoint {previous} and the last_checkpoint tag are intact (resume "
            "from them with --resume)"
            if previous
            else "no earlier checkpoint exists"
        )
        return CheckpointWriteError(
            error.errno,
            f"could not write the checkpoint {path}: {problem} ({error}); nothing partial was left, {kept}",
        )

    def tag_last_checkpoint(self, last_filename_basename):
        if not self._local():
            return super().tag_last_checkpoint(last_filename_basename)
        path = os.path.join(self.save_dir, "last_checkpoint")
        try:
            with atomic_open(path, "w") as f:
                f.write(last_filename_basename)
        except OSError as e:
            raise self._write_error(path, e) from e

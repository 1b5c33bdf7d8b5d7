"""Checkpoints that a killed job cannot leave half-written."""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from oxnet.utils.atomic import atomic_open


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``save`` and ``last_checkpoint`` tag are written atomically.

    fvcore writes ``model_XXXXXXX.pth`` in place, so a job killed while saving leaves a truncated
    file under the checkpoint's final name. Here each file is written to a temporary sibling and
    renamed when complete (:func:`oxnet.utils.atomic.atomic_open`); the tag is updated only after
    the checkpoint it names exists. Remote folders (``scheme://...``) keep fvcore's behaviour.
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
        with atomic_open(path, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        if not self._local():
            return super().tag_last_checkpoint(last_filename_basename)
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

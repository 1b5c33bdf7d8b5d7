"""The OXnet-COCO dataset format: COCO detection JSON plus per-image supervision fields."""
from oxnet.utils.atomic import atomic_write_json

SUPERVISION_LEVELS = ("full", "weak", "unlabeled")


def write_omni_coco(path, coco):
    """Write an OXnet-COCO dict to ``path`` atomically."""
    atomic_write_json(path, coco)

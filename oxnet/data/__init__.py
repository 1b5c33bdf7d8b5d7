"""Data: the OXnet-COCO format, image reading, registration, mappers and loaders."""

from .format import OmniFormatError, load_omni_coco, validate_omni_coco
from .register import register_omni_coco

__all__ = ["OmniFormatError", "load_omni_coco", "validate_omni_coco", "register_omni_coco"]

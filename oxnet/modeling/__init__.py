"""OXnet modeling: the OXNet meta-architecture and its components."""

from .attention import daa_logits, local_attention, normalize_attention
from .global_head import GlobalHead
from .gpa import PrototypeMemory, class_features, gpa_losses
from .losses import masked_bce_with_logits, soft_focal_loss
from .meta_arch import OXNet

__all__ = [
    "OXNet",
    "GlobalHead",
    "PrototypeMemory",
    "class_features",
    "gpa_losses",
    "daa_logits",
    "local_attention",
    "normalize_attention",
    "masked_bce_with_logits",
    "soft_focal_loss",
]

"""Training: the omni-supervised trainer, the mean-teacher hook and a CPU-capable launcher."""

from .hooks import MeanTeacherHook, PlateauLRHook
from .launch import launch
from .trainer import OXnetTrainer, used_streams

__all__ = ["OXnetTrainer", "MeanTeacherHook", "PlateauLRHook", "launch", "used_streams"]

"""Losses on the images without boxes (weak and unlabeled), one module each.

A method's ``unsup`` component (:mod:`oxnet.methods`) names a loss registered in
:data:`UNSUP_LOSS_REGISTRY`; a new semi-supervised method is a new module here with a registered
:class:`UnsupLoss` subclass, not a new branch in the meta-architecture.
"""

from . import focalmix, mean_teacher, mmt_psm, pi_model, sfl  # noqa: F401  (register the losses)
from .base import UNSUP_LOSS_REGISTRY, UnsupLoss, build_unsup_loss

__all__ = ["UNSUP_LOSS_REGISTRY", "UnsupLoss", "build_unsup_loss"]

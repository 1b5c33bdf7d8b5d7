"""Gradient clipping as detectron2's ``SOLVER.CLIP_GRADIENTS`` defines it, in multi-tensor kernels.

detectron2 (``maybe_add_gradient_clipping``) clips every parameter tensor separately: by value, or by
its own norm (``torch.nn.utils.clip_grad_norm_`` called once per tensor, in a Python loop). With a
ResNet-101 RetinaNet that is 372 calls of a few small kernels each per step, which on a GPU took as
long as the backward pass (BENCHMARKS.md). :func:`add_gradient_clipping` computes the same thing with
one ``torch._foreach_*`` call per step and device: every tensor's norm, its own clip coefficient
``min(1, CLIP_VALUE / (norm + 1e-6))`` and the scaling, with the same operations as detectron2 (equal
bit for bit in ``tests/engine/test_clipping.py``, on the CPU).

``CLIP_TYPE "full_model"`` (the name detectron2's DETR and Mask2Former projects give it) clips the
norm of all gradients together, ``torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_VALUE)``,
as the authors' ``train_oxnet.py`` (l.243, at 0.1) does.
"""

from collections import defaultdict

import torch

__all__ = ["add_gradient_clipping", "clip_each_parameter", "clip_full_model"]

CLIP_TYPES = ("value", "norm", "full_model")


def _check_clip_type(clip_type):
    if clip_type not in CLIP_TYPES:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be one of {CLIP_TYPES}, got {clip_type!r}")


def clip_full_model(params, clip_value, norm_type=2.0):
    """Scale all gradients by one coefficient so that their joint ``norm_type`` norm is at most
    ``clip_value`` (``torch.nn.utils.clip_grad_norm_``); returns the norm before clipping."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.nn.utils.clip_grad_norm_(grads, clip_value, norm_type=norm_type, foreach=True)


def clip_each_parameter(params, clip_type, clip_value, norm_type=2.0):
    """Clip the gradient of each tensor in ``params`` on its own (detectron2's per-parameter clipping):
    ``clip_type`` "value" clamps to [-clip_value, clip_value]; "norm" scales each gradient whose
    ``norm_type`` norm exceeds ``clip_value`` down to it."""
    _check_clip_type(clip_type)
    groups = defaultdict(list)
    for p in params:
        if p.grad is not None:
            groups[(p.grad.device, p.grad.dtype)].append(p.grad)
    for grads in groups.values():
        if clip_type == "value":
            torch._foreach_clamp_min_(grads, -clip_value)
            torch._foreach_clamp_max_(grads, clip_value)
        else:
            norms = torch.stack(torch._foreach_norm(grads, norm_type))
            # clip_grad_norm_ takes the norm of the per-tensor norms: for one tensor, that of [norm]
            totals = torch.linalg.vector_norm(norms.unsqueeze(1), norm_type, dim=1)
            coefs = torch.clamp(clip_value / (totals + 1e-6), max=1.0)
            torch._foreach_mul_(grads, list(coefs.unbind()))


def add_gradient_clipping(cfg, optimizer_cls):
    """``optimizer_cls``, or with ``SOLVER.CLIP_GRADIENTS.ENABLED`` a subclass whose ``step`` first
    clips each parameter's gradient (:func:`clip_each_parameter`), or all of them together
    (``full_model``, :func:`clip_full_model`); a drop-in for detectron2's
    ``maybe_add_gradient_clipping`` on optimizer classes."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return optimizer_cls
    clip_type, value, norm_type = clip.CLIP_TYPE, float(clip.CLIP_VALUE), float(clip.NORM_TYPE)
    _check_clip_type(clip_type)  # at build time, not at the first step

    def step(self, closure=None):
        params = (p for g in self.param_groups for p in g["params"])
        if clip_type == "full_model":
            clip_full_model(params, value, norm_type)
        else:
            clip_each_parameter(params, clip_type, value, norm_type)
        return super(cls, self).step(closure)

    cls = type(optimizer_cls.__name__ + "WithGradientClip", (optimizer_cls,), {"step": step})
    return cls

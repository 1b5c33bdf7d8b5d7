"""Mixed precision: which dtype the network runs in, and the autocast context that applies it.

Training honours detectron2's ``SOLVER.AMP.ENABLED`` with ``OXNET.AMP.DTYPE``; inference (the
predictor, ``--eval-only``, the bench's evaluation, the service) honours ``OXNET.AMP.INFERENCE``.
Only the network pass (backbone, FPN, RetinaNet head) runs under autocast; :class:`OXNet` casts its
outputs to float32 before anything else uses them, so every loss, DAA's pooling, GPA's features,
distances and prototypes, the teacher's probabilities, the box decoding and the EMA updates run in
float32 (see :meth:`oxnet.modeling.meta_arch.OXNet._run_network`).
"""

import logging

import torch
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = [
    "AMP_DTYPES",
    "INFERENCE_DTYPES",
    "Float32LastLevelP6P7",
    "bfloat16_supported",
    "dtype_name",
    "network_autocast",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)

#: Values of ``OXNET.AMP.DTYPE`` (training under ``SOLVER.AMP.ENABLED``).
AMP_DTYPES = ("bfloat16", "float16", "auto")
#: Values of ``OXNET.AMP.INFERENCE``.
INFERENCE_DTYPES = ("float32", "bfloat16", "float16", "auto")

_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bfloat16_supported(device):
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that says so (Ampere and later), or a
    CPU with AVX-512 BF16 or AMX (elsewhere PyTorch emulates bfloat16, slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = [
            getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        ]
        return any(bool(p()) for p in probes if p is not None)
    return False


def resolve_dtype(name, device, key="OXNET.AMP.DTYPE"):
    """The autocast dtype for a config value on ``device``: None for float32.

    ``"auto"`` picks bfloat16 where the device supports it, else float16 on CUDA, else float32 (with a
    log line). float16 needs CUDA (and a gradient scaler in training, which the trainer adds);
    ``"bfloat16"`` on a device without native support runs, emulated, with a warning.
    """
    device = torch.device(device)
    name = str(name).lower()
    if name == "auto":
        if bfloat16_supported(device):
            return torch.bfloat16
        if device.type == "cuda":
            return torch.float16
        logger.info(f"{key} auto: {device.type} has no native bfloat16; running in float32")
        return None
    if name not in _DTYPES:
        choices = AMP_DTYPES if key.endswith("DTYPE") else INFERENCE_DTYPES
        raise ValueError(f"{key} must be one of {choices}, got {name!r}")
    dtype = _DTYPES[name]
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError(
            f"{key} float16 needs a CUDA device (MODEL.DEVICE is {device}); use bfloat16 on a CPU"
        )
    if dtype is torch.bfloat16 and not bfloat16_supported(device):
        logger.warning(f"{key} bfloat16: {device} has no native bfloat16, PyTorch emulates it (slower)")
    return dtype


def network_autocast(device, dtype):
    """``torch.autocast`` for ``dtype`` on ``device``'s type, disabled when ``dtype`` is None."""
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None)


def dtype_name(dtype):
    """ "float32" for None, else the dtype's name ("bfloat16", "float16")."""
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


class Float32LastLevelP6P7(LastLevelP6P7):
    """detectron2's P6/P7 block that runs in float32 inside an autocast region (same parameters and
    state dict; outside autocast it is ``LastLevelP6P7``).

    P6 and P7 are 1/64 and 1/128 of the image: under 1 % of the network's work. On a 1x1 map (P7 of an
    image of 64 px or less) PyTorch 2.14's oneDNN bfloat16 weight gradient of this stride-2 convolution
    returns uninitialized values now and then (NaN, inf or garbage), which float32 avoids.
    :class:`~oxnet.modeling.meta_arch.OXNet` swaps its backbone's block to this class."""

    def forward(self, c5):
        device = c5.device.type
        if not torch.is_autocast_enabled(device):
            return super().forward(c5)
        with torch.autocast(device, enabled=False):
            return super().forward(c5.float())

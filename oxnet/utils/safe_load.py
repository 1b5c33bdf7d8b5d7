"""Loading weights files without running code from them.

A ``.pth`` file is a pickle: ``torch.load(weights_only=False)`` (the old default) runs whatever code
the file's author put in it. Every checkpointer of the project loads ``.pth`` files with
``torch.load(weights_only=True)``, which accepts tensors, numbers, strings and plain containers
only, and detectron2 ``.pkl`` files (pickles of numpy arrays) only where the caller allows them
(``allow_pickle=True``: weights the user names for training or evaluation; the prediction service
never does), with a warning, through an unpickler that accepts numpy arrays and plain containers
only.
"""

import logging
import os
import pickle

import torch

__all__ = ["UnsafeWeightsError", "load_weights_file", "load_detectron2_pickle", "SafeLoadingMixin"]

logger = logging.getLogger(__name__)


class UnsafeWeightsError(ValueError):
    """A weights file that holds more than weights (code or arbitrary objects), or a pickle where
    pickles are not allowed."""


#: The globals a detectron2 / Detectron model-zoo ``.pkl`` needs: numpy arrays and ordered dicts.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not part of a weights file")


def load_detectron2_pickle(path):
    """The object in a detectron2 ``.pkl`` weights file, unpickled with numpy arrays, numbers,
    strings and plain containers only.

    Raises:
        UnsafeWeightsError: the pickle refers to anything else (e.g. a function it would call).
    """
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise UnsafeWeightsError(
                f"{path}: refused to load this pickle: {e}. Only numpy arrays and "
                "plain containers are read from .pkl weights files"
            ) from e


def load_weights_file(path, allow_pickle=False):
    """The content of a weights file, loaded without running code from it.

    ``.pkl``: a detectron2 pickle (:func:`load_detectron2_pickle`), only with ``allow_pickle``, with a
    warning. Anything else: ``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises:
        UnsafeWeightsError: a ``.pkl`` without ``allow_pickle``, or a file that holds more than
            tensors, numbers, strings and plain containers.
    """
    path = os.fspath(path)
    if path.endswith(".pkl"):
        if not allow_pickle:
            raise UnsafeWeightsError(
                f"{path}: pickle (.pkl) weights files are not loaded here: a pickle can run code when it "
                "is loaded. Convert it to a .pth state dict, or name it as MODEL.WEIGHTS for training"
            )
        logger.warning(
            f"Loading the pickle {path} (detectron2 .pkl weights): only numpy arrays and plain "
            "containers are accepted, but load pickles only from sources you trust"
        )
        return load_detectron2_pickle(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeWeightsError(
            f"{path}: refused to load: the file holds Python objects besides tensors, numbers, strings "
            f"and plain containers, and loading them could run code from the file ({first}). "
            "Only state dicts are loaded"
        ) from e


class SafeLoadingMixin:
    """For a detectron2 ``DetectionCheckpointer`` subclass: load files with :func:`load_weights_file`
    (``allow_pickle``, default False, lets it read detectron2 ``.pkl`` files) and keep detectron2's
    handling of their content (model-zoo pickles, pycls ``.pyth`` files)."""

    def __init__(self, *args, allow_pickle=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.allow_pickle = allow_pickle

    def _load_file(self, filename):
        data = load_weights_file(filename, allow_pickle=self.allow_pickle)
        if filename.endswith(".pkl"):
            if "model" in data and "__author__" in data:  # detectron2 model-zoo format
                self.logger.info(f"Reading a file from '{data['__author__']}'")
                return data
            if "blobs" in data:  # Caffe2 / Detectron1 detection models
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            if "model_state" not in data:
                raise ValueError(
                    f"Cannot load .pyth file {filename}; pycls checkpoints must contain 'model_state'."
                )
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        if not isinstance(data, dict):
            raise ValueError(f"{filename}: not a weights file (a dict of tensors), got {type(data).__name__}")
        if "model" not in data:
            data = {"model": data}
        return data

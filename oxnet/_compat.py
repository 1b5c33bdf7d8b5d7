"""Compatibility shims applied before detectron2 is imported, and the import-time warnings it causes.

detectron2 v0.6 evaluates ``PIL.Image.LINEAR`` at import time; Pillow 10 removed that alias of
``Image.BILINEAR``. Restoring the alias lets a current (patched) Pillow serve detectron2 v0.6.
"""

from PIL import Image

if not hasattr(Image, "LINEAR"):
    Image.LINEAR = Image.BILINEAR


def _quiet_import_time_warnings():
    """Warnings nobody running OXnet can act on, filtered by exact message, category and module:

    * ``torch.jit.script is deprecated`` (FutureWarning from ``torch.jit._script``): detectron2 v0.6 and
      fvcore script a few functions when they are imported; every command printed it twice.
    * ``torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument``
      (UserWarning from ``torch.functional``): detectron2 v0.6's anchor generator calls ``meshgrid``
      without it, at the first prediction.

    Other deprecation warnings, ours included, still show."""
    import warnings

    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.jit\.script` is deprecated",
        category=FutureWarning,
        module=r"torch\.jit\._script",
    )
    warnings.filterwarnings(
        "ignore",
        message=r"torch\.meshgrid: in an upcoming release",
        category=UserWarning,
        module=r"torch\.functional",
    )


_quiet_import_time_warnings()

"""Compatibility shims applied before detectron2 is imported.

detectron2 v0.6 evaluates ``PIL.Image.LINEAR`` at import time; Pillow 10 removed that alias of
``Image.BILINEAR``. Restoring the alias lets a current (patched) Pillow serve detectron2 v0.6.
"""

from PIL import Image

if not hasattr(Image, "LINEAR"):
    Image.LINEAR = Image.BILINEAR

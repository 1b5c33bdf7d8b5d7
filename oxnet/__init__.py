"""OXnet: omni-supervised thoracic disease detection from chest X-rays, on detectron2.

Importing ``oxnet`` applies the small compatibility shims in :mod:`oxnet._compat` (they must run
before detectron2 is imported).
"""

from . import _compat  # noqa: F401  (must precede any detectron2 import)

__version__ = "0.1.0"

"""Importers: public and in-house label files to OXnet-COCO (``datasets/prepare_<source>.py``).

Each ``load_<source>(...)`` returns ``(coco, report)``: an OXnet-COCO dict in the source's own class
vocabulary and a dict of counts. :func:`~oxnet.data.importers.class_map.apply_class_map` renames,
merges or drops classes; :func:`~oxnet.data.importers.common.write_output` validates and writes.
"""

from .chestx_det import load_chestx_det
from .class_map import ClassMap, apply_class_map, load_class_map
from .coco import load_coco
from .common import ImportDataError, write_output
from .labels_csv import load_labels_csv
from .nih import load_nih
from .rsna import load_rsna
from .vindr import load_vindr

__all__ = [
    "ImportDataError",
    "ClassMap",
    "load_class_map",
    "apply_class_map",
    "write_output",
    "load_nih",
    "load_vindr",
    "load_rsna",
    "load_chestx_det",
    "load_coco",
    "load_labels_csv",
]

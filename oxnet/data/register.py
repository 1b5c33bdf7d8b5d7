"""Register OXnet-COCO files as detectron2 datasets."""

import os

from .format import _check_categories, _check_top_level, load_omni_coco, read_omni_coco

__all__ = ["register_omni_coco"]


def register_omni_coco(name, json_file, image_root, check_files=True):
    """Register an OXnet-COCO file in detectron2's ``DatasetCatalog`` and ``MetadataCatalog``.

    The dataset dicts (see :func:`oxnet.data.format.load_omni_coco`) are loaded and validated when
    ``DatasetCatalog.get(name)`` is first called. The categories are read now, so the metadata
    (``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``,
    ``evaluator_type="oxnet"``) is available at once.

    Registering a name again with the same ``json_file`` and ``image_root`` does nothing; with other
    files it raises ``ValueError``.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file = os.path.abspath(os.fspath(json_file))
    image_root = os.path.abspath(os.fspath(image_root))
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return
        raise ValueError(
            f"dataset {name!r} is already registered with json_file={meta.get('json_file')!r}, "
            f"image_root={meta.get('image_root')!r}; cannot register it again with "
            f"json_file={json_file!r}, image_root={image_root!r}"
        )

    coco = read_omni_coco(json_file)
    _check_top_level(coco, json_file)
    categories = sorted(_check_categories(coco, json_file).items())

    DatasetCatalog.register(name, lambda: load_omni_coco(json_file, image_root, check_files)[0])
    MetadataCatalog.get(name).set(
        thing_classes=[n for _, n in categories],
        thing_dataset_id_to_contiguous_id={cid: i for i, (cid, _) in enumerate(categories)},
        json_file=json_file,
        image_root=image_root,
        evaluator_type="oxnet",
    )
